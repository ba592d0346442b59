package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/store"
)

const reviewPath = "/v1/transfers/0190a0b2-0000-7000-8000-000000000001/review"

func TestTextClean(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want bool
	}{
		{"ascii", `{"a": "b"}`, true},
		{"utf-8 letters", `{"a": "Zoë Łódź 山田"}`, true},
		{"escaped letters", `{"a": "Zo\u00eb"}`, true},
		{"surrogate pair", `{"a": "\ud83d\ude00"}`, true},
		{"surrogate pair upper hex", `{"a": "\uD83D\uDE00"}`, true},
		{"escaped backslash then u0000", `{"a": "\\u0000"}`, true},
		{"escaped quote", `{"a": "x\"\u0041"}`, true},
		{"raw NUL", "{\"a\": \"b\x00\"}", false},
		{"escaped NUL", `{"a": "b\u0000"}`, false},
		{"escaped NUL in a key", `{"a\u0000": "b"}`, false},
		{"escaped NUL after escaped backslash", `{"a": "\\\u0000"}`, false},
		{"invalid utf-8", "{\"a\": \"Zo\xeb\"}", false},
		{"overlong utf-8", "{\"a\": \"\xc0\xaf\"}", false},
		{"utf-8 encoded surrogate", "{\"a\": \"\xed\xa0\x80\"}", false},
		{"lone high surrogate", `{"a": "\ud83d"}`, false},
		{"lone high surrogate at the end", `"\ud83d`, false},
		{"high surrogate then letter", `{"a": "\ud83d\u0041"}`, false},
		{"lone low surrogate", `{"a": "\ude00"}`, false},
		{"malformed escape", `{"a": "\u00zz"}`, true}, // the decoder refuses it
		{"trailing backslash", `"\`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := textClean([]byte(c.in)); got != c.want {
				t.Errorf("textClean(%q) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

// TestDirtyTextRefused: a body we would have to repair is refused with
// invalid-text and nothing is stored; clean Unicode text is accepted.
func TestDirtyTextRefused(t *testing.T) {
	cases := []struct {
		name   string
		method string
		path   string
		doc    string
		status int // 0: refused with 400 invalid-text
	}{
		{"transfer with invalid utf-8", http.MethodPost, "/v1/transfers", replace(`"Zelphina"`, "\"Zelph\xffina\""), 0},
		{"transfer with raw NUL", http.MethodPost, "/v1/transfers", replace(`"Zelphina"`, "\"Zelph\x00ina\""), 0},
		{"transfer with escaped NUL", http.MethodPost, "/v1/transfers", replace(`"Zelphina"`, `"Zelph\u0000ina"`), 0},
		{"transfer with lone surrogate", http.MethodPost, "/v1/transfers", replace(`"Zelphina"`, `"Zelph\ud800ina"`), 0},
		{"transfer with NUL in correlation id", http.MethodPost, "/v1/transfers", replace(`"corr-1"`, `"corr\u0000-1"`), 0},
		{"member with escaped NUL", http.MethodPut, "/v1/members/M100001",
			`{"given": "Zelphina", "family": "Quar\u0000rington", "birth_date": "1984-07-19"}`, 0},
		{"member with invalid utf-8", http.MethodPut, "/v1/members/M100001",
			"{\"given\": \"Zelphina\", \"city\": \"\xe9\", \"birth_date\": \"1984-07-19\"}", 0},
		{"review with NUL", http.MethodPost, reviewPath, `{"decision": "reject", "reason": "dup\u0000"}`, 0},
		{"transfer with accents", http.MethodPost, "/v1/transfers", replace(`"Zelphina"`, `"Zelphinà Zoë"`), http.StatusAccepted},
		{"transfer with escaped backslash", http.MethodPost, "/v1/transfers", replace(`"corr-1"`, `"corr\\u0000"`), http.StatusAccepted},
		{"member with emoji pair", http.MethodPut, "/v1/members/M100001",
			`{"given": "Zelphina \ud83d\ude00", "family": "Quarrington", "birth_date": "1984-07-19"}`, http.StatusCreated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.do(c.method, c.path, c.doc, "Idempotency-Key", key)
			if c.status != 0 {
				if w.Code != c.status {
					t.Fatalf("status = %d, want %d; body %s", w.Code, c.status, w.Body)
				}
				return
			}
			problem(t, w, http.StatusBadRequest, ProblemInvalidText)
			if n := e.countTransfers(); n != 0 {
				t.Errorf("transfers = %d, want 0", n)
			}
			if _, err := e.store.GetMember(context.Background(), "M100001"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("member stored: err = %v", err)
			}
			if len(e.engine.reviews) != 0 {
				t.Errorf("reviews = %v, want none", e.engine.reviews)
			}
		})
	}
}

func TestCharset(t *testing.T) {
	cases := []struct {
		ctype  string
		status int
	}{
		{"application/json", http.StatusAccepted},
		{"application/json; charset=utf-8", http.StatusAccepted},
		{"application/json; charset=UTF-8", http.StatusAccepted},
		{"application/json;charset=\"utf-8\"", http.StatusAccepted},
		{"application/json; charset=iso-8859-1", http.StatusUnsupportedMediaType},
		{"application/json; charset=UTF-16", http.StatusUnsupportedMediaType},
		{"application/json; charset=windows-1252", http.StatusUnsupportedMediaType},
		{"text/plain; charset=utf-8", http.StatusUnsupportedMediaType},
	}
	for _, c := range cases {
		t.Run(c.ctype, func(t *testing.T) {
			e := newEnv(t)
			w := e.do(http.MethodPost, "/v1/transfers", body("sandbox"), "Idempotency-Key", key, "Content-Type", c.ctype)
			if c.status == http.StatusUnsupportedMediaType {
				problem(t, w, c.status, ProblemUnsupportedMediaType)
				if n := e.countTransfers(); n != 0 {
					t.Errorf("transfers = %d, want 0", n)
				}
				return
			}
			if w.Code != c.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, c.status, w.Body)
			}
		})
	}
}

// TestMemberIDRule: every member id of ours a request carries follows
// memberIDPattern, with a problem that names the field and the rule.
func TestMemberIDRule(t *testing.T) {
	member := func(id string) string {
		return `{"member_id": "` + id + `", "given": "Zelphina", "birth_date": "1984-07-19"}`
	}
	long := strings.Repeat("a", 64)
	cases := []struct {
		name   string
		method string
		path   string
		doc    string
		status int // 0: refused with 400 validation naming member_id
	}{
		{"path with space", http.MethodPut, "/v1/members/m%20100", member("m 100"), 0},
		{"path with accent", http.MethodPut, "/v1/members/m%C3%A9", member("mé"), 0},
		{"path with NUL", http.MethodPut, "/v1/members/m%00", `{"given": "Zelphina", "birth_date": "1984-07-19"}`, 0},
		{"path with leading dash", http.MethodPut, "/v1/members/-m100", member("-m100"), 0},
		{"path with leading dot", http.MethodPut, "/v1/members/.m100", member(".m100"), 0},
		{"path too long", http.MethodPut, "/v1/members/" + long + "a", member(long + "a"), 0},
		{"path with angle brackets", http.MethodPut, "/v1/members/%3Cm%3E", member("<m>"), 0},
		{"transfer member id", http.MethodPost, "/v1/transfers", replace(`"given": "Zelphina"`, `"member_id": "M 1", "given": "Zelphina"`), 0},
		{"transfer member id with slash", http.MethodPost, "/v1/transfers", replace(`"given": "Zelphina"`, `"member_id": "M/1", "given": "Zelphina"`), 0},
		{"review member id", http.MethodPost, reviewPath, `{"decision": "approve", "member_id": "M;1", "reason": "same person"}`, 0},
		{"demo id", http.MethodPut, "/v1/members/M100001", member("M100001"), http.StatusCreated},
		{"dots dashes underscores", http.MethodPut, "/v1/members/a.b_c-1", member("a.b_c-1"), http.StatusCreated},
		{"64 characters", http.MethodPut, "/v1/members/" + long, member(long), http.StatusCreated},
		{"transfer with demo id", http.MethodPost, "/v1/transfers", replace(`"given": "Zelphina"`, `"member_id": "M100001", "given": "Zelphina"`), http.StatusAccepted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			w := e.do(c.method, c.path, c.doc, "Idempotency-Key", key)
			if c.status != 0 {
				if w.Code != c.status {
					t.Fatalf("status = %d, want %d; body %s", w.Code, c.status, w.Body)
				}
				return
			}
			p := problem(t, w, http.StatusBadRequest, ProblemValidation)
			found := false
			for _, f := range fields(p) {
				found = found || strings.HasSuffix(f, "member_id: "+memberIDReason)
			}
			if !found {
				t.Errorf("errors = %v, want member_id: %s", fields(p), memberIDReason)
			}
			if n := e.countTransfers(); n != 0 {
				t.Errorf("transfers = %d, want 0", n)
			}
			if len(e.engine.reviews) != 0 {
				t.Errorf("reviews = %v, want none", e.engine.reviews)
			}
		})
	}
}

// TestMemberIDPatternInSpec: the rule the problem words is the rule the
// spec enforces, on every member id of ours a request carries.
func TestMemberIDPatternInSpec(t *testing.T) {
	spec, err := GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	param := spec.Components.Parameters["MemberID"].Value.Schema.Value
	cases := []struct {
		where   string
		pattern string
	}{
		{"parameter MemberID", param.Pattern},
		{"MemberUpsert.member_id", spec.Components.Schemas["MemberUpsert"].Value.Properties["member_id"].Value.Pattern},
		{"Demographics.member_id", spec.Components.Schemas["Demographics"].Value.Properties["member_id"].Value.Pattern},
		{"ReviewDecision.member_id", spec.Components.Schemas["ReviewDecision"].Value.Properties["member_id"].Value.Pattern},
	}
	for _, c := range cases {
		if c.pattern != memberIDPattern {
			t.Errorf("%s pattern = %q, want %q", c.where, c.pattern, memberIDPattern)
		}
	}
}

// TestAccessLogNoRawPath: whatever path a caller sends, matched or not,
// the access log names a route pattern, never the caller's text.
func TestAccessLogNoRawPath(t *testing.T) {
	e := newEnv(t)
	reqs := []struct {
		method, path, route string
		status              int64
	}{
		{http.MethodPut, "/v1/members/Zelphina%20Quarrington", "/v1/members/{member_id}", 400},
		{http.MethodPut, "/v1/members/Zelphina-Quarrington", "/v1/members/{member_id}", 400}, // no body
		{http.MethodGet, "/v1/members/Zelphina-Quarrington", "/v1/members/{member_id}", 400}, // no transfer_id
		{http.MethodDelete, "/v1/members/Zelphina-Quarrington", "unmatched", 405},
		{http.MethodGet, "/v1/Zelphina/Quarrington", "unmatched", 404},
		{http.MethodGet, "/v1/transfers/Zelphina-Quarrington/1984-07-19", "unmatched", 404},
		{http.MethodGet, "/v1/transfers/Zelphina?q=Quarrington", "/v1/transfers/{id}", 404},
		{http.MethodGet, "/v1/transfers/Zelphina/timeline", "/v1/transfers/{id}/timeline", 404},
		{http.MethodPost, "/v1/transfers/Zelphina/ack", "/v1/transfers/{id}/ack", 400}, // no body
	}
	for _, r := range reqs {
		e.do(r.method, r.path, "")
	}
	lines := e.logs.FilterMessage("http request").All()
	if len(lines) != len(reqs) {
		t.Fatalf("access log lines = %d, want %d", len(lines), len(reqs))
	}
	for i, l := range lines {
		f := l.ContextMap()
		if f["route"] != reqs[i].route || f["status"] != reqs[i].status {
			t.Errorf("line %d route, status = %v, %v; want %s, %d", i, f["route"], f["status"], reqs[i].route, reqs[i].status)
		}
	}
	// assertNoPHILogged (at cleanup) checks no line holds the names.
}
