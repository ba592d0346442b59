package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func TestGetTransfer(t *testing.T) {
	e := newEnv(t)
	created := decode[Transfer](t, e.post(key, body("sandbox")))

	// The workflow's outcomes show through.
	ctx := context.Background()
	at := time.Now().UTC()
	if _, err := e.store.ApplyChange(ctx, created.Id, store.Change{
		Event: transfer.Event{At: at, State: transfer.StateManualReview, Actor: "workflow", Type: "state",
			Key: transfer.StateKey(transfer.StateManualReview)},
		State: transfer.StateManualReview,
		Identity: &transfer.IdentityOutcome{Status: transfer.IdentityAmbiguous, Score: 0.9, Candidates: []string{"m1", "m2"},
			Rationale: &transfer.Rationale{Rule: "exact", Summary: "two equal candidates",
				Fields: []transfer.FieldContribution{{Field: "birth_date", Level: "exact", Weight: 2.5}}}},
	}); err != nil {
		t.Fatal(err)
	}
	w := e.do(http.MethodGet, "/v1/transfers/"+created.Id, "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET = %d %s", w.Code, w.Body)
	}
	got := decode[Transfer](t, w)
	if got.State != TransferStateManualReview || got.Identity == nil || got.Identity.Status != IdentityStatusAmbiguous ||
		len(deref(got.Identity.Candidates)) != 2 || got.Identity.Rationale == nil || got.Identity.Rationale.Rule != "exact" {
		t.Errorf("transfer = %+v", got)
	}
	if got.Direction != DirectionExport {
		t.Errorf("direction = %q, want export", got.Direction)
	}
	if got.Links.Review == nil || *got.Links.Review != "/v1/transfers/"+created.Id+"/review" {
		t.Errorf("review link = %v", got.Links.Review)
	}

	problem(t, e.do(http.MethodGet, "/v1/transfers/no-such-transfer", ""), http.StatusNotFound, ProblemNotFound)
}

func TestListTransfers(t *testing.T) {
	e := newEnv(t)
	var ids []string // in creation order
	for i := range 5 {
		partner := "sandbox"
		if i%2 == 1 {
			partner = "acme"
		}
		w := e.post(fmt.Sprintf("key-list-%04d", i), body(partner))
		ids = append(ids, decode[Transfer](t, w).Id)
		time.Sleep(2 * time.Millisecond) // distinct created_at
	}
	if _, err := e.store.ApplyChange(context.Background(), ids[2], store.Change{
		Event: transfer.Event{At: time.Now(), State: transfer.StateFailed, Actor: "workflow", Type: "state",
			Key: transfer.StateKey(transfer.StateFailed)},
		State: transfer.StateFailed, Error: &transfer.ErrorInfo{Type: transfer.ErrorNoMatch, Detail: "no member matched"},
	}); err != nil {
		t.Fatal(err)
	}

	// Paging visits every transfer once, newest first.
	var seen []string
	cursor := ""
	for page := 0; ; page++ {
		q := "/v1/transfers?limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		w := e.do(http.MethodGet, q, "")
		if w.Code != http.StatusOK {
			t.Fatalf("page %d = %d %s", page, w.Code, w.Body)
		}
		if !strings.Contains(w.Body.String(), `"next_cursor":`) {
			t.Errorf("page %d lacks next_cursor: %s", page, w.Body)
		}
		p := decode[TransferPage](t, w)
		if len(p.Items) > 2 {
			t.Fatalf("page %d has %d items", page, len(p.Items))
		}
		for _, it := range p.Items {
			seen = append(seen, it.Id)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("paged ids = %v, want %v", seen, want)
	}

	cases := []struct {
		query string
		want  []string
	}{
		{"partner_id=acme", []string{ids[3], ids[1]}},
		{"state=failed", []string{ids[2]}},
		{"state=initiated&partner_id=sandbox", []string{ids[4], ids[0]}},
		{"partner_id=nobody", nil},
		{"direction=export&partner_id=acme", []string{ids[3], ids[1]}},
		{"direction=import", nil},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			w := e.do(http.MethodGet, "/v1/transfers?"+c.query, "")
			p := decode[TransferPage](t, w)
			var got []string
			for _, it := range p.Items {
				got = append(got, it.Id)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") || p.NextCursor != nil {
				t.Errorf("ids = %v next %v, want %v", got, p.NextCursor, c.want)
			}
		})
	}
}

func TestTimeline(t *testing.T) {
	e := newEnv(t)
	tr := decode[Transfer](t, e.post(key, body("sandbox")))
	w := e.do(http.MethodGet, "/v1/transfers/"+tr.Id+"/timeline", "")
	if w.Code != http.StatusOK {
		t.Fatalf("timeline = %d %s", w.Code, w.Body)
	}
	tl := decode[Timeline](t, w)
	if len(tl.Events) != 2 || tl.Events[1].Type != transfer.EventRead {
		t.Fatalf("events = %+v, want the initiated state and this read", tl.Events)
	}
	ev := tl.Events[0]
	if ev.State == nil || *ev.State != TransferStateInitiated || ev.Actor != "client:"+testClient || ev.Type != "state" ||
		ev.Detail == nil || (*ev.Detail)["partner_id"] != "sandbox" || (*ev.Detail)["correlation_id"] != nil || (*ev.Detail)["correlation_id_hmac"] == nil {
		t.Errorf("event = %+v", ev)
	}
	for _, v := range phi {
		if strings.Contains(w.Body.String(), v) {
			t.Errorf("timeline holds PHI %q", v)
		}
	}
	problem(t, e.do(http.MethodGet, "/v1/transfers/no-such-transfer/timeline", ""), http.StatusNotFound, ProblemNotFound)
}

func TestReview(t *testing.T) {
	approve := `{"decision": "approve", "member_id": "m1", "reason": "same person, checked by phone"}`
	cases := []struct {
		name   string
		id     string // "" = an existing transfer
		doc    string
		err    error
		status int
		slug   string
	}{
		{"approved", "", approve, nil, http.StatusAccepted, ""},
		{"rejected", "", `{"decision": "reject", "reason": "not our member"}`, nil, http.StatusAccepted, ""},
		{"not in review", "", approve, transfer.ErrNotInReview, http.StatusConflict, ProblemNotInReview},
		{"invalid decision", "", approve, fmt.Errorf("%w: m1 is not a candidate", transfer.ErrInvalidDecision),
			http.StatusUnprocessableEntity, ProblemInvalidDecision},
		{"engine down", "", approve, errBoom, http.StatusServiceUnavailable, ProblemUnavailable},
		{"unknown transfer", "no-such-transfer", approve, nil, http.StatusNotFound, ProblemNotFound},
		{"approve without member", "", `{"decision": "approve", "reason": "ok"}`, nil, http.StatusBadRequest, ProblemValidation},
		{"bad decision", "", `{"decision": "maybe", "reason": "ok"}`, nil, http.StatusBadRequest, ProblemValidation},
		{"no reason", "", `{"decision": "reject"}`, nil, http.StatusBadRequest, ProblemValidation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			id := c.id
			if id == "" {
				id = decode[Transfer](t, e.post(key, body("sandbox"))).Id
			}
			e.engine.set(func(f *fakeEngine) { f.reviewErr = c.err })
			w := e.do(http.MethodPost, "/v1/transfers/"+id+"/review", c.doc)
			if c.slug != "" {
				p := problem(t, w, c.status, c.slug)
				if strings.Contains(w.Body.String(), "10.0.0.7") || strings.Contains(deref(p.Detail), "m1 is not") {
					t.Errorf("problem leaks the engine error: %s", w.Body)
				}
				return
			}
			if w.Code != c.status {
				t.Fatalf("review = %d %s", w.Code, w.Body)
			}
			if tr := decode[Transfer](t, w); tr.Id != id {
				t.Errorf("answered transfer %s, want %s", tr.Id, id)
			}
			e.engine.mu.Lock()
			defer e.engine.mu.Unlock()
			if len(e.engine.reviews) != 1 || e.engine.reviews[0].Reviewer != testClient {
				t.Errorf("reviews = %+v", e.engine.reviews)
			}
		})
	}
}

func TestUpsertMember(t *testing.T) {
	e := newEnv(t)
	doc := `{"given": "Zelphina", "family": "Quarrington", "birth_date": "1984-07-19", "sex": "F",
		"street": "17 Larkspur Lane", "city": "Springfield", "state": "IL", "postal_code": "62701", "phone": "555-0199"}`
	w := e.do(http.MethodPut, "/v1/members/m-100", doc)
	if w.Code != http.StatusCreated {
		t.Fatalf("first PUT = %d %s", w.Code, w.Body)
	}
	if m := decode[Member](t, w); m.MemberId != "m-100" || m.BirthDate != "1984-07-19" || m.Sex != "F" {
		t.Errorf("member = %+v", m)
	}
	if w := e.do(http.MethodPut, "/v1/members/m-100", strings.Replace(doc, "555-0199", "555-0100", 1)); w.Code != http.StatusOK {
		t.Fatalf("second PUT = %d %s", w.Code, w.Body)
	}
	rec, err := e.store.GetMember(context.Background(), "m-100")
	if err != nil || rec.Phone != "555-0100" || rec.Given != "Zelphina" {
		t.Errorf("stored member = %+v, %v", rec, err)
	}

	cases := []struct {
		name   string
		doc    string
		field  string
		secret string
	}{
		{"bad birth date", strings.Replace(doc, "1984-07-19", "19840719", 1), "birth_date", "19840719"},
		{"too old", strings.Replace(doc, "1984-07-19", "1850-07-19", 1), "birth_date", "1850-07-19"},
		{"no names", strings.Replace(strings.Replace(doc, `"Zelphina"`, `""`, 1), `"Quarrington"`, `""`, 1), "family", ""},
		{"other member id", strings.Replace(doc, `{`, `{"member_id": "m-999", `, 1), "member_id", "m-999"},
		{"bad sex", strings.Replace(doc, `"F"`, `"Female"`, 1), "sex", "Female"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := e.do(http.MethodPut, "/v1/members/m-200", c.doc)
			p := problem(t, w, http.StatusBadRequest, ProblemValidation)
			if !hasField(p, c.field) {
				t.Errorf("errors = %v, want %s", fields(p), c.field)
			}
			if c.secret != "" && strings.Contains(w.Body.String(), c.secret) {
				t.Errorf("problem echoes %q: %s", c.secret, w.Body)
			}
		})
	}
	if _, err := e.store.GetMember(context.Background(), "m-200"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("invalid member stored: %v", err)
	}
}

func TestOperations(t *testing.T) {
	e := newEnv(t)
	w := e.do(http.MethodGet, "/.well-known/jwks.json", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/jwk-set+json" || w.Body.String() != testJWKS {
		t.Errorf("jwks = %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if w := e.do(http.MethodGet, path, ""); w.Code != http.StatusOK || decode[Health](t, w).Status != "ok" {
			t.Errorf("%s = %d %s", path, w.Code, w.Body)
		}
	}

	e.engine.set(func(f *fakeEngine) { f.readyErr = errBoom })
	w = e.do(http.MethodGet, "/readyz", "")
	problem(t, w, http.StatusServiceUnavailable, ProblemUnavailable)
	if strings.Contains(w.Body.String(), "10.0.0.7") {
		t.Errorf("readyz leaks the engine error: %s", w.Body)
	}
	if w := e.do(http.MethodGet, "/healthz", ""); w.Code != http.StatusOK {
		t.Errorf("healthz while not ready = %d", w.Code)
	}

	// An engine that says why (its namespace is missing) has its reason
	// shown, not its cause.
	e.engine.set(func(f *fakeEngine) {
		f.readyErr = notReady{"the workflow engine's namespace does not exist", errors.New("namespace p2p-prod not found at 10.0.0.7")}
	})
	w = e.do(http.MethodGet, "/readyz", "")
	p := problem(t, w, http.StatusServiceUnavailable, ProblemUnavailable)
	if p.Detail == nil || *p.Detail != "the workflow engine's namespace does not exist" || strings.Contains(w.Body.String(), "10.0.0.7") {
		t.Errorf("readyz without namespace: %s", w.Body)
	}
}

// notReady is an engine's readiness error with a reason to show.
type notReady struct {
	reason string
	cause  error
}

func (n notReady) Error() string        { return n.reason + ": " + n.cause.Error() }
func (n notReady) PublicReason() string { return n.reason }

func TestInternalErrorsDoNotLeak(t *testing.T) {
	secret := errors.New("open /etc/p2p/signing.pem: permission denied")
	e := newEnv(t, func(d *Deps) { d.Keys = fakeKeys{err: secret} })
	w := e.do(http.MethodGet, "/.well-known/jwks.json", "")
	problem(t, w, http.StatusInternalServerError, ProblemInternal)
	if strings.Contains(w.Body.String(), "signing.pem") {
		t.Errorf("500 leaks the error: %s", w.Body)
	}
	if e.logs.FilterMessage("request failed").Len() != 1 {
		t.Errorf("internal error not logged")
	}

	// A panic is a 500 problem too; its value (which names a member here)
	// is not logged.
	e.engine.set(func(f *fakeEngine) { f.panicked = true })
	problem(t, e.do(http.MethodGet, "/readyz", ""), http.StatusInternalServerError, ProblemInternal)
	if e.logs.FilterMessage("panic serving request").Len() != 1 {
		t.Errorf("panic not logged")
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t)
	tr := decode[Transfer](t, e.post(key, body("sandbox")))
	e.do(http.MethodPut, "/v1/members/m-secret-id", `{"given": "Zelphina", "birth_date": "1984-07-19"}`)
	e.do(http.MethodGet, "/v1/transfers/"+tr.Id, "")

	lines := e.logs.FilterMessage("http request").All()
	if len(lines) != 3 {
		t.Fatalf("access log lines = %d, want 3", len(lines))
	}
	want := []struct {
		route    string
		status   int64
		transfer string
	}{
		{"/v1/transfers", 202, tr.Id},
		{"/v1/members/{member_id}", 201, ""},
		{"/v1/transfers/{id}", 200, tr.Id},
	}
	for i, l := range lines {
		f := l.ContextMap()
		if f["route"] != want[i].route || f["status"] != want[i].status || f["request_id"] == "" {
			t.Errorf("line %d = %v, want %+v", i, f, want[i])
		}
		if got, _ := f["transfer_id"].(string); got != want[i].transfer {
			t.Errorf("line %d transfer_id = %q, want %q", i, got, want[i].transfer)
		}
		for _, v := range f {
			if s, ok := v.(string); ok && strings.Contains(s, "m-secret-id") {
				t.Errorf("line %d logs the member id: %v", i, f)
			}
		}
	}
}

// The contract itself is a valid OpenAPI 3.0 document.
func TestSpecIsValid(t *testing.T) {
	spec, err := GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	if spec.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %s, want 3.0.3", spec.OpenAPI)
	}
	if err := spec.Validate(context.Background()); err != nil {
		t.Errorf("openapi.yaml: %v", err)
	}
}

func TestMediaTypeParameters(t *testing.T) {
	e := newEnv(t)
	w := e.do(http.MethodPost, "/v1/transfers", body("sandbox"), "Idempotency-Key", key, "Content-Type", "application/json; charset=utf-8")
	if w.Code != http.StatusAccepted {
		t.Errorf("charset parameter = %d %s", w.Code, w.Body)
	}
}

// Every schema and every property of the contract says what it is.
func TestSpecIsDescribed(t *testing.T) {
	spec, err := GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	for name, ref := range spec.Components.Schemas {
		if ref.Value.Description == "" {
			t.Errorf("schema %s has no description", name)
		}
		for prop, p := range ref.Value.Properties {
			if p.Ref == "" && p.Value.Description == "" {
				t.Errorf("property %s.%s has no description", name, prop)
			}
		}
	}
}

func TestTransferManifest(t *testing.T) {
	e := newEnv(t)
	created := decode[Transfer](t, e.post(key, body("sandbox")))
	problem(t, e.do(http.MethodGet, "/v1/transfers/"+created.Id+"/manifest", ""), http.StatusNotFound, ProblemNotFound)
	problem(t, e.do(http.MethodGet, "/v1/transfers/no-such-transfer/manifest", ""), http.StatusNotFound, ProblemNotFound)

	ctx := context.Background()
	now := time.Now().UTC()
	const jws = "eyJhbGciOiJFUzI1NiJ9.eyJmaWxlcyI6W119.c2ln"
	for _, a := range []store.Artifact{
		{Digest: "aa", TransferID: created.Id, Name: "Patient.ndjson", ContentType: "application/fhir+ndjson", Data: []byte("{}\n"), Size: 3, CreatedAt: now},
		{Digest: "bb", TransferID: created.Id, Name: "manifest.jws", ContentType: "application/jose", Data: []byte(jws), Size: int64(len(jws)), CreatedAt: now},
	} {
		if err := e.store.PutArtifact(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.ApplyChange(ctx, created.Id, store.Change{
		Event:  transfer.Event{At: now, State: transfer.StatePayloadPrepared, Type: "state", Key: transfer.StateKey(transfer.StatePayloadPrepared)},
		State:  transfer.StatePayloadPrepared,
		Export: &transfer.ExportInfo{ManifestSHA256: "cc", SignatureSHA256: "bb", KID: "k"},
	}); err != nil {
		t.Fatal(err)
	}
	// The PHI goes; the signed manifest stays.
	if _, err := e.store.PurgeArtifacts(ctx, created.Id, "application/fhir+ndjson", now); err != nil {
		t.Fatal(err)
	}
	w := e.do(http.MethodGet, "/v1/transfers/"+created.Id+"/manifest", "")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/jose" || w.Body.String() != jws {
		t.Fatalf("GET manifest = %d %s %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	reads := 0
	for _, ae := range e.auditEntries() {
		if ae.Event.Type == transfer.EventRead && ae.Event.Detail["route"] == routeManifest {
			reads++
		}
	}
	// Both asks are recorded, the one before there was a manifest too.
	if reads != 2 {
		t.Errorf("%d recorded reads of the manifest, want 2", reads)
	}
}
