package pdex

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// fakeExports stands in for the workflow: it records the transfer as
// workflows.ServeEngine does and what it was told; the tests move the
// transfer along its states.
type fakeExports struct {
	st        store.Store
	mu        sync.Mutex
	kickoffs  []Kickoff
	served    []string
	files     []string
	deleted   []string
	startErr  error
	servedErr error
	deleteErr error
}

func (f *fakeExports) StartExport(ctx context.Context, k Kickoff) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return f.startErr
	}
	f.kickoffs = append(f.kickoffs, k)
	_, err := f.st.CreateTransfer(ctx, store.NewTransfer{ClientID: ClientID(k.Requester), IdempotencyKey: k.TransferID,
		Transfer: transfer.Transfer{ID: k.TransferID, PartnerID: k.Requester, Direction: transfer.DirectionExport, State: transfer.StateInitiated},
		Event:    transfer.Event{State: transfer.StateInitiated, Type: transfer.EventState, Actor: "partner:" + k.Requester}})
	return err
}

func (f *fakeExports) ManifestServed(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = append(f.served, id)
	return f.servedErr
}

func (f *fakeExports) FileDownloaded(_ context.Context, id, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files = append(f.files, digest)
	return nil
}

func (f *fakeExports) DeleteExport(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, id)
	if f.deleteErr != nil {
		return f.deleteErr
	}
	_, err := (&activities.Transfer{Store: f.st}).WithdrawExport(ctx, activities.WithdrawInput{TransferID: id, Reason: "deleted"})
	return err
}

type bulkHarness struct {
	*harness
	st store.Store
	ex *fakeExports
}

// Grants of the harness: new-payer matched M1 (regular consent) and M2
// (sensitive), both until the end of January 2022; stranger matched nobody.
var consentEnd = day("2022-01-31T23:59:59Z")

func newBulkHarness(t *testing.T, edits ...func(*Deps)) *bulkHarness {
	t.Helper()
	st := openStore(t)
	ex := &fakeExports{st: st}
	hs := newHarness(t, func(d *Deps) {
		d.Exports, d.Store = ex, st
		for _, e := range edits {
			e(d)
		}
	})
	ctx := context.Background()
	if err := st.UpsertMembers(ctx, []member.Record{
		{ID: "M1", Given: "Ada", Family: "Lovelace", BirthDate: "1985-12-10", Sex: "F"},
		{ID: "M2", Given: "Alan", Family: "Turing", BirthDate: "1972-06-23", Sex: "M"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []store.MatchGrant{
		{Requester: "new-payer", MemberID: "M1", ConsentID: "c1", ConsentScope: transfer.ScopeRegular, ConsentExpires: consentEnd, GrantedAt: hs.clock.now()},
		{Requester: "new-payer", MemberID: "M2", ConsentID: "c2", ConsentScope: transfer.ScopeSensitive, ConsentExpires: consentEnd, GrantedAt: hs.clock.now()},
	} {
		if _, err := st.AppendMatchGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	return &bulkHarness{harness: hs, st: st, ex: ex}
}

func (b *bulkHarness) do(method, target, partner string, header map[string]string, body []byte) answer {
	b.t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	if partner != "" {
		r.Header.Set(partnerHeader, partner)
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, r)
	out, _ := io.ReadAll(w.Result().Body)
	return answer{w.Code, w.Result().Header, out}
}

var async = map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"}

// kickoff starts an export as new-payer and returns its transfer id.
func (b *bulkHarness) kickoff(target string) string {
	b.t.Helper()
	a := b.do("GET", target, "new-payer", async, nil)
	if a.status != http.StatusAccepted {
		b.t.Fatalf("kick-off %s: %d %s", target, a.status, a.body)
	}
	loc := a.header.Get("Content-Location")
	if !strings.HasPrefix(loc, "http://example.com/bulk-status/") {
		b.t.Fatalf("Content-Location %q", loc)
	}
	return strings.TrimPrefix(loc, "http://example.com/bulk-status/")
}

// prepare builds the export's files as the workflow does and moves the
// transfer to payload_prepared.
func (b *bulkHarness) prepare(id string, members ...activities.GrantedMember) activities.Prepared {
	b.t.Helper()
	b.ex.mu.Lock()
	k := b.ex.kickoffs[len(b.ex.kickoffs)-1]
	b.ex.mu.Unlock()
	acts := &activities.Serve{Env: activities.Env{Now: b.clock.now}, Store: b.st, Source: export.SyntheticSource{}}
	p, err := acts.PrepareServedExport(context.Background(), activities.ServeInput{TransferID: id, Requester: k.Requester,
		Members: members, Types: k.Types, Since: k.Since, TransactionTime: k.TransactionTime, Request: k.Request,
		Expires: b.clock.now().Add(24 * time.Hour)})
	if err != nil {
		b.t.Fatal(err)
	}
	b.state(id, transfer.StatePayloadPrepared, &p.Export, nil)
	return p
}

func (b *bulkHarness) state(id string, s transfer.State, e *transfer.ExportInfo, fail *transfer.ErrorInfo) {
	b.t.Helper()
	if _, err := b.st.ApplyChange(context.Background(), id, store.Change{State: s, Export: e, Error: fail,
		Event: transfer.Event{State: s, Type: transfer.EventState, Actor: "workflow", Key: transfer.StateKey(s)}}); err != nil {
		b.t.Fatal(err)
	}
}

var (
	m1 = activities.GrantedMember{MemberID: "M1", ConsentID: "c1", ConsentScope: transfer.ScopeRegular, Expires: consentEnd}
	m2 = activities.GrantedMember{MemberID: "M2", ConsentID: "c2", ConsentScope: transfer.ScopeSensitive, Expires: consentEnd}
)

func TestBulkKickoffParameters(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
		header map[string]string
		body   string
		status int
		class  string
	}{
		{"no partner", "GET", "/Patient/$export", nil, "", 401, OutcomeUnauthenticated},
		{"no Prefer: respond-async", "GET", "/Patient/$export", map[string]string{"Prefer": "return=minimal"}, "", 400, OutcomeInvalid},
		{"_typeFilter is not supported", "GET", "/Patient/$export?_typeFilter=Condition%3Fcode%3Dx", async, "", 400, OutcomeInvalid},
		{"_elements is not supported", "GET", "/Patient/$export?_elements=id", async, "", 400, OutcomeInvalid},
		{"patient in the query string (POST only)", "GET", "/Patient/$export?patient=Patient/pat-M1", async, "", 400, OutcomeInvalid},
		{"POST patient not a reference", "POST", "/Patient/$export", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			`{"resourceType":"Parameters","parameter":[{"name":"patient","valueString":"Patient/pat-M1"}]}`, 400, OutcomeInvalid},
		{"POST patient not a Patient", "POST", "/Patient/$export", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			`{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Group/pat-M1"}}]}`, 400, OutcomeInvalid},
		{"POST patient the requester did not match", "POST", "/Patient/$export", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			`{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/pat-M1"}},{"name":"patient","valueReference":{"reference":"Patient/pat-M9"}}]}`, 403, OutcomeConsentDenied},
		{"unknown parameter", "GET", "/Patient/$export?foo=bar", async, "", 400, OutcomeInvalid},
		{"_outputFormat other than ndjson", "GET", "/Patient/$export?_outputFormat=application/fhir%2Bjson", async, "", 400, OutcomeInvalid},
		{"_outputFormat twice", "GET", "/Patient/$export?_outputFormat=ndjson&_outputFormat=ndjson", async, "", 400, OutcomeInvalid},
		{"_type we do not export", "GET", "/Patient/$export?_type=Patient,Observation", async, "", 400, OutcomeInvalid},
		{"_type of Provenance alone", "GET", "/Patient/$export?_type=Provenance", async, "", 400, OutcomeInvalid},
		{"_since not an instant", "GET", "/Patient/$export?_since=2021-01-01", async, "", 400, OutcomeInvalid},
		{"_since twice", "GET", "/Patient/$export?_since=2021-01-01T00:00:00Z&_since=2022-01-01T00:00:00Z", async, "", 400, OutcomeInvalid},
		{"POST body not Parameters", "POST", "/Patient/$export", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			`{"resourceType":"Patient"}`, 400, OutcomeInvalid},
		{"POST _typeFilter", "POST", "/Patient/$export", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			`{"resourceType":"Parameters","parameter":[{"name":"_typeFilter","valueString":"Condition?code=x"}]}`, 400, OutcomeInvalid},
		{"Group of someone else", "GET", "/Group/matched-stranger/$davinci-data-export", async, "", 404, ""},
		{"Group we do not know", "GET", "/Group/g1/$davinci-data-export", async, "", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBulkHarness(t)
			partner := "new-payer"
			if tc.status == 401 {
				partner = ""
			}
			a := b.do(tc.method, tc.target, partner, tc.header, []byte(tc.body))
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if is := outcomeOf(t, a); class(is) != tc.class {
				t.Errorf("class %q, want %q: %s", class(is), tc.class, a.body)
			}
			if len(b.ex.kickoffs) != 0 {
				t.Errorf("an export was started: %+v", b.ex.kickoffs)
			}
		})
	}
}

func TestBulkKickoffAccepted(t *testing.T) {
	t.Run("GET with _type, _since and _outputFormat", func(t *testing.T) {
		b := newBulkHarness(t)
		id := b.kickoff("/Patient/$export?_type=Condition,Patient&_type=Provenance&_since=2022-01-01T00:00:00%2B02:00&_outputFormat=ndjson")
		k := b.ex.kickoffs[0]
		if k.TransferID != id || k.Requester != "new-payer" || strings.Join(k.MemberIDs, ",") != "M1,M2" ||
			strings.Join(k.Types, ",") != "Condition,Patient" || k.Since == nil || !k.Since.Equal(day("2021-12-31T22:00:00Z")) ||
			!k.TransactionTime.Equal(b.clock.now()) ||
			k.Request != "http://example.com/Patient/$export?_type=Condition,Patient&_type=Provenance&_since=2022-01-01T00:00:00%2B02:00&_outputFormat=ndjson" {
			t.Errorf("kick-off %+v", k)
		}
		tr, err := b.st.GetTransfer(context.Background(), id)
		if err != nil || tr.Direction != transfer.DirectionExport || tr.PartnerID != "new-payer" {
			t.Errorf("transfer %+v, %v", tr, err)
		}
	})
	t.Run("POST with Parameters", func(t *testing.T) {
		b := newBulkHarness(t)
		a := b.do("POST", "/Patient/$export", "new-payer", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			[]byte(`{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Coverage"},{"name":"_since","valueInstant":"2021-06-01T00:00:00Z"},{"name":"_outputFormat","valueString":"application/fhir+ndjson"}]}`))
		if a.status != http.StatusAccepted || len(b.ex.kickoffs) != 1 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if k := b.ex.kickoffs[0]; strings.Join(k.Types, ",") != "Coverage" || !k.Since.Equal(day("2021-06-01T00:00:00Z")) {
			t.Errorf("kick-off %+v", k)
		}
	})
	t.Run("POST with patient: only that matched member", func(t *testing.T) {
		b := newBulkHarness(t)
		a := b.do("POST", "/Patient/$export", "new-payer", map[string]string{"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
			[]byte(`{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"patient","valueReference":{"reference":"Patient/pat-M2"}}]}`))
		if a.status != http.StatusAccepted || len(b.ex.kickoffs) != 1 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if k := b.ex.kickoffs[0]; strings.Join(k.MemberIDs, ",") != "M2" || strings.Join(k.Patients, ",") != "Patient/pat-M2" {
			t.Errorf("kick-off %+v, want M2 alone", k)
		}
	})
	t.Run("Group of the requester's matched members", func(t *testing.T) {
		b := newBulkHarness(t)
		b.kickoff("/Group/" + MatchedGroupID("new-payer") + "/$davinci-data-export")
		if k := b.ex.kickoffs[0]; strings.Join(k.MemberIDs, ",") != "M1,M2" || !strings.HasSuffix(k.Request, "/Group/matched-new-payer/$davinci-data-export") {
			t.Errorf("kick-off %+v", k)
		}
	})
	t.Run("only members whose grant is in force", func(t *testing.T) {
		b := newBulkHarness(t)
		if _, err := b.st.AppendMatchGrant(context.Background(), store.MatchGrant{Requester: "new-payer", MemberID: "M2", ConsentID: "c3",
			ConsentScope: transfer.ScopeSensitive, ConsentExpires: b.clock.now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		b.kickoff("/Patient/$export")
		if k := b.ex.kickoffs[0]; strings.Join(k.MemberIDs, ",") != "M1" {
			t.Errorf("members %v, want M1 only (M2's latest grant has expired)", k.MemberIDs)
		}
	})
	t.Run("no grant in force", func(t *testing.T) {
		b := newBulkHarness(t)
		b.clock.add(30 * 24 * time.Hour) // past the consents' end
		a := b.do("GET", "/Patient/$export", "new-payer", async, nil)
		if a.status != http.StatusForbidden || class(outcomeOf(t, a)) != OutcomeConsentDenied || len(b.ex.kickoffs) != 0 {
			t.Errorf("status %d: %s", a.status, a.body)
		}
		if a := b.do("GET", "/Patient/$export", "stranger", async, nil); a.status != http.StatusForbidden {
			t.Errorf("a partner that matched nobody: %d", a.status)
		}
	})
	t.Run("the workflow cannot start", func(t *testing.T) {
		b := newBulkHarness(t)
		b.ex.startErr = errors.New("temporal is down")
		if a := b.do("GET", "/Patient/$export", "new-payer", async, nil); a.status != http.StatusInternalServerError ||
			bytes.Contains(a.body, []byte("temporal")) {
			t.Errorf("status %d: %s", a.status, a.body)
		}
	})
}

func TestBulkMatchRecordsGrant(t *testing.T) {
	b := newBulkHarness(t)
	if a := b.match("new-payer", exampleBody(t)); a.status != http.StatusOK {
		t.Fatalf("member-match: %d %s", a.status, a.body)
	}
	gs, err := b.st.MatchGrants(context.Background(), "new-payer")
	if err != nil {
		t.Fatal(err)
	}
	var g store.MatchGrant
	for _, x := range gs {
		if x.MemberID == "M100001" {
			g = x
		}
	}
	// The HRex example consent: regular, provision period January 2022.
	if g.ConsentScope != transfer.ScopeRegular || !g.ConsentExpires.Equal(day("2022-01-31T23:59:59.999999Z")) ||
		!g.GrantedAt.Equal(b.clock.now()) || g.ConsentID == "" {
		t.Errorf("grant %+v", g)
	}
}

func TestBulkStatus(t *testing.T) {
	b := newBulkHarness(t)
	id := b.kickoff("/Patient/$export?_type=Patient,Condition")

	a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil)
	if a.status != http.StatusAccepted || a.header.Get("X-Progress") == "" || a.header.Get("Retry-After") != "2" {
		t.Errorf("in progress: %d %v", a.status, a.header)
	}
	for _, who := range []string{"stranger", ""} {
		want := http.StatusNotFound
		if who == "" {
			want = http.StatusUnauthorized
		}
		if a := b.do("GET", "/bulk-status/"+id, who, nil, nil); a.status != want {
			t.Errorf("status as %q: %d, want %d", who, a.status, want)
		}
	}
	if a := b.do("GET", "/bulk-status/no-such-export", "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("unknown export: %d", a.status)
	}

	p := b.prepare(id, m1, m2)
	b.ex.servedErr = errors.New("temporal is down")
	if a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("manifest while the workflow cannot be told: %d", a.status)
	}
	b.ex.servedErr = nil
	a = b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("complete: %d %s", a.status, a.body)
	}
	if exp, err := http.ParseTime(a.header.Get("Expires")); err != nil || !exp.Equal(b.clock.now().Add(24*time.Hour)) {
		t.Errorf("Expires %q", a.header.Get("Expires"))
	}
	var man BulkManifest
	if err := json.Unmarshal(a.body, &man); err != nil {
		t.Fatal(err)
	}
	if !man.RequiresAccessToken || man.TransactionTime != b.clock.now().UTC().Format(time.RFC3339Nano) ||
		man.Request != "http://example.com/Patient/$export?_type=Patient,Condition" || man.Error == nil || len(man.Error) != 0 {
		t.Errorf("manifest %s", a.body)
	}
	// M1 (regular): Patient, Condition (the sensitive one left out),
	// Provenance; M2 (sensitive): Patient, both Conditions, Provenance.
	var got []string
	for _, o := range man.Output {
		got = append(got, o.Type+":"+string(rune('0'+o.Count)))
		if !strings.HasPrefix(o.URL, "http://example.com/bulk-files/"+id+"/") {
			t.Errorf("file url %s", o.URL)
		}
	}
	if strings.Join(got, ",") != "Condition:1,Patient:1,Provenance:2,Condition:2,Patient:1,Provenance:3" || len(p.Export.Files) != 6 {
		t.Errorf("output %v", got)
	}
	if len(b.ex.served) != 2 {
		t.Errorf("workflow told %d times, want 2 (once failing)", len(b.ex.served))
	}
	b.state(id, transfer.StateSent, nil, nil)
	if a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusOK || len(b.ex.served) != 2 {
		t.Errorf("manifest once sent: %d, workflow told %d times", a.status, len(b.ex.served))
	}
	b.clock.add(24*time.Hour + time.Second)
	if a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("after Expires: %d", a.status)
	}
}

func TestBulkStatusFailed(t *testing.T) {
	for _, tc := range []struct {
		errType string
		status  int
	}{
		{transfer.ErrorConsentDenied, http.StatusForbidden},
		{transfer.ErrorInternal, http.StatusInternalServerError},
		{transfer.ErrorAckTimeout, http.StatusInternalServerError},
		{transfer.ErrorCancelled, http.StatusNotFound},
	} {
		t.Run(tc.errType, func(t *testing.T) {
			b := newBulkHarness(t)
			id := b.kickoff("/Patient/$export")
			b.state(id, transfer.StateFailed, nil, &transfer.ErrorInfo{Type: tc.errType, Detail: "x"})
			a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d", a.status, tc.status)
			}
			if is := outcomeOf(t, a); tc.status != 404 && class(is) != tc.errType {
				t.Errorf("class %q", class(is))
			}
			if a := b.do("DELETE", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusNotFound {
				t.Errorf("DELETE of an ended export: %d", a.status)
			}
		})
	}
}

func TestBulkDelete(t *testing.T) {
	b := newBulkHarness(t)
	id := b.kickoff("/Patient/$export")
	p := b.prepare(id, m1)
	if a := b.do("DELETE", "/bulk-status/"+id, "stranger", nil, nil); a.status != http.StatusNotFound || len(b.ex.deleted) != 0 {
		t.Errorf("DELETE by another partner: %d", a.status)
	}
	b.ex.deleteErr = errors.New("temporal is down")
	if a := b.do("DELETE", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusInternalServerError {
		t.Errorf("DELETE failing: %d", a.status)
	}
	b.ex.deleteErr = nil
	if a := b.do("DELETE", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	if a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d", a.status)
	}
	if a := b.do("GET", "/bulk-files/"+id+"/"+p.Export.Files[0].SHA256, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("file after DELETE: %d", a.status)
	}
	if a := b.do("DELETE", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d", a.status)
	}
}

func TestBulkFiles(t *testing.T) {
	b := newBulkHarness(t)
	id := b.kickoff("/Patient/$export?_type=Patient,Condition")
	if a := b.do("GET", "/bulk-files/"+id+"/"+strings.Repeat("0", 64), "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("file before the export is prepared: %d", a.status)
	}
	p := b.prepare(id, m1, m2)
	file := func(member, typ string) transfer.ExportFile {
		t.Helper()
		art, _ := b.st.GetArtifact(context.Background(), p.Export.ManifestSHA256)
		man, _ := export.ParseBulkManifest(art.Data)
		for _, f := range man.Files {
			if f.MemberID == member && f.Type == typ {
				return transfer.ExportFile{Type: f.Type, Count: f.Count, SHA256: f.SHA256}
			}
		}
		t.Fatalf("no %s file of %s", typ, member)
		return transfer.ExportFile{}
	}
	get := func(partner string, f transfer.ExportFile) answer {
		return b.do("GET", "/bulk-files/"+id+"/"+f.SHA256, partner, nil, nil)
	}

	patient := file("M1", "Patient")
	a := get("new-payer", patient)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/fhir+ndjson" || bytes.Count(a.body, []byte("\n")) != 1 ||
		!bytes.Contains(a.body, []byte(`"resourceType":"Patient"`)) {
		t.Fatalf("file: %d %q %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	if len(b.ex.files) != 1 || b.ex.files[0] != patient.SHA256 {
		t.Errorf("workflow told of %v", b.ex.files)
	}
	tl, err := b.st.Timeline(context.Background(), id)
	if err != nil || tl[len(tl)-1].Type != transfer.EventFileDownloaded || tl[len(tl)-1].Detail["sha256"] != patient.SHA256 ||
		tl[len(tl)-1].Actor != "partner:new-payer" {
		t.Errorf("download not in the timeline: %+v, %v", tl, err)
	}

	if a := get("stranger", patient); a.status != http.StatusNotFound || bytes.Contains(a.body, []byte("Lovelace")) {
		t.Errorf("file as another partner: %d", a.status)
	}
	if a := get("", patient); a.status != http.StatusUnauthorized {
		t.Errorf("file without a partner: %d", a.status)
	}
	if a := b.do("GET", "/bulk-files/"+id+"/"+p.Export.ManifestSHA256, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("the internal manifest as a file: %d", a.status)
	}
	other := b.kickoff("/Patient/$export?_type=Patient")
	if a := b.do("GET", "/bulk-files/"+other+"/"+patient.SHA256, "new-payer", nil, nil); a.status != http.StatusNotFound {
		t.Errorf("a file of another export: %d", a.status)
	}

	// M2's consent narrows to regular: its files with sensitive data (the
	// Conditions, and their Provenance) are refused, the rest served.
	if _, err := b.st.AppendMatchGrant(context.Background(), store.MatchGrant{Requester: "new-payer", MemberID: "M2", ConsentID: "c4",
		ConsentScope: transfer.ScopeRegular, ConsentExpires: consentEnd}); err != nil {
		t.Fatal(err)
	}
	if a := get("new-payer", file("M2", "Condition")); a.status != http.StatusForbidden || class(outcomeOf(t, a)) != OutcomeConsentDenied {
		t.Errorf("sensitive file under a regular grant: %d %s", a.status, a.body)
	}
	if a := get("new-payer", file("M2", "Provenance")); a.status != http.StatusForbidden {
		t.Errorf("provenance of sensitive data under a regular grant: %d", a.status)
	}
	if a := get("new-payer", file("M2", "Patient")); a.status != http.StatusOK {
		t.Errorf("non-sensitive file under a regular grant: %d", a.status)
	}

	// M1's consent ends (a later match brought a consent that has since
	// ended): its files are no longer served, though the export lives on.
	if _, err := b.st.AppendMatchGrant(context.Background(), store.MatchGrant{Requester: "new-payer", MemberID: "M1", ConsentID: "c5",
		ConsentScope: transfer.ScopeSensitive, ConsentExpires: b.clock.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	b.clock.add(time.Hour + time.Second)
	if a := get("new-payer", patient); a.status != http.StatusForbidden || class(outcomeOf(t, a)) != OutcomeConsentDenied {
		t.Errorf("file after the consent ended: %d %s", a.status, a.body)
	}
	if a := b.do("GET", "/bulk-status/"+id, "new-payer", nil, nil); a.status != http.StatusOK {
		t.Errorf("status is still served until Expires: %d", a.status)
	}
}
