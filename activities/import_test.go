package activities

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/connectors/pdexclient"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

type oneMatch struct{}

func (oneMatch) Resolve(_ context.Context, q transfer.Demographics) (identity.Decision, error) {
	switch q.MemberID {
	case "OLD-1":
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M1"}, nil
	case "OLD-3": // the same person under another old card
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M3"}, nil
	}
	return identity.Decision{Outcome: identity.OutcomeNoMatch}, nil
}

// importFixture is the import activities over SQLite, against an old payer
// made of pdex's $member-match handler and the bulktest server.
type importFixture struct {
	acts *Import
	st   store.Store
	bulk *bulktest.Server
	srv  *httptest.Server // the old payer
	dir  string           // the import bucket's directory
}

func newImportFixture(t *testing.T) *importFixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, st)
	return newImportFixtureOn(t, st)
}

// newImportFixtureOn is an importFixture over st.
func newImportFixtureOn(t *testing.T, st store.Store) *importFixture {
	t.Helper()
	return newImportFixtureWith(t, st, nil)
}

// newImportFixtureWith is an importFixture over st whose partner and pull
// dialer configure changes, given the old payer's server URL.
func newImportFixtureWith(t *testing.T, st store.Store, configure func(srvURL string, p *connectors.Partner, d *pdexclient.Dialer)) *importFixture {
	t.Helper()
	us := []fhir.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}
	mm, err := pdex.NewHandler(pdex.Deps{
		Matcher:        oneMatch{},
		Requester:      pdex.HeaderRequester("X-P2P-Partner", func(id string) bool { return id == "newco" }),
		Parties:        func(id string) (pdex.Party, bool) { return pdex.Party{ID: id, Identifiers: us}, true },
		MemberIDSystem: "https://old.example/member",
		PatientRef:     func(id string) string { return "Patient/pt-" + id },
		MaxFailures:    100,
	})
	if err != nil {
		t.Fatal(err)
	}
	bulk := bulktest.New()
	bh := bulk.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/fhir")
		if r2.URL.Path == "/Patient/$member-match" {
			mm.ServeHTTP(w, r2)
			return
		}
		bh.ServeHTTP(w, r2)
	}))
	t.Cleanup(srv.Close)
	bulk.BaseURL = srv.URL + "/fhir"
	p := connectors.Partner{ID: "oldco", Name: "Old Co", Roles: []connectors.Role{connectors.RolePull},
		FHIRBaseURL: srv.URL + "/fhir", Auth: connectors.Auth{ClientID: "newco"}, AllowPrivateNetwork: true}
	dialer := &pdexclient.Dialer{TrustHeader: "X-P2P-Partner"}
	if configure != nil {
		configure(srv.URL, &p, dialer)
	}
	partners, err := connectors.NewRegistry(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bucket, err := blobstage.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bucket.Close() })
	acts := &Import{Env: Env{Now: func() time.Time { return t0 }}, Store: st, Partners: partners, Pull: dialer,
		Payer: Payer{Name: "New Co", Identifiers: us, MemberIDSystem: "https://new.example/member"}, Bucket: bucket}
	return &importFixture{acts: acts, st: st, bulk: bulk, srv: srv, dir: dir}
}

func (f *importFixture) create(t *testing.T, id, card string, at time.Time) {
	t.Helper()
	f.createFor(t, id, "", card, at)
}

// createFor creates import id for our member (member.member_id; "" for
// one not yet numbered) with the old card.
func (f *importFixture) createFor(t *testing.T, id, member, card string, at time.Time) {
	t.Helper()
	req := transfer.Request{PartnerID: "oldco", Direction: transfer.DirectionImport,
		Member: transfer.Demographics{MemberID: member, Given: "Ada", Family: "Lovelace", BirthDate: "1990-01-02"},
		Consent: transfer.Consent{ID: "c1", Status: "active", Scope: transfer.ScopeRegular,
			PeriodStart: t0.AddDate(0, -1, 0), PeriodEnd: t0.AddDate(1, 0, 0)},
		DataScope:       transfer.DataScope{ResourceTypes: []string{"Patient", "Coverage"}},
		CoverageToMatch: &transfer.CoverageToMatch{Payer: "oldco", MemberID: card}}
	_, err := f.st.CreateTransfer(context.Background(), store.NewTransfer{ClientID: "c", IdempotencyKey: "k-" + id, Fingerprint: id,
		Transfer: transfer.Transfer{ID: id, ClientID: "c", PartnerID: "oldco", Direction: transfer.DirectionImport,
			State: transfer.StateInitiated, CreatedAt: at, UpdatedAt: at},
		Request: req, Event: transfer.Event{At: at, State: transfer.StateInitiated, Actor: "client:c", Type: "state", Key: "state:initiated"}})
	if err != nil {
		t.Fatal(err)
	}
}

func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return ""
}

func TestImportActivitiesAgainstAnOldPayer(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	f.create(t, "t1", "OLD-1", t0)
	in := ImportInput{TransferID: "t1", PartnerID: "oldco"}

	m, err := f.acts.MatchAtPartner(ctx, in)
	if err != nil || m.Status != transfer.IdentityResolved || m.MemberID != "M1" || m.PatientID != "pt-M1" {
		t.Fatalf("match = %+v, %v", m, err)
	}
	plan, err := f.acts.PlanImport(ctx, in)
	if err != nil || plan.SinceSource != "window" || !plan.Since.Equal(t0.AddDate(-5, 0, 0)) || len(plan.Types) != 2 {
		t.Fatalf("plan = %+v, %v", plan, err)
	}

	for i, typ := range []string{"Patient", "Coverage", "Coverage", "Observation"} {
		raw := json.RawMessage(`{"resourceType":"` + typ + `","id":"r` + string(rune('0'+i)) + `"}`)
		if err := f.bulk.Add("pt-M1", raw); err != nil {
			t.Fatal(err)
		}
	}
	f.bulk.PollsBeforeDone, f.bulk.RetryAfter = 1, "30"
	k, err := f.acts.KickOffImport(ctx, KickOffInput{TransferID: "t1", PartnerID: "oldco", PatientID: m.PatientID, Types: plan.Types, Since: plan.Since, Round: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.acts.PollImport(ctx, PollInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL})
	if err != nil || p.Status.State != bulkdata.StateInProgress || p.Status.InProgress.RetryAfter != "30" {
		t.Fatalf("first poll = %+v, %v", p, err)
	}
	if p, err = f.acts.PollImport(ctx, PollInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL}); err != nil || p.Status.State != bulkdata.StateComplete {
		t.Fatalf("second poll = %+v, %v", p, err)
	}
	man := p.Status.Complete.Manifest
	if len(man.Output) != 2 || p.ManifestSHA256 == "" {
		t.Fatalf("manifest %+v", man)
	}

	// A 410 on a file is bulk_export_expired, which the workflow answers
	// with a new kick-off.
	f.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 410})
	_, err = f.acts.DownloadImportFile(ctx, DownloadInput{TransferID: "t1", PartnerID: "oldco", Round: 1, File: man.Output[0], N: 1})
	if errType(err) != ErrTypeExportExpired {
		t.Fatalf("download after 410: %v (type %q)", err, errType(err))
	}
	var files []transfer.ExportFile
	for i, n := range bulkdata.OutputSeq(man.Output) {
		ef, err := f.acts.DownloadImportFile(ctx, DownloadInput{TransferID: "t1", PartnerID: "oldco", Round: 1, File: man.Output[i], N: n})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, ef)
	}
	if files[0].Type != "Patient" || files[0].Count != 1 || files[1].Type != "Coverage" || files[1].Count != 2 || len(files[1].SHA256) != 64 {
		t.Fatalf("files %+v", files)
	}
	d, err := f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 1, Files: files})
	if err != nil || d.Files != 2 || d.ReceiptID == "" {
		t.Fatalf("deliver = %+v, %v", d, err)
	}
	// Delivering again (a retry after the rename) answers the same receipt.
	if d2, err := f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 1, Files: files}); err != nil || d2 != d {
		t.Fatalf("redeliver = %+v, %v", d2, err)
	}
	// With a FHIR sink, the delivered resources are also written to our
	// FHIR server, as batch PUTs.
	var puts []string
	fhirSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Entry []struct{ Request struct{ Method, URL string } }
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		var out []string
		for _, e := range b.Entry {
			puts = append(puts, e.Request.Method+" "+e.Request.URL)
			out = append(out, `{"response":{"status":"201 Created"}}`)
		}
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"batch-response","entry":[` + strings.Join(out, ",") + `]}`))
	}))
	defer fhirSrv.Close()
	sink, err := fhirrest.NewSink(fhirrest.SinkConfig{Config: fhirrest.Config{BaseURL: fhirSrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	f.acts.FHIR = sink
	d3, err := f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 1, Files: files})
	f.acts.FHIR = nil
	if err != nil || d3.Sink != "fhir" || d3.Loaded != 3 || d3.ReceiptID != d.ReceiptID {
		t.Fatalf("deliver to FHIR = %+v, %v", d3, err)
	}
	slices.Sort(puts)
	if got := strings.Join(puts, ","); got != "PUT Coverage/r1,PUT Coverage/r2,PUT Patient/r0" {
		t.Fatalf("FHIR server got %s", got)
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "t1", "Coverage.1.ndjson"))
	if err != nil || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("delivered Coverage file: %q, %v", b, err)
	}
	// A file changed after download fails the read-back.
	if err := os.WriteFile(filepath.Join(f.dir, "t1", "Patient.1.ndjson"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 1, Files: files}); errType(err) != ErrTypeValidation {
		t.Fatalf("tampered delivery: %v", err)
	}
	// Discarding removes what is staged.
	if _, err := f.acts.DownloadImportFile(ctx, DownloadInput{TransferID: "t1", PartnerID: "oldco", Round: 2, File: man.Output[0], N: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.acts.DiscardImport(ctx, DiscardInput{TransferID: "t1", Reason: "cancelled"}); err != nil || !ok {
		t.Fatalf("discard = %v, %v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, ".staging", "t1")); !os.IsNotExist(err) {
		t.Fatalf("staged files left: %v", err)
	}
	if err := f.acts.DeleteImport(ctx, DeleteInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL, Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	if got := f.bulk.Deleted(); len(got) != 1 {
		t.Fatalf("deleted %v", got)
	}
	evs, err := f.st.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.Type]++
		b, _ := json.Marshal(ev.Detail)
		for _, phi := range []string{"Ada", "Lovelace", "1990-01-02"} {
			if strings.Contains(string(b), phi) {
				t.Errorf("event %s holds PHI %q", ev.Type, phi)
			}
		}
	}
	for _, typ := range []string{transfer.EventMemberMatch, transfer.EventImportPlanned, transfer.EventBulkKickOff, transfer.EventBulkDeleted} {
		if seen[typ] != 1 {
			t.Errorf("%s events %d, want 1", typ, seen[typ])
		}
	}
	if seen[transfer.EventBulkFile] != 3 || seen[transfer.EventImportDiscard] != 1 || seen[transfer.EventImportLoaded] != 1 {
		t.Errorf("bulk_file events %d, discards %d, loads %d; want 3, 1 and 1", seen[transfer.EventBulkFile], seen[transfer.EventImportDiscard], seen[transfer.EventImportLoaded])
	}

	// A run-off pull of the same member starts at the first one's
	// transactionTime.
	tt := t0.Add(-time.Hour)
	if _, err := f.st.ApplyChange(ctx, "t1", store.Change{State: transfer.StateComplete, Export: &transfer.ExportInfo{TransactionTime: &tt},
		Event: transfer.Event{At: t0, State: transfer.StateComplete, Actor: "workflow", Type: "state", Key: "state:complete"}}); err != nil {
		t.Fatal(err)
	}
	f.create(t, "t2", "OLD-1", t0.Add(time.Minute))
	if plan, err := f.acts.PlanImport(ctx, ImportInput{TransferID: "t2", PartnerID: "oldco"}); err != nil || plan.SinceSource != "run_off" || !plan.Since.Equal(tt) || plan.RunOffOf != "t1" {
		t.Fatalf("run-off plan = %+v, %v", plan, err)
	}
	// Another member's pull does not.
	f.create(t, "t3", "OLD-2", t0.Add(time.Minute))
	if plan, err := f.acts.PlanImport(ctx, ImportInput{TransferID: "t3", PartnerID: "oldco"}); err != nil || plan.SinceSource != "window" {
		t.Fatalf("other member's plan = %+v, %v", plan, err)
	}
	// No match is an outcome, recorded, not an error.
	if m, err := f.acts.MatchAtPartner(ctx, ImportInput{TransferID: "t3", PartnerID: "oldco"}); err != nil || m.Status != transfer.ErrorNoMatch || m.HTTPStatus != 422 {
		t.Fatalf("no-match = %+v, %v", m, err)
	}
}

// Every partner-facing activity and every compensation has a policy, and
// the import's undo steps are declared where the table says.
func TestImportPolicies(t *testing.T) {
	for _, n := range PartnerActivities {
		if _, ok := Policies[n]; !ok {
			t.Errorf("partner activity %s has no policy", n)
		}
	}
	for n, p := range Policies {
		if _, ok := Policies[p.Compensation]; p.Compensation != "" && !ok {
			t.Errorf("%s's compensation %s has no policy", n, p.Compensation)
		}
	}
	if Policies[NameKickOffImport].Compensation != NameDeleteImport || Policies[NameDownloadImportFile].Compensation != NameDiscardImport {
		t.Error("import compensations are not declared")
	}
	for _, n := range []string{NamePollImport, NameDownloadImportFile} {
		found := false
		for _, typ := range Policies[n].Retry.NonRetryableErrorTypes {
			found = found || typ == ErrTypeExportExpired
		}
		if !found {
			t.Errorf("%s retries an expired export instead of handing it to the workflow", n)
		}
	}
}

// A DELETE the old payer refuses (405: it does not support deleting
// exports; any 4xx) is final: DeleteImport's policy does not retry it for
// two hours. Transport failures and 5xx stay retryable.
func TestDeleteImportRefusalIsFinal(t *testing.T) {
	ctx := context.Background()
	f := newImportFixture(t)
	f.create(t, "t1", "OLD-1", t0)
	m, err := f.acts.MatchAtPartner(ctx, ImportInput{TransferID: "t1", PartnerID: "oldco"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.acts.KickOffImport(ctx, KickOffInput{TransferID: "t1", PartnerID: "oldco", PatientID: m.PatientID, Types: []string{"Patient"}, Round: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		status   int
		typ      string
		retrying bool
	}{
		{http.StatusMethodNotAllowed, ErrTypePartnerRejected, false},
		{http.StatusBadRequest, ErrTypePartnerRejected, false},
		{http.StatusServiceUnavailable, "", true},
	} {
		f.bulk.Inject(bulktest.RouteDelete, bulktest.Answer{Status: c.status})
		err := f.acts.DeleteImport(ctx, DeleteInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL, Reason: "cancelled"})
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) {
			t.Fatalf("DELETE answered %d: %v, want an application error", c.status, err)
		}
		if c.typ != "" && ae.Type() != c.typ {
			t.Errorf("DELETE answered %d: type %q, want %q", c.status, ae.Type(), c.typ)
		}
		// What the server does with the failure: final if the activity
		// marked it so or the policy names its type.
		final := ae.NonRetryable() || slices.Contains(Policies[NameDeleteImport].Retry.NonRetryableErrorTypes, ae.Type())
		if final == c.retrying {
			t.Errorf("DELETE answered %d (%s): final %v, want %v", c.status, ae.Type(), final, !c.retrying)
		}
	}
}
