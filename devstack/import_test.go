package devstack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/devserver"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// oldPayerNPI names the fake old payer in consents and coverages.
const oldPayerNPI = "1112223334"

// cardMatcher is the fake old payer's member index: it matches on the old
// card's member id (the pdex parser takes it from CoverageToMatch).
type cardMatcher struct{}

func (cardMatcher) Resolve(_ context.Context, q transfer.Demographics) (identity.Decision, error) {
	switch q.MemberID {
	case "OLD-1":
		return identity.Decision{Outcome: identity.OutcomeMatch, MemberID: "M1", Rationale: transfer.Rationale{Rule: "card"}}, nil
	case "OLD-TWINS":
		return identity.Decision{Outcome: identity.OutcomeReview, Candidates: []string{"M2", "M3"}}, nil
	}
	return identity.Decision{Outcome: identity.OutcomeNoMatch}, nil
}

// oldPayer is a member's old payer on loopback: p2p's own $member-match
// handler (pdex, with a stub index) and the bulktest Bulk Data server
// under one FHIR base; the first $member-match call answers 500.
type oldPayer struct {
	srv  *httptest.Server
	bulk *bulktest.Server
	mu   sync.Mutex
	mm   int // $member-match calls
}

func newOldPayer(t *testing.T) *oldPayer {
	t.Helper()
	h, err := pdex.NewHandler(pdex.Deps{
		Matcher:   cardMatcher{},
		Requester: pdex.HeaderRequester(PartnerHeader, func(id string) bool { return id == "newco" }),
		Parties: func(id string) (pdex.Party, bool) {
			return pdex.Party{ID: id, Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: OurNPI}}}, id == "newco"
		},
		Holder:         pdex.Party{Identifiers: []fhir.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}}},
		MemberIDSystem: "https://old.example/member",
		PatientRef:     func(id string) string { return "Patient/pt-" + id },
		MaxFailures:    100,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := &oldPayer{bulk: bulktest.New()}
	bulk := o.bulk.Handler()
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/fhir")
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		if rest == "/Patient/$member-match" {
			o.mu.Lock()
			o.mm++
			first := o.mm == 1
			o.mu.Unlock()
			if first {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r2)
			return
		}
		bulk.ServeHTTP(w, r2)
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	o.bulk.BaseURL = o.srv.URL + "/fhir"
	return o
}

func resourceJSON(typ, id string, updated time.Time) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"lastUpdated":%q},"subject":{"reference":"Patient/pt-M1"}}`,
		typ, id, updated.UTC().Format(time.RFC3339)))
}

func importRequest(memberID, consentStatus string) map[string]any {
	now := time.Now().UTC()
	return map[string]any{
		"direction":         "import",
		"coverage_to_match": map[string]any{"payer": "oldco", "member_id": memberID, "period": map[string]any{"start": "2020-01-01", "end": "2025-12-31"}},
		"member":            map[string]any{"member_id": "NEW-77", "given": "Alice", "family": "Nguyen", "birth_date": "1985-04-12", "sex": "F"},
		"consent": map[string]any{
			"id": "consent-imp", "status": consentStatus, "scope": "regular",
			"period": map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": now.AddDate(1, 0, 0).Format(time.RFC3339)},
		},
		"data_scope": map[string]any{"resource_types": []string{"Patient", "Coverage", "ExplanationOfBenefit", "Encounter", "Condition"}},
	}
}

// An import against an old payer that fails its first $member-match (500),
// its first kick-off (500), throttles a poll (429, Retry-After 2) and
// expires a file (410): the transfer completes with exactly the member's
// resources in scope, per type; polls never come before Retry-After; the
// export is kicked off twice, the expired one deleted before the second
// kick-off and the second once done. A card the old payer
// does not know, or twins, fail no_match; an inactive consent fails
// consent_denied.
func TestImportFromOldPayer(t *testing.T) {
	old := newOldPayer(t)
	now := time.Now().UTC()
	want := map[string]int{"Patient": 1, "Coverage": 2, "ExplanationOfBenefit": 3, "Encounter": 2, "Condition": 1}
	for typ, n := range want {
		for i := range n {
			if err := old.bulk.Add("pt-M1", resourceJSON(typ, fmt.Sprintf("%s-%d", strings.ToLower(typ), i), now.AddDate(0, -i-1, 0))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Out of scope: a type not asked for, data older than five years,
	// another member's data.
	_ = old.bulk.Add("pt-M1", resourceJSON("Observation", "obs-1", now.AddDate(0, -1, 0)))
	_ = old.bulk.Add("pt-M1", resourceJSON("Encounter", "enc-old", now.AddDate(-7, 0, 0)))
	_ = old.bulk.Add("pt-M9", resourceJSON("Patient", "other", now.AddDate(0, -1, 0)))
	old.bulk.PollsBeforeDone, old.bulk.RetryAfter = 1, "1"
	old.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 500})
	old.bulk.Inject(bulktest.RouteStatus, bulktest.Answer{Status: 429, Header: map[string]string{"Retry-After": "2"}})
	old.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 410, Body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Partners: []connectors.Partner{{
		ID: "oldco", Name: "Old Co Health", Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: old.srv.URL + "/fhir",
		AllowPrivateNetwork: true, // the old payer runs on loopback
		Auth:                connectors.Auth{Type: connectors.AuthNone, ClientID: "newco"},
		Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e := &e2e{t: t, s: s}

	started := time.Now()
	id := e.create("import-key-0001", importRequest("OLD-1", "active"))
	tr := e.await(id, "complete", 45*time.Second)
	t.Logf("import complete in %v", time.Since(started).Round(time.Millisecond))
	if tr["direction"] != "import" || tr["partner_id"] != "oldco" {
		t.Errorf("transfer %v", tr)
	}
	if got := e.states(id); strings.Join(got, ",") != "initiated,identity_pending,consent_verified,payload_prepared,sent,acknowledged,complete" {
		t.Errorf("states %v", got)
	}

	// What the sink holds is what the old payer has in scope, per type.
	got := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(s.ImportDir, id, "*.ndjson"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var r struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if r.ID == "enc-old" || r.ID == "other" {
				t.Errorf("out-of-scope resource %s imported", r.ID)
			}
			got[r.ResourceType]++
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("imported %v, want %v", got, want)
	}
	exp, _ := tr["export"].(map[string]any)
	if exp == nil || exp["transaction_time"] == nil || exp["partial"] != nil || exp["receipt_id"] == nil || len(exp["files"].([]any)) != len(want) {
		t.Errorf("export info %v", exp)
	}

	// The protocol as the old payer saw it.
	ks := old.bulk.KickOffs()
	if len(ks) != 2 {
		t.Fatalf("kick-offs %d, want 2 (the 410 kicks off again)", len(ks))
	}
	if k := ks[0]; strings.Join(k.Patients, ",") != "pt-M1" || len(k.Types) != 5 || k.Since.After(now.AddDate(-5, 0, 1)) || k.Since.Before(now.AddDate(-5, 0, -2)) {
		t.Errorf("kick-off %+v: want the matched patient, five types, five years back", k)
	}
	if v := old.bulk.Violations(); len(v) != 0 {
		t.Errorf("polls earlier than Retry-After: %v", v)
	}
	// The job whose file expired is deleted before the second kick-off,
	// the completed one once its files are ours.
	if d := old.bulk.Deleted(); len(d) != 2 || d[0] != ks[0].Job || d[1] != ks[1].Job {
		t.Errorf("deleted %v, want the expired job %s then the completed job %s", d, ks[0].Job, ks[1].Job)
	}
	if n := len(old.bulk.Requests(bulktest.RouteKickOff)); n != 3 {
		t.Errorf("kick-off requests %d, want 3 (a 500 retried, then the 410's)", n)
	}
	// The timeline tells the story without PHI.
	tl := e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil)
	for _, phi := range []string{"Alice", "Nguyen", "1985-04-12"} {
		if strings.Contains(string(tl.body), phi) {
			t.Errorf("timeline holds PHI %q", phi)
		}
	}
	for _, ev := range []string{`"member_match"`, `"bulk_kickoff"`, `"bulk_rekickoff"`, `"bulk_manifest"`, `"bulk_file"`, `"bulk_deleted"`, `"import_planned"`} {
		if !strings.Contains(string(tl.body), ev) {
			t.Errorf("timeline has no %s event", ev)
		}
	}
	e.saveHistory(id, "import_complete")
	// Downloads ran on the partner's downloads queue, under its own
	// concurrency; its other calls on the partner's queue.
	queues := map[string]string{}
	it := s.Client.GetWorkflowHistory(ctx, workflows.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			queues[a.GetActivityType().GetName()] = a.GetTaskQueue().GetName()
		}
	}
	for name, want := range map[string]string{
		activities.NameDownloadImportFile: workflows.PartnerDownloadQueue(workflows.TaskQueue, "oldco"),
		activities.NamePollImport:         workflows.PartnerTaskQueue(workflows.TaskQueue, "oldco"),
	} {
		if queues[name] != want {
			t.Errorf("%s ran on %q, want %q", name, queues[name], want)
		}
	}

	for _, c := range []struct {
		name, card, consent, want string
	}{
		{"import_no_match", "OLD-404", "active", transfer.ErrorNoMatch},
		{"import_several", "OLD-TWINS", "active", transfer.ErrorNoMatch},
		{"import_consent_denied", "OLD-1", "inactive", transfer.ErrorConsentDenied},
	} {
		id := e.create("import-key-"+c.name, importRequest(c.card, c.consent))
		tr := e.await(id, "failed", 30*time.Second)
		if errInfo, _ := tr["error"].(map[string]any); errInfo == nil || errInfo["type"] != c.want {
			t.Errorf("%s: transfer %v, want failed %s", c.name, tr, c.want)
		}
		if c.name != "import_several" {
			e.saveHistory(id, c.name)
		}
	}
	if n := len(old.bulk.KickOffs()); n != 2 {
		t.Errorf("refused matches kicked off exports: %d kick-offs", n)
	}
}

// TestImportRefusesSSRF: an old payer whose kick-off points our client at
// the cloud metadata service gets nothing from us: the import fails at
// once (no retries) and the transfer's timeline (so the audit log)
// records the refused host.
func TestImportRefusesSSRF(t *testing.T) {
	old := newOldPayer(t)
	old.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 202,
		Header: map[string]string{"Content-Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	s, err := Start(ctx, Options{DataDir: dataDir, Addr: "127.0.0.1:0", Partners: []connectors.Partner{{
		ID: "oldco", Name: "Old Co Health", Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: old.srv.URL + "/fhir",
		AllowPrivateNetwork: true,
		Auth:                connectors.Auth{Type: connectors.AuthNone, ClientID: "newco"},
		Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e := &e2e{t: t, s: s}
	id := e.create("ssrf-key-0001", importRequest("OLD-1", "active"))
	tr := e.await(id, "failed", 30*time.Second)
	errInfo, _ := tr["error"].(map[string]any)
	if errInfo == nil || !strings.Contains(fmt.Sprint(errInfo["detail"]), "egress_refused") {
		t.Errorf("error %v, want the egress refusal in its detail", errInfo)
	}
	tl := e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil).json(t)
	var refused []map[string]any
	for _, ev := range tl["events"].([]any) {
		if m := ev.(map[string]any); m["type"] == "egress_refused" {
			refused = append(refused, m["detail"].(map[string]any))
		}
	}
	if len(refused) != 1 || refused[0]["host"] != "169.254.169.254" || refused[0]["operation"] != "kick-off" || refused[0]["partner_id"] != "oldco" {
		t.Fatalf("egress_refused events %v, want one for the kick-off's 169.254.169.254", refused)
	}
	if n := len(old.bulk.Requests(bulktest.RouteKickOff)); n != 1 {
		t.Errorf("%d kick-offs, want 1: a refusal is not retried", n)
	}
	// The failure's message names the host; Temporal keeps it encrypted
	// (payloadcodec's failure converter), not in plain text.
	if found := scanTemporal(t, filepath.Join(dataDir, "temporal", devserver.DBFileName), []string{"169.254.169.254"}); len(found) > 0 {
		t.Errorf("Temporal's database holds a failure message in plain text: %v", found)
	}
}
