package storeutil

import (
	"errors"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.FixedZone("x", 3600))
	tests := []Cursor{
		{CreatedAt: at, ID: "t1"},
		{CreatedAt: at, ID: "id.with.dots:and:colons"},
		{CreatedAt: time.Unix(0, 0), ID: "x"},
	}
	for _, c := range tests {
		got, err := DecodeCursor(EncodeCursor(c))
		if err != nil {
			t.Fatalf("DecodeCursor(EncodeCursor(%+v)): %v", c, err)
		}
		if want := (Cursor{CreatedAt: Time(c.CreatedAt), ID: c.ID}); got != want {
			t.Errorf("round trip = %+v, want %+v", got, want)
		}
	}
	for _, bad := range []string{"", "x", "MS4x", "Mi4xLng", "MS5hYmMueA"} { // "1.1", "2.1.x", "1.abc.x"
		if _, err := DecodeCursor(bad); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestDedupeMembers(t *testing.T) {
	ms := []member.Record{{ID: "a", Given: "1"}, {ID: "b"}, {ID: "a", Given: "2"}}
	got := DedupeMembers(ms)
	if len(got) != 2 || got[0].ID != "b" || got[1].ID != "a" || got[1].Given != "2" {
		t.Errorf("DedupeMembers = %+v", got)
	}
}
