package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// The callers of the matrix: each scope alone, admin, an authenticated
// client with no scope, no credentials, and an invalid token. All but the
// last two are the client "payer-a"; the reviewer carries a person.
var matrixRoles = []struct {
	name   string
	header string // Authorization; "" for none
	scopes []caller.Scope
}{
	{"transfers:write", bearer("payer-a", "", caller.TransfersWrite), []caller.Scope{caller.TransfersWrite}},
	{"transfers:read", bearer("payer-a", "", caller.TransfersRead), []caller.Scope{caller.TransfersRead}},
	{"review", bearer("payer-a", "ann", caller.Review), []caller.Scope{caller.Review}},
	{"members:write", bearer("payer-a", "", caller.MembersWrite), []caller.Scope{caller.MembersWrite}},
	{"members:read", bearer("payer-a", "", caller.MembersRead), []caller.Scope{caller.MembersRead}},
	{"audit:read", bearer("payer-a", "", caller.AuditRead), []caller.Scope{caller.AuditRead}},
	{"admin", bearer("payer-a", "", caller.Admin), []caller.Scope{caller.Admin}},
	{"none", bearer("payer-a", ""), nil},
	{"anonymous", "", nil},
	{"invalid", badToken, nil},
}

// matrixWant is what each operation answers each role, written by hand
// from docs/authorization.md, not from Roles, so that a wrong Roles
// fails the test. Columns follow matrixRoles; "ok" is any 2xx; "a/b" is
// the answer for the caller's own transfer, then another client's.
var matrixWant = map[string]string{
	//                    t:write t:read review m:write m:read audit admin none anon invalid
	"createTransfer":      "ok     403    403    403     403    403   ok    403  401  401",
	"listTransfers":       "ok     ok     ok     403     403    403   ok    403  401  401",
	"getTransfer":         "ok/404 ok     ok     403     403    403   ok    403  401  401",
	"getTransferTimeline": "ok/404 ok     403    403     403    403   ok    403  401  401",
	"getTransferManifest": "ok/404 ok     403    403     403    403   ok    403  401  401",
	"reviewTransfer":      "403    403    ok     403     403    403   ok    403  401  401",
	"getMember":           "403    403    ok     403     ok     403   ok    403  401  401",
	"upsertMember":        "403    403    403    ok      403    403   ok    403  401  401",
	"getAuditEvents":      "403    403    403    403     403    ok    ok    403  401  401",
	"getAuditCheckpoint":  "403    403    403    403     403    ok    ok    403  401  401",
	"getAuditProof":       "403    403    403    403     403    ok    ok    403  401  401",
	"getAuditConsistency": "403    403    403    403     403    ok    ok    403  401  401",
	"acknowledgeTransfer": "ok     ok     ok     ok      ok     ok    ok    ok   ok   ok",
	"getJWKS":             "ok     ok     ok     ok      ok     ok    ok    ok   ok   ok",
	"healthz":             "ok     ok     ok     ok      ok     ok    ok    ok   ok   ok",
	"readyz":              "ok     ok     ok     ok      ok     ok    ok    ok   ok   ok",
}

// matrixRequest builds the request of an operation on transfer tr; n
// makes each call's Idempotency-Key new.
type matrixRequest func(tr string, n int) (method, path, body string, header []string)

func get(path string) matrixRequest {
	return func(tr string, _ int) (string, string, string, []string) {
		return http.MethodGet, strings.ReplaceAll(path, "{id}", tr), "", nil
	}
}

var matrixRequests = map[string]matrixRequest{
	"createTransfer": func(_ string, n int) (string, string, string, []string) {
		return http.MethodPost, "/v1/transfers", body("sandbox"), []string{"Idempotency-Key", fmt.Sprintf("matrix-key-%04d", n)}
	},
	"listTransfers":       get("/v1/transfers"),
	"getTransfer":         get("/v1/transfers/{id}"),
	"getTransferTimeline": get("/v1/transfers/{id}/timeline"),
	"getTransferManifest": get("/v1/transfers/{id}/manifest"),
	"reviewTransfer": func(tr string, _ int) (string, string, string, []string) {
		return http.MethodPost, "/v1/transfers/" + tr + "/review", `{"decision":"approve","member_id":"M1","reason":"same person"}`, nil
	},
	"getMember": get("/v1/members/M1?transfer_id={id}"),
	"upsertMember": func(string, int) (string, string, string, []string) {
		return http.MethodPut, "/v1/members/M2", `{"given":"Test","family":"Member","birth_date":"1980-01-02"}`, nil
	},
	"getAuditEvents":      get("/v1/audit/events"),
	"getAuditCheckpoint":  get("/v1/audit/checkpoint"),
	"getAuditProof":       get("/v1/audit/proof?seq=0"),
	"getAuditConsistency": get("/v1/audit/consistency?from=1"),
	"acknowledgeTransfer": func(tr string, _ int) (string, string, string, []string) {
		return http.MethodPost, "/v1/transfers/" + tr + "/ack", `{"receipt_jws":"good"}`, nil
	},
	"getJWKS": get("/.well-known/jwks.json"),
	"healthz": get("/healthz"),
	"readyz":  get("/readyz"),
}

// matrixEnv is a server with two clients' transfers, each sent, with a
// signed manifest and member M1 among its candidates.
func matrixEnv(t *testing.T) (e *env, own, other string) {
	t.Helper()
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, func(d *Deps) { d.Keys, d.Acks = signer, fakeAcks{} })
	ctx := context.Background()
	if err := e.store.UpsertMembers(ctx, []member.Record{{ID: "M1", Given: "Test", Family: "Member", BirthDate: "1980-01-02"}}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, client := range []string{"payer-a", "payer-b"} {
		w := e.do(http.MethodPost, "/v1/transfers", body("sandbox"), "Idempotency-Key", "shared-key-1",
			"Authorization", bearer(client, "", caller.TransfersWrite))
		id := decode[Transfer](t, w).Id
		ids[client] = id
		now := time.Now().UTC()
		const jws = "eyJhbGciOiJFUzI1NiJ9.eyJmaWxlcyI6W119.c2ln"
		if err := e.store.PutArtifact(ctx, store.Artifact{Digest: "sig-" + client, TransferID: id, Name: "manifest.jws",
			ContentType: "application/jose", Data: []byte(jws), Size: int64(len(jws)), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.ApplyChange(ctx, id, store.Change{
			Event:    transfer.Event{At: now, State: transfer.StateSent, Type: "state", Key: transfer.StateKey(transfer.StateSent)},
			State:    transfer.StateSent,
			Identity: &transfer.IdentityOutcome{Status: transfer.IdentityAmbiguous, Candidates: []string{"M1", "M9"}},
			Export:   &transfer.ExportInfo{ManifestSHA256: "cc", SignatureSHA256: "sig-" + client, KID: "k"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return e, ids["payer-a"], ids["payer-b"]
}

// objectOps are the operations on one transfer: the others answer the
// same whichever transfer the matrix names.
var objectOps = []string{"getTransfer", "getTransferTimeline", "getTransferManifest", "reviewTransfer", "getMember", "acknowledgeTransfer"}

// expectFromRoles is what Roles says role gets from op on its own
// transfer (own) or another client's.
func expectFromRoles(op string, role int, own bool) string {
	pol := Roles[op]
	r := matrixRoles[role]
	switch {
	case pol.Public:
		return "ok"
	case r.header == "" || r.header == badToken:
		return "401"
	}
	switch pol.ReachOf(caller.Principal{ClientID: "payer-a", Scopes: r.scopes}) {
	case 0:
		return "403"
	case ReachOwn:
		if !own && slices.Contains(objectOps, op) {
			return "404"
		}
	}
	return "ok"
}

func statusClass(code int) string {
	if code >= 200 && code < 300 {
		return "ok"
	}
	return fmt.Sprint(code)
}

// TestAuthorizationMatrix calls every operation of the spec as every role,
// on its own transfer and on another client's, and checks each answer
// against the hand-written matrixWant and against what Roles implies.
// Then: no answer to a client that may see only its own transfers showed
// another's, and no such request left a read on another's timeline.
func TestAuthorizationMatrix(t *testing.T) {
	e, own, other := matrixEnv(t)
	spec, err := GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, item := range spec.Paths.Map() {
		for _, op := range item.Operations() {
			ops = append(ops, roleName(t, op.OperationID))
		}
	}
	slices.Sort(ops)
	if len(ops) != len(matrixWant) || len(ops) != len(matrixRequests) {
		t.Fatalf("the spec has %d operations, the matrix %d rows and %d requests", len(ops), len(matrixWant), len(matrixRequests))
	}

	n, calls := 0, 0
	crossReads := 0
	var ownOnlyRequests []string // X-Request-Id of every call by an own-only client
	for _, op := range ops {
		cols := strings.Fields(matrixWant[op])
		req, ok := matrixRequests[op]
		if !ok || len(cols) != len(matrixRoles) {
			t.Fatalf("%s: no request, or %d columns for %d roles", op, len(cols), len(matrixRoles))
		}
		for ri, role := range matrixRoles {
			wantOwn, wantOther, split := strings.Cut(cols[ri], "/")
			if !split {
				wantOther = wantOwn
			}
			for _, target := range []struct {
				own  bool
				id   string
				want string
			}{{true, own, wantOwn}, {false, other, wantOther}} {
				n++
				if fromRoles := expectFromRoles(op, ri, target.own); fromRoles != target.want {
					t.Errorf("%s as %s (own %v): Roles gives %s, the matrix %s", op, role.name, target.own, fromRoles, target.want)
				}
				method, path, reqBody, header := req(target.id, n)
				header = append(header, "Authorization", role.header)
				w := e.do(method, path, reqBody, header...)
				calls++
				if got := statusClass(w.Code); got != target.want {
					t.Errorf("%s %s as %s (own %v) = %d, want %s; body %s", method, path, role.name, target.own, w.Code, target.want, w.Body)
				}
				checkAuthProblem(t, w, role.header)
				if ri == 0 && !Roles[op].Public { // transfers:write: own transfers only
					ownOnlyRequests = append(ownOnlyRequests, w.Header().Get("X-Request-Id"))
					if strings.Contains(w.Body.String(), other) {
						crossReads++
						t.Errorf("%s as transfers:write showed another client's transfer: %s", op, w.Body)
					}
				}
			}
		}
	}
	// No read of another's transfer on record from an own-only request.
	for _, ae := range e.auditEntries() {
		if ae.TransferID == other && ae.Event.Type == transfer.EventRead &&
			slices.Contains(ownOnlyRequests, fmt.Sprint(ae.Event.Detail["request_id"])) {
			crossReads++
			t.Errorf("a transfers:write request read another client's transfer: %+v", ae.Event)
		}
	}
	t.Logf("%d operations x %d roles x own/other: %d calls, %d cross-client reads", len(ops), len(matrixRoles), calls, crossReads)
}

// checkAuthProblem checks the problem and challenge of a 401 or 403.
func checkAuthProblem(t *testing.T, w *httptest.ResponseRecorder, authorization string) {
	t.Helper()
	challenge := w.Header().Get("WWW-Authenticate")
	switch w.Code {
	case http.StatusUnauthorized:
		problem(t, w, http.StatusUnauthorized, ProblemUnauthenticated)
		want := `Bearer realm="p2p"`
		if authorization != "" {
			want += `, error="invalid_token"`
		}
		if challenge != want {
			t.Errorf("401 challenge = %q, want %q", challenge, want)
		}
	case http.StatusForbidden:
		problem(t, w, http.StatusForbidden, ProblemForbidden)
		if !regexp.MustCompile(`^Bearer realm="p2p", error="insufficient_scope", scope="[a-z: ]+"$`).MatchString(challenge) {
			t.Errorf("403 challenge = %q", challenge)
		}
	default:
		if challenge != "" {
			t.Errorf("%d with a challenge %q", w.Code, challenge)
		}
	}
}

// TestIdempotencyKeyPerClient: the same key and body from two clients are
// two transfers, each client replaying only its own answer.
func TestIdempotencyKeyPerClient(t *testing.T) {
	e := newEnv(t)
	post := func(client string) *httptest.ResponseRecorder {
		return e.do(http.MethodPost, "/v1/transfers", body("sandbox"), "Idempotency-Key", "the-same-key",
			"Authorization", bearer(client, "", caller.TransfersWrite))
	}
	a1, b1, a2, b2 := post("payer-a"), post("payer-b"), post("payer-a"), post("payer-b")
	for _, w := range []*httptest.ResponseRecorder{a1, b1, a2, b2} {
		if w.Code != http.StatusAccepted {
			t.Fatalf("POST = %d %s", w.Code, w.Body)
		}
	}
	if a1.Header().Get("Idempotent-Replayed") != "" || b1.Header().Get("Idempotent-Replayed") != "" {
		t.Error("a first request was answered as a replay")
	}
	if a2.Header().Get("Idempotent-Replayed") != "true" || b2.Header().Get("Idempotent-Replayed") != "true" {
		t.Error("a repeat was not answered as a replay")
	}
	ta, tb := decode[Transfer](t, a1), decode[Transfer](t, b1)
	if ta.Id == tb.Id {
		t.Fatalf("two clients' requests under one key gave one transfer %s", ta.Id)
	}
	if a2.Body.String() != a1.Body.String() || b2.Body.String() != b1.Body.String() {
		t.Error("a replay did not answer its own client's first answer")
	}
	for client, id := range map[string]string{"payer-a": ta.Id, "payer-b": tb.Id} {
		got, err := e.store.GetTransfer(context.Background(), id)
		if err != nil || got.ClientID != client {
			t.Errorf("transfer %s belongs to %q (%v), want %s", id, got.ClientID, err, client)
		}
	}
}

// TestListOwnTransfers: a client that may see only its own transfers
// lists only those, page after page; transfers:read lists all.
func TestListOwnTransfers(t *testing.T) {
	e := newEnv(t)
	owned := map[string][]string{}
	for i := range 6 {
		client := []string{"payer-a", "payer-b"}[i%2]
		w := e.do(http.MethodPost, "/v1/transfers", body("sandbox"), "Idempotency-Key", fmt.Sprintf("list-key-%04d", i),
			"Authorization", bearer(client, "", caller.TransfersWrite))
		owned[client] = append(owned[client], decode[Transfer](t, w).Id)
	}
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"own", bearer("payer-a", "", caller.TransfersWrite), 3},
		{"own, other client", bearer("payer-b", "", caller.TransfersWrite), 3},
		{"all", bearer("payer-a", "", caller.TransfersRead), 6},
		{"all, with write", bearer("payer-a", "", caller.TransfersWrite, caller.TransfersRead), 6},
		{"no transfers", bearer("payer-c", "", caller.TransfersWrite), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			path := "/v1/transfers?limit=2"
			for range 10 {
				w := e.do(http.MethodGet, path, "", "Authorization", tc.auth)
				page := decode[TransferPage](t, w)
				for _, tr := range page.Items {
					got = append(got, tr.Id)
				}
				if page.NextCursor == nil {
					break
				}
				path = "/v1/transfers?limit=2&cursor=" + *page.NextCursor
			}
			if len(got) != tc.want {
				t.Fatalf("listed %d transfers, want %d", len(got), tc.want)
			}
			if strings.HasPrefix(tc.name, "own") {
				client := strings.Split(strings.TrimPrefix(tc.auth, "Bearer tok."), ".")[0]
				for _, id := range got {
					if !slices.Contains(owned[client], id) {
						t.Errorf("%s listed %s, another client's", client, id)
					}
				}
			}
		})
	}
}

// TestAuthorizationDoc: docs/authorization.md's table of who may call
// what is Roles, row for row.
func TestAuthorizationDoc(t *testing.T) {
	b, err := os.ReadFile("../docs/authorization.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(\\w+)` \\| `([A-Z]+ [^`]+)` \\| (.+) \\|$")
	doc := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			doc[m[1]] = m[3]
		}
	}
	for op, pol := range Roles {
		var want string
		if pol.Public {
			want = "public"
		} else {
			var parts []string
			for _, g := range pol.Grants {
				p := "`" + string(g.Scope) + "`"
				if g.Reach == ReachOwn {
					p += " (own)"
				}
				parts = append(parts, p)
			}
			want = strings.Join(parts, ", ")
		}
		got, ok := doc[op]
		if !ok {
			t.Errorf("docs/authorization.md has no row for %s", op)
			continue
		}
		if got != want && !(pol.Public && strings.HasPrefix(got, "public")) {
			t.Errorf("docs/authorization.md: %s is opened by %q, Roles says %q", op, got, want)
		}
	}
	if len(doc) != len(Roles) {
		t.Errorf("docs/authorization.md has %d operation rows, Roles %d", len(doc), len(Roles))
	}
}

// TestSpecSecurity: openapi.yaml lists, per operation, the scopes Roles
// grants, and no security for the public operations.
func TestSpecSecurity(t *testing.T) {
	spec, err := GetSwagger()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Components.SecuritySchemes["bearer"] == nil || len(spec.Security) != 1 || spec.Security[0]["bearer"] == nil {
		t.Fatalf("spec security = %v, schemes %v; want bearer by default", spec.Security, spec.Components.SecuritySchemes)
	}
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			pol := Roles[roleName(t, op.OperationID)]
			if op.Security == nil {
				t.Errorf("%s %s: no security of its own", method, path)
				continue
			}
			var got []string
			for _, req := range *op.Security {
				got = append(got, req["bearer"]...)
			}
			var want []string
			for _, s := range pol.Scopes() {
				want = append(want, string(s))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s %s: the spec lists scopes %v, Roles %v", method, path, got, want)
			}
			_, has401 := op.Responses.Map()["401"]
			_, has403 := op.Responses.Map()["403"]
			if has401 == pol.Public || has403 == pol.Public {
				t.Errorf("%s %s: public %v, documents 401 %v and 403 %v", method, path, pol.Public, has401, has403)
			}
		}
	}
}

// TestNewServerNeedsAuth: no Authenticator, no server.
func TestNewServerNeedsAuth(t *testing.T) {
	_, err := NewServer(Deps{Store: newEnv(t).store, Engine: &fakeEngine{}, Keys: fakeKeys{}})
	if err == nil || !strings.Contains(err.Error(), "Auth") {
		t.Errorf("NewServer without Auth: %v", err)
	}
}

// TestAuthBeforeValidation: an unauthenticated or unauthorised request
// is refused before its parameters and body are looked at.
func TestAuthBeforeValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		auth   string
		status int
		slug   string
	}{
		{"", http.StatusUnauthorized, ProblemUnauthenticated},
		{badToken, http.StatusUnauthorized, ProblemUnauthenticated},
		{bearer("payer-a", "", caller.AuditRead), http.StatusForbidden, ProblemForbidden},
	}
	for _, tc := range tests {
		// A body that is not JSON, no Idempotency-Key, a bad parameter.
		problem(t, e.do(http.MethodPost, "/v1/transfers", "{not json", "Authorization", tc.auth), tc.status, tc.slug)
		problem(t, e.do(http.MethodGet, "/v1/transfers?limit=0", "", "Authorization", tc.auth), tc.status, tc.slug)
	}
	if e.countTransfers() != 0 {
		t.Error("a refused request created a transfer")
	}
}

// TestFHIRNotBehindV1Auth: /fhir answers in its own terms, without /v1
// credentials.
func TestFHIRNotBehindV1Auth(t *testing.T) {
	fhir := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	e := newEnv(t, func(d *Deps) { d.FHIR = fhir })
	if w := e.do(http.MethodGet, "/fhir/metadata", "", "Authorization", ""); w.Code != http.StatusTeapot {
		t.Errorf("GET /fhir/metadata without credentials = %d, want the FHIR handler's 418", w.Code)
	}
}

// roleName is the key of Roles for an operationId of the embedded spec,
// which has them as Go names (GetTransfer for getTransfer).
func roleName(t *testing.T, opID string) string {
	t.Helper()
	for id := range Roles {
		if strings.EqualFold(id, opID) {
			return id
		}
	}
	t.Fatalf("operation %s has no entry in Roles", opID)
	return ""
}
