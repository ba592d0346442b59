package devstack

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestMembersWrittenThroughTheAPIAreMatchedAtOnce: a member PUT through
// the API is in the very next transfer's identity decision, and a changed
// member is found by what it is now, not by what it was.
func TestMembersWrittenThroughTheAPIAreMatchedAtOnce(t *testing.T) {
	e := startStack(t)
	year := time.Now().AddDate(1, 0, 0)
	put := func(id string, m map[string]any) {
		t.Helper()
		if r := e.do("PUT", "/v1/members/"+id, "", m); r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Fatalf("PUT member %s: %d %s", id, r.status, r.body)
		}
	}

	// Two identical members, then at once a transfer without member id:
	// a review between both, never no_match.
	twin := map[string]any{"given": "Rosalind", "family": "Achterberg", "birth_date": "1983-07-29", "sex": "F",
		"street": "61 Wharf Street", "city": "Savannah", "state": "GA", "postal_code": "31401"}
	put("N1", twin)
	put("N2", twin)
	id := e.create("fresh-twins", request(map[string]any{"given": "Rosalind", "family": "Achterberg", "birth_date": "1983-07-29"}, year))
	tr := e.await(id, "manual_review", 15*time.Second)
	cands, _ := tr["identity"].(map[string]any)["candidates"].([]any)
	if !slices.Contains(cands, any("N1")) || !slices.Contains(cands, any("N2")) {
		t.Fatalf("candidates %v, want N1 and N2", cands)
	}

	// A member renamed: matched by the new name in the next request, and
	// no longer resolved by the old one.
	m := map[string]any{"given": "Thaddeus", "family": "Quillfeather", "birth_date": "1958-12-02", "sex": "M",
		"street": "4 Ferry Lane", "city": "Astoria", "state": "OR", "postal_code": "97103"}
	put("N3", m)
	m["family"] = "Brightwater"
	put("N3", m)
	id = e.create("fresh-renamed-new", request(map[string]any{"given": "Thaddeus", "family": "Brightwater", "birth_date": "1958-12-02"}, year))
	tr = e.await(id, "complete", 15*time.Second)
	if got := tr["identity"].(map[string]any)["member_id"]; got != "N3" {
		t.Fatalf("by the new name: member %v, want N3", got)
	}
	id = e.create("fresh-renamed-old", request(map[string]any{"given": "Thaddeus", "family": "Quillfeather", "birth_date": "1958-12-02"}, year))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		tr = e.do("GET", "/v1/transfers/"+id, "", nil).json(t)
		if s := tr["state"]; s == "manual_review" || s == "failed" || s == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("by the old name: still %v", tr["state"])
		}
	}
	if tr["state"] == "complete" || tr["identity"].(map[string]any)["member_id"] == "N3" && tr["identity"].(map[string]any)["status"] == "resolved" {
		t.Fatalf("by the old name: resolved to %v (%v)", tr["identity"], tr["state"])
	}
}
