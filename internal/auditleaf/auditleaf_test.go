package auditleaf

import (
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/transfer"
)

// TestData pins the encoding: stored leaf hashes were computed from these
// bytes, so any change to them breaks every existing audit log.
func TestData(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name string
		ev   transfer.Event
		want string
	}{
		{"no detail", transfer.Event{Seq: 1, At: at, State: transfer.StateInitiated, Actor: "client:a", Type: "state", Key: "state:initiated"},
			`["p2p-audit/1","t1",1,"2025-03-04T04:06:07.123456Z","initiated","client:a","state","state:initiated",null]`},
		{"detail canonical", transfer.Event{Seq: 2, At: at, Actor: "w", Type: "note", Key: "n",
			Detail: map[string]any{"z": 1, "a": "<&>", "m": map[string]any{"y": 1.5, "b": true}}},
			`["p2p-audit/1","t1",2,"2025-03-04T04:06:07.123456Z","","w","note","n",{"a":"<&>","m":{"b":true,"y":1.5},"z":1}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Data("t1", tc.ev)
			if err != nil || string(got) != tc.want {
				t.Fatalf("Data = %s, %v\nwant %s", got, err, tc.want)
			}
			h, err := Hash("t1", tc.ev)
			if err != nil || h != tlog.RecordHash(got) {
				t.Errorf("Hash = %x, %v; want the record hash of Data", h, err)
			}
		})
	}
	if _, err := Data("t1", transfer.Event{Detail: map[string]any{"f": func() {}}}); err == nil {
		t.Error("Data accepted a detail that is not JSON")
	}
}
