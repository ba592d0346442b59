package devstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
)

// otherPartner is a second requester, to check that one partner never
// reaches another's export.
const otherPartner = "other"

// startBulkStack is the dev stack with a second requester and files that
// expire soon, so that the served export's workflow ends within the test.
func startBulkStack(t *testing.T, ttl time.Duration) *e2e {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true, ExportFileTTL: ttl,
		Partners: []connectors.Partner{{ID: otherPartner, Name: "Another payer", Timeout: 10 * time.Second,
			Roles:       []connectors.Role{connectors.RoleRequester},
			Identifiers: []connectors.Identifier{{System: fhir.SystemNPI, Value: "1111111111"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &e2e{t: t, s: s}
}

// fhirDo sends a FHIR request as partner to an absolute URL or a path.
func (e *e2e) fhirDo(method, url, partner string, header map[string]string) response {
	e.t.Helper()
	if strings.HasPrefix(url, "/") {
		url = e.s.URL + url
	}
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set(PartnerHeader, partner)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// kickoff starts an export as the sandbox partner and returns its status URL.
func (e *e2e) kickoff(query string) string {
	e.t.Helper()
	r := e.fhirDo("GET", "/fhir/Patient/$export"+query, SandboxPartnerID, map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"})
	if r.status != http.StatusAccepted || r.header.Get("Content-Location") == "" {
		e.t.Fatalf("kick-off: %d %s", r.status, r.body)
	}
	return r.header.Get("Content-Location")
}

// poll polls the status URL as a Bulk Data client does, never before the
// Retry-After it was given, until the export is complete.
func (e *e2e) poll(status string, within time.Duration) (pdex.BulkManifest, response) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r := e.fhirDo("GET", status, SandboxPartnerID, nil)
		switch r.status {
		case http.StatusOK:
			var m pdex.BulkManifest
			if err := json.Unmarshal(r.body, &m); err != nil {
				e.t.Fatalf("manifest %s: %v", r.body, err)
			}
			return m, r
		case http.StatusAccepted:
			if r.header.Get("X-Progress") == "" {
				e.t.Errorf("202 without X-Progress")
			}
			n, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || n < 1 {
				e.t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
			time.Sleep(time.Duration(n) * time.Second)
		default:
			e.t.Fatalf("status: %d %s", r.status, r.body)
		}
	}
	e.t.Fatalf("export not complete within %v", within)
	return pdex.BulkManifest{}, response{}
}

// TestServeBulkExport is the old payer's side of PDex payer-to-payer: the
// sandbox partner matches a demo member, exports the member's data with
// Bulk Data and downloads every file; the export is a transfer like any
// other, and no other partner can read its files.
func TestServeBulkExport(t *testing.T) {
	e := startBulkStack(t, 12*time.Second)
	if r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")); r.status != http.StatusOK {
		t.Fatalf("$member-match: %d %s", r.status, r.body)
	}
	// The other partner matched nobody: it has nothing to export.
	if r := e.fhirDo("GET", "/fhir/Patient/$export", otherPartner, map[string]string{"Prefer": "respond-async"}); r.status != http.StatusForbidden {
		t.Errorf("kick-off by a partner without matches: %d %s", r.status, r.body)
	}

	status := e.kickoff("?_type=Patient,Coverage,Encounter,ExplanationOfBenefit,Condition&_outputFormat=application/fhir%2Bndjson")
	id := status[strings.LastIndex(status, "/")+1:]
	man, r := e.poll(status, 30*time.Second)
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("Expires") == "" {
		t.Errorf("manifest headers %v", r.header)
	}
	if exp, err := http.ParseTime(r.header.Get("Expires")); err != nil || exp.Before(time.Now()) {
		t.Errorf("Expires %q: %v", r.header.Get("Expires"), err)
	}
	if !man.RequiresAccessToken || man.TransactionTime == "" || len(man.Error) != 0 ||
		!strings.HasPrefix(man.Request, e.s.URL+"/fhir/Patient/$export?_type=") {
		t.Errorf("manifest %+v", man)
	}
	// The synthetic member: a regular consent (the HRex example's) leaves
	// the sensitive Condition out.
	want := map[string]int{"Patient": 1, "Coverage": 1, "Encounter": 2, "ExplanationOfBenefit": 3, "Condition": 1, "Provenance": 8}
	got := map[string]int{}
	for _, o := range man.Output {
		got[o.Type] += o.Count
	}
	if len(got) != len(want) {
		t.Errorf("output counts %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("output counts %v, want %v", got, want)
			break
		}
	}

	// Another partner cannot see the export or read its files.
	if r := e.fhirDo("GET", status, otherPartner, nil); r.status != http.StatusNotFound {
		t.Errorf("status as another partner: %d", r.status)
	}
	for _, o := range man.Output {
		if r := e.fhirDo("GET", o.URL, otherPartner, nil); r.status != http.StatusNotFound || bytes.Contains(r.body, []byte("resourceType\":\"Patient")) {
			t.Errorf("file as another partner: %d %s", r.status, r.body)
		}
		if r := e.fhirDo("GET", o.URL, "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("file without a partner: %d", r.status)
		}
	}

	// Download everything; every resource has its Provenance naming us.
	resources := map[string]bool{}
	provenance := map[string]bool{}
	for _, o := range man.Output {
		r := e.fhirDo("GET", o.URL, SandboxPartnerID, nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("file %s: %d %s", o.URL, r.status, r.header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		n := 0
		for sc.Scan() {
			n++
			var res struct {
				ResourceType string           `json:"resourceType"`
				ID           string           `json:"id"`
				Target       []fhir.Reference `json:"target"`
				Agent        []fhir.ProvenanceAgent
			}
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.ResourceType != o.Type {
				t.Fatalf("line of %s: %s (%v)", o.Type, sc.Bytes(), err)
			}
			if o.Type != "Provenance" {
				resources[res.ResourceType+"/"+res.ID] = true
				continue
			}
			if len(res.Target) != 1 || len(res.Agent) != 1 || !res.Agent[0].Type.Has(fhir.SystemProvenanceParticip, "transmitter") ||
				res.Agent[0].Who.Identifier == nil || res.Agent[0].Who.Identifier.Value != OurNPI {
				t.Errorf("provenance %s", sc.Bytes())
			}
			provenance[res.Target[0].Reference] = true
		}
		if n != o.Count {
			t.Errorf("%s: %d lines, manifest says %d", o.Type, n, o.Count)
		}
	}
	if len(resources) != 8 || len(provenance) != len(resources) {
		t.Errorf("%d resources, %d provenance targets", len(resources), len(provenance))
	}
	for ref := range resources {
		if !provenance[ref] {
			t.Errorf("%s has no Provenance", ref)
		}
	}

	// The export is a transfer, direction export, complete once every
	// file was downloaded.
	tr := e.await(id, "complete", 15*time.Second)
	if tr["direction"] != "export" || tr["partner_id"] != SandboxPartnerID {
		t.Errorf("transfer %v", tr)
	}
	if ident := tr["identity"].(map[string]any); ident["member_id"] != "M100001" {
		t.Errorf("identity %v", ident)
	}
	list := e.do("GET", "/v1/transfers?direction=export", "", nil).json(t)
	found := false
	for _, it := range list["items"].([]any) {
		found = found || it.(map[string]any)["id"] == id
	}
	if !found {
		t.Errorf("export %s not listed in GET /v1/transfers?direction=export", id)
	}
	wantStates := "initiated,identity_pending,consent_verified,payload_prepared,sent,acknowledged,complete"
	if got := strings.Join(e.states(id), ","); got != wantStates {
		t.Errorf("timeline states %s, want %s", got, wantStates)
	}
	log := e.auditLog(id)
	if n := len(find(log, transfer.EventFileDownloaded, "")); n != len(man.Output) {
		t.Errorf("%d file_downloaded audit events, want %d", n, len(man.Output))
	}
	if len(find(log, "consent_checked", "")) != 1 || len(find(log, "state", "complete")) != 1 {
		t.Errorf("audit log %+v", log)
	}
	for _, l := range log {
		for _, s := range []string{"Nguyen", "Alice", "1985-04-12"} {
			if b, _ := json.Marshal(l); bytes.Contains(b, []byte(s)) {
				t.Errorf("audit event holds PHI %q: %s", s, b)
			}
		}
	}

	// When the files expire they are withdrawn: the status is gone.
	deadline := time.Now().Add(30 * time.Second)
	for len(find(e.auditLog(id), "export_withdrawn", "")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("files not withdrawn after they expired")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := e.fhirDo("GET", status, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("status after expiry: %d", r.status)
	}
	if r := e.fhirDo("GET", man.Output[0].URL, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("file after expiry: %d", r.status)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "serve_export_complete")

	// A second export, deleted before it is downloaded: cancelled, its
	// files withdrawn, its status gone.
	status = e.kickoff("")
	id = status[strings.LastIndex(status, "/")+1:]
	man, _ = e.poll(status, 30*time.Second)
	if r := e.fhirDo("DELETE", status, otherPartner, nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE by another partner: %d", r.status)
	}
	if r := e.fhirDo("DELETE", status, SandboxPartnerID, nil); r.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if r := e.fhirDo("GET", status, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d %s", r.status, r.body)
	}
	if r := e.fhirDo("GET", man.Output[0].URL, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("file after DELETE: %d", r.status)
	}
	tr = e.await(id, "failed", 10*time.Second)
	if tr["error"].(map[string]any)["type"] != "cancelled" || tr["export"].(map[string]any)["withdrawn"] != true {
		t.Errorf("deleted export %v", tr)
	}
	e.awaitClosed(id)
	e.saveHistory(id, "serve_export_deleted")
}

// awaitClosed waits until the transfer's workflow has ended.
func (e *e2e) awaitClosed(id string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.s.Client.GetWorkflow(ctx, "transfer-"+id, "").Get(ctx, nil); err != nil {
		e.t.Fatalf("workflow of %s: %v", id, err)
	}
}
