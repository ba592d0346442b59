package auditleaf

import (
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/transfer"
)

// TestData pins the encodings: stored leaf hashes were computed from
// these bytes, so any change to them breaks every existing audit log.
func TestData(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))
	initiated := transfer.Event{Seq: 1, At: at, State: transfer.StateInitiated, Actor: "client:a", Type: "state", Key: "state:initiated"}
	noted := transfer.Event{Seq: 2, At: at, Actor: "w", Type: "note", Key: "n",
		Detail: map[string]any{"z": 1, "a": "<&>", "m": map[string]any{"y": 1.5, "b": true}}}
	tests := []struct {
		name string
		leaf Leaf
		want string
	}{
		{"v1 no detail", Leaf{Version: V1, TransferID: "t1", PartnerID: "ignored in v1", Event: initiated},
			`["p2p-audit/1","t1",1,"2025-03-04T04:06:07.123456Z","initiated","client:a","state","state:initiated",null]`},
		{"v1 detail canonical", Leaf{Version: V1, TransferID: "t1", Event: noted},
			`["p2p-audit/1","t1",2,"2025-03-04T04:06:07.123456Z","","w","note","n",{"a":"<&>","m":{"b":true,"y":1.5},"z":1}]`},
		{"v2 no detail", Leaf{Version: V2, TransferID: "t1", PartnerID: "p-1", Event: initiated},
			`["p2p-audit/2","t1","p-1",1,"2025-03-04T04:06:07.123456Z","initiated","client:a","state","state:initiated",null]`},
		{"v2 detail canonical", Leaf{Version: V2, TransferID: "t1", PartnerID: "p-1", Event: noted},
			`["p2p-audit/2","t1","p-1",2,"2025-03-04T04:06:07.123456Z","","w","note","n",{"a":"<&>","m":{"b":true,"y":1.5},"z":1}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.leaf.Data()
			if err != nil || string(got) != tc.want {
				t.Fatalf("Data = %s, %v\nwant %s", got, err, tc.want)
			}
			h, err := tc.leaf.Hash()
			if err != nil || h != tlog.RecordHash(got) {
				t.Errorf("Hash = %x, %v; want the record hash of Data", h, err)
			}
		})
	}
	for _, bad := range []Leaf{
		{Version: V2, Event: transfer.Event{Detail: map[string]any{"f": func() {}}}},
		{Version: 0, TransferID: "t1"},
		{Version: 3, TransferID: "t1"},
	} {
		if _, err := bad.Data(); err == nil {
			t.Errorf("Data accepted %+v", bad)
		}
	}
}
