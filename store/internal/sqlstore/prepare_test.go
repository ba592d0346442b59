package sqlstore

import (
	"errors"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))
	tests := []cursor{
		{CreatedAt: at, ID: "t1"},
		{CreatedAt: at, ID: "id.with.dots:and:colons"},
		{CreatedAt: time.Unix(0, 0), ID: "x"},
	}
	for _, c := range tests {
		got, err := decodeCursor(c.encode())
		if err != nil {
			t.Fatalf("decodeCursor(%+v.encode()): %v", c, err)
		}
		if want := (cursor{CreatedAt: normTime(c.CreatedAt), ID: c.ID}); got != want {
			t.Errorf("round trip = %+v, want %+v", got, want)
		}
	}
	for _, bad := range []string{"", "x", "MS4x", "Mi4xLng", "MS5hYmMueA"} { // "1.1", "2.1.x", "1.abc.x"
		if _, err := decodeCursor(bad); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("decodeCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestDedupeMembers(t *testing.T) {
	ms := []member.Record{{ID: "a", Given: "1"}, {ID: "b"}, {ID: "a", Given: "2"}}
	got, err := dedupeMembers(ms)
	if err != nil || len(got) != 2 || got[0].ID != "b" || got[1].ID != "a" || got[1].Given != "2" {
		t.Errorf("dedupeMembers = %+v, %v", got, err)
	}
	if _, err := dedupeMembers(append(ms, member.Record{ID: " "})); err == nil {
		t.Error("dedupeMembers accepted a member without id")
	}
}
