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
	tests := []struct {
		at time.Time
		id string
	}{
		{at, "t1"},
		{at, "id.with.dots:and:colons"},
		{time.Unix(0, 0), "x"},
	}
	for _, c := range tests {
		gotAt, gotID, err := decodeCursor(encodeCursor(c.at, c.id))
		if err != nil {
			t.Fatalf("decodeCursor(encodeCursor(%v, %q)): %v", c.at, c.id, err)
		}
		if !gotAt.Equal(normTime(c.at)) || gotAt.Location() != time.UTC || gotID != c.id {
			t.Errorf("round trip = %v, %q; want %v, %q", gotAt, gotID, normTime(c.at), c.id)
		}
	}
	for _, bad := range []string{"", "x", "MS4x", "Mi4xLng", "MS5hYmMueA"} { // "1.1", "2.1.x", "1.abc.x"
		if _, _, err := decodeCursor(bad); !errors.Is(err, store.ErrBadCursor) {
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
