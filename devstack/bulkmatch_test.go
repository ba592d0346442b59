package devstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// TestBulkMemberMatch is PDex's bulk variant end to end: the sandbox
// partner submits four members with $bulk-member-match, polls until the
// BulkMemberMatch workflow has decided them, finds them in the three
// Groups, and exports the MatchedMembers Group with $davinci-data-export:
// exactly the matched members' data.
func TestBulkMemberMatch(t *testing.T) {
	e := startBulkStack(t, 30*time.Second)
	bundle := func(p map[string]any) any {
		return map[string]any{"name": pdex.ParamMemberBundle, "part": p["parameter"]}
	}
	refused := hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")
	param(refused, 3)["status"] = "inactive"
	body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{
		bundle(hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")), // matched
		bundle(hrexRequest(t, "Zed", "Nobody", "1990-01-01", "male", "")),            // no match
		bundle(refused), // consent refused
		bundle(hrexRequest(t, "Robert", "Okafor", "1972-11-03", "male", "")), // matched by demographics
	}})
	status, batch := e.bulkMatchKickoff(body)

	// Poll as a Bulk Data client, never before Retry-After.
	var r response
	for deadline := time.Now().Add(30 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("not decided within 30s")
		}
		if r = e.fhirDo("GET", status, SandboxPartnerID, nil); r.status != http.StatusAccepted {
			break
		}
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || n < 1 || !progressRE.MatchString(r.header.Get("X-Progress")) {
			t.Fatalf("202 headers %v", r.header)
		}
		time.Sleep(time.Duration(n) * time.Second)
	}
	if r.status != http.StatusOK {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	// The engine tells a batch whose workflow ran (its transfer id is the
	// batch id) from one that never started: what ResumePending asks.
	eng := &workflows.Engine{Client: e.s.Client, Store: e.s.Store}
	if ok, err := eng.Started(context.Background(), batch); err != nil || !ok {
		t.Errorf("Started(batch) = %v, %v; want true", ok, err)
	}
	if ok, err := eng.Started(context.Background(), "never-started"); err != nil || ok {
		t.Errorf("Started(never-started) = %v, %v; want false", ok, err)
	}
	if r := e.fhirDo("GET", status, otherPartner, nil); r.status != http.StatusNotFound {
		t.Errorf("status as another partner: %d", r.status)
	}
	var out fhir.Parameters
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	type member struct {
		Entity fhir.Reference `json:"entity"`
	}
	groups := map[string][]string{}
	matchedID := ""
	for _, p := range out.Parameter {
		var g struct {
			ID     string   `json:"id"`
			Member []member `json:"member"`
		}
		if err := json.Unmarshal(p.Resource, &g); err != nil {
			t.Fatal(err)
		}
		if p.Name == pdex.ParamMatchedMembers {
			matchedID = g.ID
		}
		for _, m := range g.Member {
			s := m.Entity.Display
			if m.Entity.Reference != "" {
				s += "=" + m.Entity.Reference
			}
			groups[p.Name] = append(groups[p.Name], s)
		}
	}
	want := map[string][]string{
		pdex.ParamMatchedMembers: {"MemberBundle[0]=Patient/" + export.SyntheticPatientID("M100001"),
			"MemberBundle[3]=Patient/" + export.SyntheticPatientID("M100002")},
		pdex.ParamNonMatchedMembers:         {"MemberBundle[1]"},
		pdex.ParamConsentConstrainedMembers: {"MemberBundle[2]"},
	}
	for name, w := range want {
		if strings.Join(groups[name], "|") != strings.Join(w, "|") {
			t.Errorf("%s: %q, want %q", name, groups[name], w)
		}
	}
	for _, s := range []string{"Nguyen", "Okafor", "Nobody", "1985-04-12"} {
		if bytes.Contains(r.body, []byte(s)) {
			t.Errorf("the result holds %q", s)
		}
	}
	e.saveWorkflowHistory(workflows.BulkMatchWorkflowID(batch), "bulk_member_match")

	// The batch is one transfer (direction export): complete, an event per
	// member with its outcome, no PHI.
	if tr := e.do("GET", "/v1/transfers/"+batch, "", nil).json(t); tr["state"] != "complete" || tr["direction"] != "export" ||
		tr["partner_id"] != SandboxPartnerID {
		t.Errorf("batch transfer %v", tr)
	}
	tl := e.do("GET", "/v1/transfers/"+batch+"/timeline?limit=1000", "", nil)
	var decided []string
	for _, ev := range tl.json(t)["events"].([]any) {
		ev := ev.(map[string]any)
		if ev["type"] == transfer.EventMemberDecided {
			d := ev["detail"].(map[string]any)
			decided = append(decided, fmt.Sprint(d["index"], " ", d["outcome"]))
		}
	}
	sort.Strings(decided)
	if got := strings.Join(decided, "|"); got != "0 matched|1 no_match|2 consent_denied|3 matched" {
		t.Errorf("member events %q", got)
	}
	for _, s := range []string{"Nguyen", "Okafor", "Nobody", "1985-04-12"} {
		if bytes.Contains(tl.body, []byte(s)) {
			t.Errorf("the batch's timeline holds %q", s)
		}
	}

	// The MatchedMembers Group exports exactly its members' data.
	k := e.fhirDo("GET", "/fhir/Group/"+matchedID+"/$davinci-data-export?_type=Patient", SandboxPartnerID,
		map[string]string{"Prefer": "respond-async", "Accept": "application/fhir+json"})
	if k.status != http.StatusAccepted {
		t.Fatalf("export kick-off: %d %s", k.status, k.body)
	}
	man, _ := e.poll(k.header.Get("Content-Location"), 30*time.Second)
	var patients []string
	for _, o := range man.Output {
		f := e.fhirDo("GET", o.URL, SandboxPartnerID, nil)
		if f.status != http.StatusOK {
			t.Fatalf("file: %d", f.status)
		}
		if o.Type != "Patient" {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(f.body))
		for sc.Scan() {
			var p struct{ ID string }
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			patients = append(patients, p.ID)
		}
	}
	sort.Strings(patients)
	wantPatients := []string{export.SyntheticPatientID("M100001"), export.SyntheticPatientID("M100002")}
	sort.Strings(wantPatients)
	if strings.Join(patients, ",") != strings.Join(wantPatients, ",") {
		t.Errorf("exported patients %v, want %v", patients, wantPatients)
	}
}

// progressRE is the X-Progress of a batch being decided.
var progressRE = regexp.MustCompile(`^[0-9]+ of 4 members decided$`)

// TestBulkMemberMatchDelete: Bulk Data's DELETE of the status URL while the
// batch is being decided: 202, then 404; no member is decided after it,
// the members' demographics are withdrawn, and the batch's transfer fails
// cancelled, saying by whom and how far it got.
func TestBulkMemberMatchDelete(t *testing.T) {
	e := startBulkStack(t, 30*time.Second)
	const members = 200 // decided four at a time: seconds, while the DELETE takes milliseconds
	var params []any
	for range members {
		params = append(params, map[string]any{"name": pdex.ParamMemberBundle,
			"part": hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "M100001")["parameter"]})
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	status, batch := e.bulkMatchKickoff(body)
	if r := e.fhirDo("DELETE", status, otherPartner, nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE as another partner: %d", r.status)
	}
	if r := e.fhirDo("DELETE", status, SandboxPartnerID, nil); r.status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if r := e.fhirDo("GET", status, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("status after DELETE: %d %s", r.status, r.body)
	}
	if r := e.fhirDo("DELETE", status, SandboxPartnerID, nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE again: %d", r.status)
	}
	arts, err := e.s.Store.ListArtifacts(context.Background(), pdex.BulkMatchRequestOwner(SandboxPartnerID, batch))
	if err != nil || len(arts) != members {
		t.Fatalf("request artifacts: %d, %v", len(arts), err)
	}
	for _, a := range arts {
		if a.WithdrawnAt == nil {
			t.Fatalf("%s not withdrawn", a.Name)
		}
	}
	tr := e.do("GET", "/v1/transfers/"+batch, "", nil).json(t)
	if tr["state"] != "failed" || tr["error"].(map[string]any)["type"] != transfer.ErrorCancelled {
		t.Fatalf("batch transfer %v, want failed cancelled", tr)
	}
	var cancelled map[string]any
	decided := 0
	for _, ev := range e.do("GET", "/v1/transfers/"+batch+"/timeline?limit=1000", "", nil).json(t)["events"].([]any) {
		ev := ev.(map[string]any)
		switch {
		case ev["type"] == transfer.EventMemberDecided:
			decided++
		case ev["state"] == "failed":
			cancelled = ev
		}
	}
	d, _ := cancelled["detail"].(map[string]any)
	if cancelled["actor"] != "partner:"+SandboxPartnerID || d["reason"] != "deleted_by_requester" || d["decided"] != float64(decided) ||
		d["members"] != float64(members) || decided >= members {
		t.Errorf("cancellation %v after %d members decided", cancelled, decided)
	}
	t.Logf("deleted after %d of %d members decided", decided, members)
	e.saveWorkflowHistory(workflows.BulkMatchWorkflowID(batch), "bulk_member_match_deleted")
}

// bulkMatchKickoff submits a $bulk-member-match as the sandbox partner and
// returns its status URL and batch id, failing e's test unless the answer
// is 202 with a status URL of ours.
func (e *e2e) bulkMatchKickoff(body []byte) (status, batch string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.s.URL+"/fhir/Group/$bulk-member-match", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set(PartnerHeader, SandboxPartnerID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	status = res.Header.Get("Content-Location")
	if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(status, e.s.URL+"/fhir/bulk-member-match-status/") {
		e.t.Fatalf("kick-off: %d %q %s", res.StatusCode, status, b)
	}
	return status, status[strings.LastIndex(status, "/")+1:]
}
