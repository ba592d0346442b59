package pdex

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fhir"
)

// TestKickoffThrottled: bulk export kick-offs count against the
// requester's request rate, the bucket $member-match uses: past it, 429
// with Retry-After; another requester is not affected; time refills it.
func TestKickoffThrottled(t *testing.T) {
	b := newBulkHarness(t, func(d *Deps) { d.Rate, d.Burst = 0.5, 3 })
	targets := []string{"/Patient/$export", "/Group/" + MatchedGroupID("new-payer") + "/$davinci-data-export"}
	type step struct {
		name    string
		advance time.Duration
		do      func() answer
		status  int
	}
	kick := func(target, partner string) func() answer {
		return func() answer { return b.do("GET", target, partner, async, nil) }
	}
	steps := []step{
		{"first kick-off", 0, kick(targets[0], "new-payer"), http.StatusAccepted},
		{"second, by Group", 0, kick(targets[1], "new-payer"), http.StatusAccepted},
		{"a member-match takes the third token", 0, func() answer { return b.post("new-payer", exampleBody(t), "application/fhir+json") }, http.StatusOK},
		{"fourth: past the burst", 0, kick(targets[0], "new-payer"), http.StatusTooManyRequests},
		{"another requester is not throttled", 0, kick(targets[0], "stranger"), http.StatusForbidden}, // it holds no grant
		{"a token later", 2 * time.Second, kick(targets[1], "new-payer"), http.StatusAccepted},
	}
	for _, s := range steps {
		b.clock.add(s.advance)
		a := s.do()
		if a.status != s.status {
			t.Fatalf("%s: %d, want %d: %s", s.name, a.status, s.status, a.body)
		}
		if s.status != http.StatusTooManyRequests {
			continue
		}
		if ra := a.header.Get("Retry-After"); ra != "2" {
			t.Errorf("%s: Retry-After %q, want 2", s.name, ra)
		}
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(a.body, &oo); err != nil || len(oo.Issue) != 1 || oo.Issue[0].Code != "throttled" ||
			oo.Issue[0].Details == nil || oo.Issue[0].Details.Coding[0].Code != OutcomeThrottled {
			t.Errorf("%s: body %s, want an OperationOutcome throttled", s.name, a.body)
		}
	}
	b.ex.mu.Lock()
	defer b.ex.mu.Unlock()
	if n := len(b.ex.kickoffs); n != 3 {
		t.Errorf("%d exports started, want 3: a throttled kick-off starts nothing", n)
	}
}

// realisticBulkBody is a $bulk-member-match request of n members like
// testdata/member-bundle.json (the HRex example's member with an
// identifier, a phone, an email and an address), each with its own family
// name, as compact JSON (indent "") or indented.
func realisticBulkBody(t testing.TB, n int, indent string) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/member-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	ps := make([]json.RawMessage, n)
	for i := range ps {
		var mb map[string]any
		if err := json.Unmarshal(raw, &mb); err != nil {
			t.Fatal(err)
		}
		patient := mb["part"].([]any)[0].(map[string]any)["resource"].(map[string]any)
		patient["name"].([]any)[0].(map[string]any)["family"] = fmt.Sprintf("Person%04d", i)
		if ps[i], err = json.Marshal(mb); err != nil {
			t.Fatal(err)
		}
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": ps})
	if err != nil {
		t.Fatal(err)
	}
	if indent == "" {
		return body
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", indent); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestBulkMemberMatchRealisticSize measures the documented 1,000-member
// request (the figures in MaxBulkMemberMatchBody's comment and
// docs/serving-partners.md), and shows that MaxBulkMemberMatchBody takes
// it however it is indented while 1 MiB did not.
func TestBulkMemberMatchRealisticSize(t *testing.T) {
	for _, c := range []struct {
		name   string
		indent string
		about  int // bytes, ±2%
	}{
		{"compact", "", 3_648_000},
		{"two spaces", "  ", 8_606_000},
		{"four spaces", "    ", 13_122_000},
	} {
		body := realisticBulkBody(t, DefaultMaxBulkMembers, c.indent)
		t.Logf("1,000 members, %s: %d bytes (%.1f MiB)", c.name, len(body), float64(len(body))/(1<<20))
		if d := len(body) - c.about; d > c.about/50 || -d > c.about/50 {
			t.Errorf("%s: %d bytes, documented as about %d", c.name, len(body), c.about)
		}
		if len(body) > MaxBulkMemberMatchBody {
			t.Errorf("%s: %d bytes, more than MaxBulkMemberMatchBody %d", c.name, len(body), MaxBulkMemberMatchBody)
		}
		if len(body) <= 1<<20 {
			t.Errorf("%s: %d bytes fit in 1 MiB: the test does not show the limit matters", c.name, len(body))
		}
	}
}

// TestBulkMemberMatchBodyLimit: the 1,000-member request is accepted
// whole; a body past MaxBulkMemberMatchBody is 413 in FHIR terms.
func TestBulkMemberMatchBodyLimit(t *testing.T) {
	b := newBulkMatchHarness(t, nil)
	big := realisticBulkBody(t, DefaultMaxBulkMembers, "    ")
	id := b.submit("new-payer", big)
	b.bulk.mu.Lock()
	batch := b.bulk.batches[len(b.bulk.batches)-1]
	b.bulk.mu.Unlock()
	if batch.ID != id || len(batch.Members) != DefaultMaxBulkMembers {
		t.Errorf("batch %s of %d members, want %s of %d", batch.ID, len(batch.Members), id, DefaultMaxBulkMembers)
	}

	over := append(realisticBulkBody(t, 2, ""), bytes.Repeat([]byte(" "), MaxBulkMemberMatchBody)...)
	a := b.do("POST", "/Group/$bulk-member-match", "new-payer", fhirAsync, over)
	var oo fhir.OperationOutcome
	if a.status != http.StatusRequestEntityTooLarge || json.Unmarshal(a.body, &oo) != nil || len(oo.Issue) != 1 || oo.Issue[0].Code != "too-long" {
		t.Errorf("oversized: %d %s, want 413 with an OperationOutcome too-long", a.status, a.body)
	}
}
