// Package storetest is the contract suite of store.Store. Every
// implementation runs the same Run from its own tests, so the API, the
// workflow and the activities can rely on one behaviour whichever database
// is underneath.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Run runs the contract suite. open must return a new, empty, migrated
// store for each call and close it in t.Cleanup; each subtest calls it once.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"Members/NotFound", testMembersNotFound},
		{"Members/UpsertReplaces", testUpsertReplaces},
		{"Members/UpsertAllOrNone", testUpsertAllOrNone},
		{"Members/ByBirthDate", testMembersByBirthDate},
		{"Members/ListPaging", testListMembers},
		{"Members/Bulk", testMembersBulk},
		{"Members/Versions", testMemberVersions},
		{"Members/VersionsConcurrent", testMemberVersionsConcurrent},
		{"Transfers/NotFound", testTransfersNotFound},
		{"Transfers/Create", testCreateTransfer},
		{"Transfers/CreateTakenKey", testCreateTakenKey},
		{"Transfers/CreateKeyPerClient", testCreateKeyPerClient},
		{"Transfers/CreateConcurrent", testCreateConcurrent},
		{"Transfers/TimestampsMicrosUTC", testTimestamps},
		{"Idempotency/Complete", testCompleteIdempotency},
		{"Idempotency/CompleteConcurrent", testCompleteConcurrent},
		{"Idempotency/Pending", testPendingIdempotency},
		{"Changes/Apply", testApplyChange},
		{"Changes/DuplicateKey", testApplyDuplicateKey},
		{"Changes/Invalid", testApplyInvalid},
		{"Changes/Concurrent", testApplyConcurrent},
		{"Changes/ApplyMany", testApplyChanges},
		{"Changes/ApplyManyAtomic", testApplyChangesAtomic},
		{"Changes/CreateWithChanges", testCreateWithChanges},
		{"List/Paging", testListTransfers},
		{"List/BadCursor", testBadCursor},
		{"Artifacts/PutGet", testArtifacts},
		{"Artifacts/Withdraw", testWithdraw},
		{"Artifacts/SharedDigest", testSharedDigest},
		{"Artifacts/RetentionPurge", testRetentionPurge},
		{"Audit/Log", testAuditLog},
		{"Audit/Concurrent", testAuditConcurrent},
		{"Audit/Checkpoints", testAuditCheckpoints},
		{"Access/Record", testRecordAccess},
		{"Access/Invalid", testRecordAccessInvalid},
		{"Access/Concurrent", testRecordAccessConcurrent},
		{"Timeline/Page", testTimelinePage},
		{"Identity/Links", testIdentityLinks},
		{"Identity/LinksConcurrent", testIdentityLinksConcurrent},
		{"Identity/Reviews", testIdentityReviews},
		{"Identity/PresentationKey", testPresentationKey},
		{"Identity/ChangeLink", testChangeLink},
		{"Identity/Models", testIdentityModels},
		{"Identity/ModelsInitConcurrent", testIdentityModelsInitConcurrent},
		{"Grants/AppendAndList", testMatchGrants},
		{"Grants/MatchFailures", testMatchFailures},
		{"Clients/Registry", testClients},
		{"Clients/AssertionReplay", testAssertionReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// base is a creation time with sub-microsecond digits and a non-UTC zone
// elsewhere, so the suite catches stores that round or keep zones.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)

// CloseAtEnd closes c when the test ends and fails the test if that fails:
// a store that cannot close cleanly may have lost a write.
func CloseAtEnd(t testing.TB, c io.Closer) {
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// mem returns a synthetic member; no real person.
func mem(id, birth string) member.Record {
	return member.Record{
		ID: id, Given: "Given" + id, Family: "Family", BirthDate: birth, Sex: "F",
		Street: "1 Test St", City: "Testville", State: "TS", PostalCode: "00000", Phone: "555-0100",
	}
}

func ids(ms []member.Record) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func testMembersNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.GetMember(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetMember(unknown) = %v, want ErrNotFound", err)
	}
	got, err := s.MembersByBirthDate(ctx, "1970-01-01")
	if err != nil || len(got) != 0 {
		t.Fatalf("MembersByBirthDate(empty index) = %v, %v; want none", ids(got), err)
	}
	n, err := s.CountMembers(ctx)
	if err != nil || n != 0 {
		t.Fatalf("CountMembers = %d, %v; want 0", n, err)
	}
	if err := s.UpsertMembers(ctx, nil); err != nil {
		t.Fatalf("UpsertMembers(nil): %v", err)
	}
}

func testUpsertReplaces(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := mem("m1", "1980-01-02"), mem("m2", "1981-02-03")
	b.Sex, b.Phone = "", "" // empty optional fields round-trip as empty
	if err := s.UpsertMembers(ctx, []member.Record{a, b}); err != nil {
		t.Fatal(err)
	}
	a2 := a
	a2.Family, a2.BirthDate, a2.Street = "Renamed", "1980-01-03", "2 Other Rd"
	// The same id twice in one batch: the last one wins.
	first := a2
	first.Given = "Overwritten"
	if err := s.UpsertMembers(ctx, []member.Record{first, a2}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []member.Record{a2, b} {
		got, err := s.GetMember(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetMember(%s): %v", want.ID, err)
		}
		if got != want {
			t.Errorf("GetMember(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	if n, err := s.CountMembers(ctx); err != nil || n != 2 {
		t.Errorf("CountMembers = %d, %v; want 2", n, err)
	}
	if got, _ := s.MembersByBirthDate(ctx, "1980-01-02"); len(got) != 0 {
		t.Errorf("old birth date still indexed: %v", ids(got))
	}
}

func testUpsertAllOrNone(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	bad := []member.Record{mem("ok1", "1990-01-01"), {ID: "", Family: "NoID", BirthDate: "1990-01-01"}}
	if err := s.UpsertMembers(ctx, bad); err == nil {
		t.Fatal("UpsertMembers with an empty id succeeded")
	}
	if n, err := s.CountMembers(ctx); err != nil || n != 0 {
		t.Fatalf("after a failed batch CountMembers = %d, %v; want 0", n, err)
	}
}

func testMembersByBirthDate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	ms := []member.Record{
		mem("c", "1970-05-05"), mem("a", "1970-05-05"), mem("B", "1970-05-05"),
		mem("d", "1970-05-06"), mem("e", "1969-05-05"),
	}
	if err := s.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		date string
		want []string
	}{
		{"1970-05-05", []string{"B", "a", "c"}}, // byte order: upper case first
		{"1970-05-06", []string{"d"}},
		{"1970-05-07", nil},
	}
	for _, tc := range tests {
		got, err := s.MembersByBirthDate(ctx, tc.date)
		if err != nil {
			t.Fatalf("MembersByBirthDate(%s): %v", tc.date, err)
		}
		if !equalStrings(ids(got), tc.want) {
			t.Errorf("MembersByBirthDate(%s) = %v, want %v", tc.date, ids(got), tc.want)
		}
		for _, m := range got {
			if m != mem(m.ID, tc.date) {
				t.Errorf("MembersByBirthDate(%s) returned %+v, fields differ", tc.date, m)
			}
		}
	}
}

func testListMembers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	all := []string{"A1", "A2", "B1", "a1", "b", "b1", "z"}
	var ms []member.Record
	for i := len(all) - 1; i >= 0; i-- { // insert out of order
		ms = append(ms, mem(all[i], "2000-01-01"))
	}
	if err := s.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 3, []string{"A1", "A2", "B1"}},
		{"B1", 3, []string{"a1", "b", "b1"}},
		{"b1", 3, []string{"z"}},
		{"z", 3, nil},
		{"", 100, all},
		{"A", 1, []string{"A1"}}, // afterID need not exist
	}
	for _, tc := range tests {
		got, err := s.ListMembers(ctx, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("ListMembers(%q, %d): %v", tc.after, tc.limit, err)
		}
		if !equalStrings(ids(got), tc.want) {
			t.Errorf("ListMembers(%q, %d) = %v, want %v", tc.after, tc.limit, ids(got), tc.want)
		}
	}
}

// testMembersBulk loads more members than one statement's batch, so the
// batching of every implementation is crossed at least once.
func testMembersBulk(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 2500
	ms := make([]member.Record, n)
	for i := range ms {
		ms[i] = mem(fmt.Sprintf("bulk-%05d", i), fmt.Sprintf("19%02d-01-01", 50+i%30))
	}
	if err := s.UpsertMembers(ctx, ms); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CountMembers(ctx); err != nil || got != n {
		t.Fatalf("CountMembers = %d, %v; want %d", got, err, n)
	}
	var seen []string
	after := ""
	for {
		page, err := s.ListMembers(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, ids(page)...)
		after = page[len(page)-1].ID
	}
	if !equalStrings(seen, ids(ms)) {
		t.Fatalf("paged %d members, want %d in id order", len(seen), n)
	}
	if got, _ := s.MembersByBirthDate(ctx, "1950-01-01"); len(got) != (n+29)/30 {
		t.Errorf("MembersByBirthDate(1950-01-01) = %d members, want %d", len(got), (n+29)/30)
	}
}

// newTransfer is a transfer in state initiated with its first event.
func newTransfer(id, client, key, partner string, at time.Time) store.NewTransfer {
	return store.NewTransfer{
		ClientID:       client,
		IdempotencyKey: key,
		Fingerprint:    "fp-" + id,
		Transfer: transfer.Transfer{
			ID: id, ClientID: client, PartnerID: partner, Direction: transfer.DirectionExport, CorrelationID: "corr-" + id,
			State: transfer.StateInitiated, CreatedAt: at, UpdatedAt: at,
		},
		Request: transfer.Request{
			PartnerID: partner,
			Member: transfer.Demographics{
				Given: "Test", Family: "Member", BirthDate: "1980-01-02", Sex: "F",
				Address: transfer.Address{Street: "1 Test St", City: "Testville", State: "TS", PostalCode: "00000"},
				Phone:   "555-0100",
			},
			Consent: transfer.Consent{
				ID: "consent-" + id, Status: "active", Scope: transfer.ScopeRegular,
				PeriodStart: base.Add(-24 * time.Hour), PeriodEnd: base.Add(365 * 24 * time.Hour), GrantedAt: base.Add(-time.Hour),
			},
			DataScope:     transfer.DataScope{ResourceTypes: []string{"Patient", "Coverage"}},
			CorrelationID: "corr-" + id,
		},
		Event: transfer.Event{
			At: at, State: transfer.StateInitiated, Actor: "api", Type: "state",
			Detail: map[string]any{"partner_id": partner}, Key: transfer.StateKey(transfer.StateInitiated),
		},
	}
}

func create(t *testing.T, s store.Store, nt store.NewTransfer) store.CreateResult {
	t.Helper()
	res, err := s.CreateTransfer(ctxT(t), nt)
	if err != nil {
		t.Fatalf("CreateTransfer(%s): %v", nt.Transfer.ID, err)
	}
	if !res.Created {
		t.Fatalf("CreateTransfer(%s): Created = false on a free key", nt.Transfer.ID)
	}
	return res
}

func testTransfersNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	checks := []struct {
		name string
		err  error
	}{
		{"GetTransfer", func() error { _, err := s.GetTransfer(ctx, "nope"); return err }()},
		{"GetTransferRequest", func() error { _, err := s.GetTransferRequest(ctx, "nope"); return err }()},
		{"Timeline", func() error { _, err := s.Timeline(ctx, "nope"); return err }()},
		{"ApplyChange", func() error {
			_, err := s.ApplyChange(ctx, "nope", store.Change{Event: transfer.Event{Key: "k", At: base}})
			return err
		}()},
		{"GetIdempotency", func() error { _, err := s.GetIdempotency(ctx, "c", "nope"); return err }()},
		{"CompleteIdempotency", func() error { _, err := s.CompleteIdempotency(ctx, "c", "nope", 202, []byte("{}")); return err }()},
		{"GetArtifact", func() error { _, err := s.GetArtifact(ctx, "00ff"); return err }()},
	}
	for _, c := range checks {
		if !errors.Is(c.err, store.ErrNotFound) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound", c.name, c.err)
		}
	}
	page, err := s.ListTransfers(ctx, store.ListFilter{})
	if err != nil || len(page.Items) != 0 || page.NextCursor != "" {
		t.Errorf("ListTransfers(empty) = %+v, %v", page, err)
	}
	arts, err := s.ListArtifacts(ctx, "nope")
	if err != nil || len(arts) != 0 {
		t.Errorf("ListArtifacts(unknown) = %v, %v; want none", arts, err)
	}
	if n, err := s.WithdrawArtifacts(ctx, "nope", base); err != nil || n != 0 {
		t.Errorf("WithdrawArtifacts(unknown) = %d, %v; want 0", n, err)
	}
}

func testCreateTransfer(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	nt := newTransfer("t1", "client-a", "key-00000001", "sandbox", base)
	res := create(t, s, nt)
	wantRec := store.IdempotencyRecord{
		ClientID: "client-a", Key: "key-00000001", Fingerprint: "fp-t1", TransferID: "t1",
		Status: store.IdempotencyPending, CreatedAt: base,
	}
	if !reflect.DeepEqual(res.Record, wantRec) {
		t.Errorf("CreateTransfer record = %+v, want %+v", res.Record, wantRec)
	}
	if got, err := s.GetIdempotency(ctx, "client-a", "key-00000001"); err != nil || !reflect.DeepEqual(got, wantRec) {
		t.Errorf("GetIdempotency = %+v, %v; want %+v", got, err, wantRec)
	}
	got, err := s.GetTransfer(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, nt.Transfer) {
		t.Errorf("GetTransfer = %+v, want %+v", got, nt.Transfer)
	}
	req, err := s.GetTransferRequest(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(req, nt.Request) {
		t.Errorf("GetTransferRequest = %+v, want %+v", req, nt.Request)
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	want := nt.Event
	want.Seq = 1
	if len(tl) != 1 || !reflect.DeepEqual(tl[0], want) {
		t.Errorf("Timeline = %+v, want [%+v]", tl, want)
	}
}

func testCreateTakenKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	first := create(t, s, newTransfer("t1", "c", "key-00000001", "sandbox", base))
	again := newTransfer("t2", "c", "key-00000001", "other", base.Add(time.Minute))
	again.Fingerprint = "fp-different-body"
	res, err := s.CreateTransfer(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created {
		t.Fatal("CreateTransfer on a taken key: Created = true")
	}
	if !reflect.DeepEqual(res.Record, first.Record) {
		t.Errorf("taken key returned %+v, want the original %+v", res.Record, first.Record)
	}
	if _, err := s.GetTransfer(ctx, "t2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused transfer exists: %v", err)
	}
	if _, err := s.Timeline(ctx, "t2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused transfer has a timeline: %v", err)
	}
	// A completed record is returned with its response.
	done, err := s.CompleteIdempotency(ctx, "c", "key-00000001", 202, []byte(`{"id":"t1"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.CreateTransfer(ctx, again)
	if err != nil || res.Created || !reflect.DeepEqual(res.Record, done) {
		t.Errorf("taken completed key = %+v, %v; want %+v", res, err, done)
	}
}

func testCreateKeyPerClient(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := create(t, s, newTransfer("t1", "client-a", "shared-key-1", "sandbox", base))
	b := create(t, s, newTransfer("t2", "client-b", "shared-key-1", "sandbox", base))
	if a.Record.TransferID != "t1" || b.Record.TransferID != "t2" {
		t.Errorf("records = %s, %s; want t1, t2", a.Record.TransferID, b.Record.TransferID)
	}
	for _, c := range []struct{ client, want string }{{"client-a", "t1"}, {"client-b", "t2"}} {
		rec, err := s.GetIdempotency(ctx, c.client, "shared-key-1")
		if err != nil || rec.TransferID != c.want {
			t.Errorf("GetIdempotency(%s) = %+v, %v; want transfer %s", c.client, rec, err, c.want)
		}
	}
}

// testCreateConcurrent races 50 creates on one key: exactly one creates,
// every other caller sees that one's record, and one transfer exists.
func testCreateConcurrent(t *testing.T, s store.Store) {
	tests := []struct {
		name     string
		sameID   bool // transfer id derived from the key, or new per call
		clientID string
	}{
		{"distinct transfer ids", false, "client-x"},
		{"same transfer id", true, "client-y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			const n = 50
			results := make([]store.CreateResult, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("%s-t%02d", tc.clientID, i)
					if tc.sameID {
						id = tc.clientID + "-t"
					}
					nt := newTransfer(id, tc.clientID, "race-key-1", "sandbox", base)
					<-start
					results[i], errs[i] = s.CreateTransfer(ctx, nt)
				}()
			}
			close(start)
			wg.Wait()
			created, winner := 0, ""
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				if results[i].Created {
					created++
					winner = results[i].Record.TransferID
				}
			}
			if created != 1 {
				t.Fatalf("%d callers created a transfer, want 1", created)
			}
			for i := range n {
				if results[i].Record.TransferID != winner || results[i].Record.Fingerprint != "fp-"+winner {
					t.Errorf("caller %d saw %+v, want transfer %s", i, results[i].Record, winner)
				}
			}
			page, err := s.ListTransfers(ctx, store.ListFilter{Limit: 200})
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, tr := range page.Items {
				if tr.ClientID == tc.clientID {
					rows++
				}
			}
			if rows != 1 {
				t.Errorf("%d transfer rows for the key, want 1", rows)
			}
			if tl, err := s.Timeline(ctx, winner); err != nil || len(tl) != 1 {
				t.Errorf("winner timeline = %d events, %v; want 1", len(tl), err)
			}
		})
	}
}

// testTimestamps writes times with nanoseconds in a non-UTC zone and
// expects them back truncated to the microsecond, in UTC.
func testTimestamps(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	zone := time.FixedZone("UTC-5", -5*3600)
	at := time.Date(2025, 6, 7, 8, 9, 10, 987654321, zone)
	want := time.Date(2025, 6, 7, 13, 9, 10, 987654000, time.UTC)
	nt := newTransfer("ts", "c", "key-ts-0001", "sandbox", at)
	res := create(t, s, nt)
	ev := transfer.Event{At: at.Add(time.Second), State: transfer.StateIdentityPending, Actor: "worker", Type: "state"}
	if _, err := s.ApplyChange(ctx, "ts", store.Change{Event: ev, State: transfer.StateIdentityPending}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutArtifact(ctx, store.Artifact{Digest: "d1", TransferID: "ts", Name: "x", Size: 1, Data: []byte("x"), CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WithdrawArtifacts(ctx, "ts", at); err != nil {
		t.Fatal(err)
	}
	tr, _ := s.GetTransfer(ctx, "ts")
	tl, _ := s.Timeline(ctx, "ts")
	arts, _ := s.ListArtifacts(ctx, "ts")
	if len(tl) != 2 || len(arts) != 1 || arts[0].WithdrawnAt == nil {
		t.Fatalf("timeline %d events, %d artifacts; want 2 and 1 withdrawn", len(tl), len(arts))
	}
	checks := []struct {
		name      string
		got, want time.Time
	}{
		{"idempotency created_at", res.Record.CreatedAt, want},
		{"transfer created_at", tr.CreatedAt, want},
		{"transfer updated_at", tr.UpdatedAt, want.Add(time.Second)},
		{"event at", tl[0].At, want},
		{"second event at", tl[1].At, want.Add(time.Second)},
		{"artifact created_at", arts[0].CreatedAt, want},
		{"artifact withdrawn_at", *arts[0].WithdrawnAt, want},
	}
	for _, c := range checks {
		if c.got != c.want { // == also compares the zone
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func testCompleteIdempotency(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rec := create(t, s, newTransfer("t1", "c", "key-complete", "sandbox", base)).Record
	want := rec
	want.Status, want.ResponseStatus, want.ResponseBody = store.IdempotencyComplete, 202, []byte(`{"id":"t1","state":"initiated"}`)
	tests := []struct {
		name   string
		status int
		body   []byte
	}{
		{"first writer stores", 202, []byte(`{"id":"t1","state":"initiated"}`)},
		{"second writer gets the first", 500, []byte(`{"other":true}`)},
	}
	for _, tc := range tests {
		got, err := s.CompleteIdempotency(ctx, "c", "key-complete", tc.status, tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, want)
		}
	}
	if got, err := s.GetIdempotency(ctx, "c", "key-complete"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetIdempotency = %+v, %v; want %+v", got, err, want)
	}
}

func testCompleteConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-race-complete", "sandbox", base))
	const n = 20
	got := make([]store.IdempotencyRecord, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = s.CompleteIdempotency(ctx, "c", "key-race-complete", 200+i, []byte(fmt.Sprintf(`{"n":%d}`, i)))
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(got[i], got[0]) || got[i].Status != store.IdempotencyComplete {
			t.Errorf("caller %d replays %+v, caller 0 %+v", i, got[i], got[0])
		}
	}
	if fmt.Sprintf(`{"n":%d}`, got[0].ResponseStatus-200) != string(got[0].ResponseBody) {
		t.Errorf("status %d and body %s come from different writers", got[0].ResponseStatus, got[0].ResponseBody)
	}
}

func testPendingIdempotency(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i, key := range []string{"key-p0", "key-p1", "key-p2", "key-p3"} {
		create(t, s, newTransfer(fmt.Sprintf("t%d", i), "c", key, "sandbox", base.Add(time.Duration(i)*time.Minute)))
	}
	if _, err := s.CompleteIdempotency(ctx, "c", "key-p1", 202, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	keys := func(rs []store.IdempotencyRecord) []string {
		var out []string
		for _, r := range rs {
			if r.Status != store.IdempotencyPending {
				t.Errorf("PendingIdempotency returned %s in status %s", r.Key, r.Status)
			}
			out = append(out, r.Key)
		}
		return out
	}
	tests := []struct {
		olderThan time.Time
		limit     int
		want      []string
	}{
		{base.Add(time.Hour), 10, []string{"key-p0", "key-p2", "key-p3"}},
		{base.Add(3 * time.Minute), 10, []string{"key-p0", "key-p2"}}, // strictly before
		{base.Add(time.Hour), 1, []string{"key-p0"}},                  // oldest first
		{base, 10, nil},
	}
	for _, tc := range tests {
		got, err := s.PendingIdempotency(ctx, tc.olderThan, nil, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !equalStrings(keys(got), tc.want) {
			t.Errorf("PendingIdempotency(%v, %d) = %v, want %v", tc.olderThan, tc.limit, keys(got), tc.want)
		}
	}

	// Paging: a page starts after the last record of the one before, even
	// when that record is still pending (a caller could not start it), and
	// records created at the same time are ordered by client and key.
	create(t, s, newTransfer("t4", "b", "key-p4", "sandbox", base.Add(2*time.Minute)))
	var got []string
	var after *store.IdempotencyRecord
	for pages := 0; pages < 10; pages++ {
		page, err := s.PendingIdempotency(ctx, base.Add(time.Hour), after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		got = append(got, keys(page)...)
		after = &page[len(page)-1]
	}
	if want := []string{"key-p0", "key-p4", "key-p2", "key-p3"}; !equalStrings(got, want) {
		t.Errorf("PendingIdempotency paged one at a time = %v, want %v", got, want)
	}
}

func testApplyChange(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	nt := newTransfer("t1", "c", "key-apply", "sandbox", base)
	create(t, s, nt)
	identity := &transfer.IdentityOutcome{
		Status: transfer.IdentityResolved, MemberID: "m1", Score: 0.97,
		Rationale: &transfer.Rationale{
			Rule: "exact", Summary: "member id and birth date",
			Fields:   []transfer.FieldContribution{{Field: "birth_date", Level: "exact", Weight: 0.5}},
			RunnerUp: &transfer.RunnerUp{MemberID: "m2", Score: 0.4},
		},
	}
	consent := &transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: "consent-t1", Scope: transfer.ScopeRegular, CheckedAt: base.Add(2 * time.Minute)}
	export := &transfer.ExportInfo{ManifestSHA256: "ab12", KID: "k1", Files: []transfer.ExportFile{{Type: "Patient", Count: 1, SHA256: "cd34", Bytes: 99}}, ExcludedSensitive: 2}
	failure := &transfer.ErrorInfo{Type: transfer.ErrorPartnerRejected, Detail: "partner said no"}

	want := nt.Transfer
	wantTimeline := []transfer.Event{nt.Event}
	wantTimeline[0].Seq = 1
	steps := []struct {
		name   string
		change store.Change
		apply  func(*transfer.Transfer)
	}{
		{"state only", store.Change{State: transfer.StateIdentityPending}, func(tr *transfer.Transfer) { tr.State = transfer.StateIdentityPending }},
		{"identity without state", store.Change{Identity: identity}, func(tr *transfer.Transfer) { tr.Identity = identity }},
		{"event only, no projection", store.Change{}, func(*transfer.Transfer) {}},
		{"consent and state", store.Change{State: transfer.StateConsentVerified, Consent: consent}, func(tr *transfer.Transfer) {
			tr.State, tr.Consent = transfer.StateConsentVerified, consent
		}},
		{"export", store.Change{State: transfer.StatePayloadPrepared, Export: export}, func(tr *transfer.Transfer) {
			tr.State, tr.Export = transfer.StatePayloadPrepared, export
		}},
		{"error", store.Change{State: transfer.StateFailed, Error: failure}, func(tr *transfer.Transfer) {
			tr.State, tr.Error = transfer.StateFailed, failure
		}},
	}
	for i, st := range steps {
		at := base.Add(time.Duration(i+1) * time.Minute)
		st.change.Event = transfer.Event{
			At: at, State: st.change.State, Actor: "worker", Type: "step",
			Detail: map[string]any{"step": st.name, "n": float64(i)}, Key: fmt.Sprintf("step:%d", i),
		}
		ok, err := s.ApplyChange(ctx, "t1", st.change)
		if err != nil || !ok {
			t.Fatalf("%s: ApplyChange = %v, %v; want true", st.name, ok, err)
		}
		st.apply(&want)
		want.UpdatedAt = at
		ev := st.change.Event
		ev.Seq = int64(i + 2)
		wantTimeline = append(wantTimeline, ev)
		got, err := s.GetTransfer(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: projection = %+v, want %+v", st.name, got, want)
		}
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tl, wantTimeline) {
		t.Errorf("Timeline =\n%+v\nwant\n%+v", tl, wantTimeline)
	}
}

func testApplyDuplicateKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-dup", "sandbox", base))
	first := store.Change{
		Event: transfer.Event{At: base.Add(time.Minute), State: transfer.StateIdentityPending, Actor: "worker", Type: "state", Key: transfer.StateKey(transfer.StateIdentityPending)},
		State: transfer.StateIdentityPending,
	}
	// The retry carries other parts and a later time: none of it applies.
	retry := first
	retry.Event.At = base.Add(time.Hour)
	retry.Event.Actor = "retry"
	retry.Identity = &transfer.IdentityOutcome{Status: transfer.IdentityNoMatch}
	tests := []struct {
		name   string
		change store.Change
		want   bool
	}{
		{"first", first, true},
		{"same key again", retry, false},
		{"initiated state key again", store.Change{Event: transfer.Event{At: base.Add(time.Hour), State: transfer.StateInitiated, Key: transfer.StateKey(transfer.StateInitiated)}, State: transfer.StateInitiated}, false},
	}
	for _, tc := range tests {
		ok, err := s.ApplyChange(ctx, "t1", tc.change)
		if err != nil || ok != tc.want {
			t.Errorf("%s: ApplyChange = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
	tr, _ := s.GetTransfer(ctx, "t1")
	if tr.State != transfer.StateIdentityPending || tr.Identity != nil || !tr.UpdatedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("duplicate changed the projection: %+v", tr)
	}
	if tl, _ := s.Timeline(ctx, "t1"); len(tl) != 2 || tl[1].Actor != "worker" {
		t.Errorf("timeline = %+v, want 2 events, the second from the first writer", tl)
	}
}

func testApplyInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-invalid", "sandbox", base))
	// An event with neither key nor state cannot be made idempotent.
	if _, err := s.ApplyChange(ctx, "t1", store.Change{Event: transfer.Event{At: base, Actor: "x", Type: "note"}}); err == nil {
		t.Error("ApplyChange without an event key succeeded")
	}
	// A state event without a key defaults to StateKey(state).
	ev := transfer.Event{At: base.Add(time.Second), State: transfer.StateIdentityPending, Actor: "w", Type: "state"}
	if ok, err := s.ApplyChange(ctx, "t1", store.Change{Event: ev, State: ev.State}); err != nil || !ok {
		t.Fatalf("state event without key = %v, %v", ok, err)
	}
	if ok, err := s.ApplyChange(ctx, "t1", store.Change{Event: transfer.Event{At: base, Key: transfer.StateKey(transfer.StateIdentityPending)}}); err != nil || ok {
		t.Errorf("StateKey was not the default key: %v, %v", ok, err)
	}
	if tl, _ := s.Timeline(ctx, "t1"); len(tl) != 2 || tl[1].Key != transfer.StateKey(transfer.StateIdentityPending) {
		t.Errorf("timeline = %+v", tl)
	}
}

// testApplyConcurrent races distinct events (gapless seq, no loss) and one
// event with a shared key (recorded once).
func testApplyConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-apply-race", "sandbox", base))
	const n = 25
	var wg sync.WaitGroup
	start := make(chan struct{})
	oks := make([]bool, 2*n)
	errs := make([]error, 2*n)
	for i := range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("distinct:%02d", i)
			if i >= n {
				key = "shared"
			}
			ch := store.Change{Event: transfer.Event{At: base.Add(time.Duration(i) * time.Second), Actor: "w", Type: "note", Key: key}}
			<-start
			oks[i], errs[i] = s.ApplyChange(ctx, "t1", ch)
		}()
	}
	close(start)
	wg.Wait()
	shared := 0
	for i := range 2 * n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if i < n && !oks[i] {
			t.Errorf("distinct event %d not recorded", i)
		}
		if i >= n && oks[i] {
			shared++
		}
	}
	if shared != 1 {
		t.Errorf("shared-key event recorded %d times, want 1", shared)
	}
	tl, err := s.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != n+2 {
		t.Fatalf("timeline has %d events, want %d", len(tl), n+2)
	}
	for i, ev := range tl {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: not gapless", i, ev.Seq)
		}
	}
}

// testListTransfers pages through transfers with ties in created_at under
// every filter and page size and checks that each listing is exactly the
// expected order, with nothing lost or repeated across pages.
func testListTransfers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	type row struct {
		id, partner, client string
		at                  time.Time
		state               transfer.State
		direction           transfer.Direction
	}
	var rows []row
	for i := range 14 {
		at := base.Add(time.Duration(i/4) * time.Second) // groups of four share a time
		partner := []string{"p-a", "p-b"}[i%2]
		state := []transfer.State{transfer.StateInitiated, transfer.StateComplete, transfer.StateFailed}[i%3]
		client := []string{"c-1", "c-2"}[(i/2)%2]
		rows = append(rows, row{fmt.Sprintf("tr-%02d", (i*5)%14), partner, client, at, state, directionOf(i).OrExport()})
	}
	for i, r := range rows {
		nt := newTransfer(r.id, r.client, fmt.Sprintf("key-list-%02d", i), r.partner, r.at)
		nt.Transfer.Direction = directionOf(i)
		create(t, s, nt)
		if r.state != transfer.StateInitiated {
			ch := store.Change{Event: transfer.Event{At: r.at, State: r.state, Key: transfer.StateKey(r.state)}, State: r.state}
			if _, err := s.ApplyChange(ctx, r.id, ch); err != nil {
				t.Fatal(err)
			}
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if !rows[i].at.Equal(rows[j].at) {
			return rows[i].at.After(rows[j].at)
		}
		return rows[i].id > rows[j].id
	})
	expect := func(f store.ListFilter) []string {
		var out []string
		for _, r := range rows {
			if (f.State == "" || r.state == f.State) && (f.PartnerID == "" || r.partner == f.PartnerID) &&
				(f.Direction == "" || r.direction == f.Direction) && (f.ClientID == "" || r.client == f.ClientID) {
				out = append(out, r.id)
			}
		}
		return out
	}
	filters := []store.ListFilter{
		{},
		{State: transfer.StateComplete},
		{PartnerID: "p-b"},
		{State: transfer.StateFailed, PartnerID: "p-a"},
		{State: transfer.StateManualReview},
		{PartnerID: "unknown"},
		{Direction: transfer.DirectionImport},
		{Direction: transfer.DirectionExport, PartnerID: "p-a"},
		{ClientID: "c-2"},
		{ClientID: "c-1", PartnerID: "p-a", State: transfer.StateComplete},
		{ClientID: "nobody"},
	}
	for _, f := range filters {
		want := expect(f)
		for _, limit := range []int{0, 1, 2, 3, 4, 5, 13, 14, 15, 200} {
			lf := f // each page size pages from the start
			lf.Limit = limit
			var got []string
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatalf("%+v: paging does not end", lf)
				}
				page, err := s.ListTransfers(ctx, lf)
				if err != nil {
					t.Fatalf("ListTransfers(%+v): %v", lf, err)
				}
				size := limit
				if size == 0 {
					size = 50
				}
				if len(page.Items) > size {
					t.Fatalf("%+v: page of %d items", lf, len(page.Items))
				}
				for _, tr := range page.Items {
					got = append(got, tr.ID)
					if tr.Direction != transfer.DirectionExport && tr.Direction != transfer.DirectionImport {
						t.Fatalf("%s: direction %q, want export or import", tr.ID, tr.Direction)
					}
				}
				if page.NextCursor == "" {
					break
				}
				if len(page.Items) == 0 {
					t.Fatalf("%+v: empty page with a next cursor", f)
				}
				lf.Cursor = page.NextCursor
			}
			if !equalStrings(got, want) {
				t.Errorf("filter %+v limit %d: got %v, want %v", f, limit, got, want)
			}
		}
	}
	// Items are full projections.
	page, _ := s.ListTransfers(ctx, store.ListFilter{Limit: 1})
	if len(page.Items) != 1 {
		t.Fatal("no items")
	}
	one, _ := s.GetTransfer(ctx, page.Items[0].ID)
	if !reflect.DeepEqual(page.Items[0], one) {
		t.Errorf("list item %+v differs from GetTransfer %+v", page.Items[0], one)
	}
}

// directionOf is the direction of the i-th listed transfer; "" (a caller
// that says none) must be stored as export.
func directionOf(i int) transfer.Direction {
	return []transfer.Direction{transfer.DirectionExport, transfer.DirectionImport, ""}[i%3]
}

func testBadCursor(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	create(t, s, newTransfer("t1", "c", "key-cursor", "sandbox", base))
	for _, cursor := range []string{"garbage", "!!!", "eyJ4IjoxfQ", "MTIzNA", "%%%%"} {
		if _, err := s.ListTransfers(ctx, store.ListFilter{Cursor: cursor}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", cursor, err)
		}
	}
}

func artifact(digest, transferID, name string, data []byte, at time.Time) store.Artifact {
	return store.Artifact{
		Digest: digest, TransferID: transferID, Name: name, ContentType: "application/fhir+ndjson",
		Size: int64(len(data)), Data: data, CreatedAt: at,
	}
}

func testArtifacts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := artifact("aa01", "t1", "Patient.ndjson", []byte(`{"resourceType":"Patient"}`+"\n"), base)
	b := artifact("bb02", "t1", "manifest.json", []byte(`{"files":[]}`), base.Add(time.Second))
	empty := artifact("cc03", "t1", "Empty.ndjson", []byte{}, base.Add(2*time.Second))
	for _, art := range []store.Artifact{a, b, empty} {
		if err := s.PutArtifact(ctx, art); err != nil {
			t.Fatal(err)
		}
	}
	// Storing the same digest again is a no-op, even with other metadata.
	dup := a
	dup.Name, dup.Data, dup.CreatedAt = "renamed", []byte("other"), base.Add(time.Hour)
	if err := s.PutArtifact(ctx, dup); err != nil {
		t.Fatalf("PutArtifact(same digest): %v", err)
	}
	for _, want := range []store.Artifact{a, b, empty} {
		got, err := s.GetArtifact(ctx, want.Digest)
		if err != nil {
			t.Fatalf("GetArtifact(%s): %v", want.Digest, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetArtifact(%s) = %+v, want %+v", want.Digest, got, want)
		}
	}
	list, err := s.ListArtifacts(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("ListArtifacts = %d, want 3", len(list))
	}
	for i, want := range []store.Artifact{a, b, empty} { // in creation order
		want.Data = nil
		if !reflect.DeepEqual(list[i], want) {
			t.Errorf("ListArtifacts[%d] = %+v, want %+v", i, list[i], want)
		}
	}
}

func testWithdraw(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := artifact("aa01", "t1", "Patient.ndjson", []byte("patient\n"), base)
	b := artifact("bb02", "t1", "manifest.json", []byte("{}"), base)
	other := artifact("cc03", "t2", "Patient.ndjson", []byte("other\n"), base)
	for _, art := range []store.Artifact{a, b, other} {
		if err := s.PutArtifact(ctx, art); err != nil {
			t.Fatal(err)
		}
	}
	at := base.Add(time.Hour)
	tests := []struct {
		name string
		want int
	}{{"first withdrawal", 2}, {"second withdrawal", 0}}
	for _, tc := range tests {
		n, err := s.WithdrawArtifacts(ctx, "t1", at)
		if err != nil || n != tc.want {
			t.Errorf("%s = %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
	for _, art := range []store.Artifact{a, b} {
		got, err := s.GetArtifact(ctx, art.Digest)
		if !errors.Is(err, store.ErrWithdrawn) {
			t.Fatalf("GetArtifact(%s) after withdrawal: %v, want ErrWithdrawn", art.Digest, err)
		}
		want := art
		want.Data, want.WithdrawnAt = nil, &at
		if !reflect.DeepEqual(got, want) {
			t.Errorf("withdrawn GetArtifact(%s) = %+v, want %+v", art.Digest, got, want)
		}
		// Storing it again does not bring the payload back.
		if err := s.PutArtifact(ctx, art); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetArtifact(ctx, art.Digest); !errors.Is(err, store.ErrWithdrawn) {
			t.Errorf("PutArtifact resurrected withdrawn %s: %v", art.Digest, err)
		}
	}
	list, _ := s.ListArtifacts(ctx, "t1")
	for _, art := range list {
		if art.WithdrawnAt == nil || !art.WithdrawnAt.Equal(at) || art.Data != nil || art.Size == 0 {
			t.Errorf("ListArtifacts after withdrawal: %+v", art)
		}
	}
	if got, err := s.GetArtifact(ctx, "cc03"); err != nil || string(got.Data) != "other\n" {
		t.Errorf("another transfer's artifact = %+v, %v", got, err)
	}
}

// testSharedDigest stores identical bytes for two transfers (a member's
// deterministic export, twice): each transfer owns its copy, so withdrawing
// one keeps the other's payload.
func testSharedDigest(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	data := []byte("same bytes\n")
	a := artifact("dd04", "t1", "Patient.ndjson", data, base)
	b := artifact("dd04", "t2", "Patient.ndjson", data, base.Add(time.Minute))
	for _, art := range []store.Artifact{a, b} {
		if err := s.PutArtifact(ctx, art); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"t1", "t2"} {
		if list, err := s.ListArtifacts(ctx, id); err != nil || len(list) != 1 {
			t.Errorf("ListArtifacts(%s) = %d, %v; want 1", id, len(list), err)
		}
	}
	if n, err := s.WithdrawArtifacts(ctx, "t1", base.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("WithdrawArtifacts(t1) = %d, %v", n, err)
	}
	got, err := s.GetArtifact(ctx, "dd04")
	if err != nil || string(got.Data) != string(data) || got.TransferID != "t2" {
		t.Errorf("GetArtifact after one owner withdrew = %+v, %v; want t2's payload", got, err)
	}
	if n, err := s.WithdrawArtifacts(ctx, "t2", base.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("WithdrawArtifacts(t2) = %d, %v", n, err)
	}
	if _, err := s.GetArtifact(ctx, "dd04"); !errors.Is(err, store.ErrWithdrawn) {
		t.Errorf("GetArtifact after both withdrew: %v, want ErrWithdrawn", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
