package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func access(transferID, key string, at time.Time) store.Access {
	return store.Access{TransferID: transferID, Event: transfer.Event{
		At: at, Actor: "client:c", Type: "read", Key: key, Detail: map[string]any{"route": "GET /v1/transfers/{id}"},
	}}
}

// testRecordAccess: accesses are timeline events and audit entries, in
// the order given, that leave every projection as it was; a repeated key
// is skipped.
func testRecordAccess(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "k1", "sandbox", base))
	create(t, s, newTransfer("t2", "c", "k2", "sandbox", base.Add(time.Second)))
	if _, err := s.ApplyChange(ctx, "t1", store.Change{State: transfer.StateIdentityPending,
		Event: transfer.Event{At: base.Add(2 * time.Second), State: transfer.StateIdentityPending, Actor: "w", Type: "state"}}); err != nil {
		t.Fatal(err)
	}
	before1, _ := s.GetTransfer(ctx, "t1")
	before2, _ := s.GetTransfer(ctx, "t2")

	at := base.Add(time.Hour)
	n, err := s.RecordAccess(ctx, []store.Access{access("t2", "read:a", at), access("t1", "read:a", at), access("t1", "read:b", at.Add(time.Second))})
	if err != nil || n != 3 {
		t.Fatalf("RecordAccess = %d, %v; want 3", n, err)
	}
	// The same keys again, with one new: only the new one is recorded.
	n, err = s.RecordAccess(ctx, []store.Access{access("t1", "read:a", at), access("t2", "read:c", at)})
	if err != nil || n != 1 {
		t.Fatalf("RecordAccess with a repeated key = %d, %v; want 1", n, err)
	}
	if n, err := s.RecordAccess(ctx, nil); err != nil || n != 0 {
		t.Errorf("RecordAccess(nil) = %d, %v", n, err)
	}

	after1, _ := s.GetTransfer(ctx, "t1")
	after2, _ := s.GetTransfer(ctx, "t2")
	if !reflect.DeepEqual(after1, before1) || !reflect.DeepEqual(after2, before2) {
		t.Errorf("an access changed a projection:\n%+v\n%+v\nwant\n%+v\n%+v", after1, after2, before1, before2)
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range tl {
		got = append(got, fmt.Sprintf("%d:%s:%s", ev.Seq, ev.Type, ev.Key))
	}
	want := []string{"1:state:state:initiated", "2:state:state:identity_pending", "3:read:read:a", "4:read:read:b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("timeline of t1 = %v, want %v", got, want)
	}
	if r := tl[2]; r.Actor != "client:c" || r.State != "" || !r.At.Equal(at) || r.Detail["route"] != "GET /v1/transfers/{id}" {
		t.Errorf("recorded access %+v", r)
	}
	evs := checkAuditLog(t, s, 7)
	order := []string{"t1/1", "t2/1", "t1/2", "t2/2", "t1/3", "t1/4", "t2/3"}
	for i, ae := range evs {
		if got := fmt.Sprintf("%s/%d", ae.TransferID, ae.Event.Seq); got != order[i] {
			t.Errorf("position %d is %s, want %s (accesses in the order given)", i, got, order[i])
		}
	}
	// A state change after accesses takes the next seq.
	if ok, err := s.ApplyChange(ctx, "t1", store.Change{Event: transfer.Event{At: at.Add(time.Minute), Actor: "w", Type: "note", Key: "n"}}); err != nil || !ok {
		t.Fatalf("ApplyChange after accesses: %v %v", ok, err)
	}
	if tl, _ := s.Timeline(ctx, "t1"); tl[len(tl)-1].Seq != 5 {
		t.Errorf("event after accesses has seq %d, want 5", tl[len(tl)-1].Seq)
	}
}

// testRecordAccessInvalid: an unknown transfer records nothing of the
// batch; accesses need a key and enter no state.
func testRecordAccessInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "k1", "sandbox", base))
	if _, err := s.RecordAccess(ctx, []store.Access{access("t1", "read:a", base), access("nope", "read:a", base)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordAccess with an unknown transfer: %v, want ErrNotFound", err)
	}
	noKey := access("t1", "", base)
	withState := access("t1", "read:s", base)
	withState.Event.State = transfer.StateFailed
	for name, a := range map[string]store.Access{"no key": noKey, "a state": withState, "no transfer": access("", "read:x", base)} {
		if _, err := s.RecordAccess(ctx, []store.Access{a}); err == nil {
			t.Errorf("RecordAccess of an access with %s succeeded", name)
		}
	}
	checkAuditLog(t, s, 1)
	if tr, _ := s.GetTransfer(ctx, "t1"); tr.State != transfer.StateInitiated {
		t.Errorf("state %s after refused accesses", tr.State)
	}
}

// testRecordAccessConcurrent: accesses and changes of the same transfers
// racing each other keep seqs and positions gapless, and do not deadlock.
func testRecordAccessConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("a", "c", "ka", "sandbox", base))
	create(t, s, newTransfer("b", "c", "kb", "sandbox", base))
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			key := fmt.Sprintf("k%02d", i)
			if i%2 == 0 {
				// Both orders of the two transfers, to provoke lock-order trouble.
				as := []store.Access{access("a", key, base), access("b", key, base)}
				if i%4 == 0 {
					as[0], as[1] = as[1], as[0]
				}
				_, errs[i] = s.RecordAccess(ctx, as)
				return
			}
			id := "a"
			if i%4 == 1 {
				id = "b"
			}
			_, errs[i] = s.ApplyChange(ctx, id, store.Change{Event: transfer.Event{At: base, Actor: "w", Type: "note", Key: key}})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	checkAuditLog(t, s, 2+2*n+n)
	for _, id := range []string{"a", "b"} {
		tl, err := s.Timeline(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range tl {
			if ev.Seq != int64(i+1) {
				t.Fatalf("%s: event %d has seq %d: not gapless", id, i, ev.Seq)
			}
		}
	}
}
