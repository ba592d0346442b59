package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/caller"
)

// Reach is how much of the transfers a scope opens an operation on.
type Reach int

// Reaches, narrowest first.
const (
	// ReachOwn: only the transfers the calling client created; another
	// client's is not found (404), never forbidden, so that its existence
	// is not confirmed.
	ReachOwn Reach = iota + 1
	// ReachAll: every transfer.
	ReachAll
)

// Grant is a scope that opens an operation, and to which transfers.
type Grant struct {
	Scope caller.Scope
	Reach Reach
}

// Policy is who may call an operation: anyone (Public), or a client
// holding one of Grants. Admin holds every scope and reaches everything.
type Policy struct {
	Public bool
	Grants []Grant
}

func all(scopes ...caller.Scope) []Grant {
	gs := make([]Grant, len(scopes))
	for i, s := range scopes {
		gs[i] = Grant{s, ReachAll}
	}
	return gs
}

// Roles declares, per operationId of openapi.yaml, who may call it. It is
// the one table of /v1 authorisation: the server refuses to start if an
// operation of the spec is missing from it, the spec's per-operation
// scopes and docs/authorization.md are tested against it, and the
// matrix test checks it against expectations written by hand.
var Roles = map[string]Policy{
	// Submitting payers create transfers and follow their own.
	"createTransfer": {Grants: all(caller.TransfersWrite)},
	"listTransfers": {Grants: append(all(caller.TransfersRead, caller.Review),
		Grant{caller.TransfersWrite, ReachOwn})},
	"getTransfer": {Grants: append(all(caller.TransfersRead, caller.Review),
		Grant{caller.TransfersWrite, ReachOwn})},
	"getTransferTimeline": {Grants: append(all(caller.TransfersRead),
		Grant{caller.TransfersWrite, ReachOwn})},
	"getTransferManifest": {Grants: append(all(caller.TransfersRead),
		Grant{caller.TransfersWrite, ReachOwn})},

	// Reviewers decide transfers in manual review and read the members
	// they compare (which members: see GetMember).
	"reviewTransfer": {Grants: all(caller.Review)},
	"getMember":      {Grants: all(caller.Review, caller.MembersRead)},
	"upsertMember":   {Grants: all(caller.MembersWrite)},

	// The audit log.
	"getAuditEvents":      {Grants: all(caller.AuditRead)},
	"getAuditCheckpoint":  {Grants: all(caller.AuditRead)},
	"getAuditProof":       {Grants: all(caller.AuditRead)},
	"getAuditConsistency": {Grants: all(caller.AuditRead)},

	// Public: probes, our published keys, and partners' acknowledgements,
	// which their signature authenticates (AcknowledgeTransfer).
	"acknowledgeTransfer": {Public: true},
	"getJWKS":             {Public: true},
	"healthz":             {Public: true},
	"readyz":              {Public: true},
}

// ReachOf is how far p's scopes open an operation under pol: the widest
// reach of the grants p holds, 0 if none.
func (pol Policy) ReachOf(p caller.Principal) Reach {
	if slices.Contains(p.Scopes, caller.Admin) {
		return ReachAll
	}
	var r Reach
	for _, g := range pol.Grants {
		if p.Has(g.Scope) {
			r = max(r, g.Reach)
		}
	}
	return r
}

// Scopes lists the scopes that open the operation, as the spec lists them.
func (pol Policy) Scopes() []caller.Scope {
	out := make([]caller.Scope, len(pol.Grants))
	for i, g := range pol.Grants {
		out[i] = g.Scope
	}
	return out
}

// operations maps each route of the spec ("GET /v1/transfers/{id}", as
// chi writes the pattern) to its operationId, and checks that Roles has
// a policy for each operation and none for an operation the spec lacks.
func operations(spec *openapi3.T) (map[string]string, error) {
	// The embedded spec has the operationIds as Go names
	// (GetTransfer for getTransfer): match them regardless of case.
	byFold := map[string]string{}
	for id := range Roles {
		byFold[strings.ToLower(id)] = id
	}
	ops := map[string]string{}
	inSpec := map[string]bool{}
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			id, ok := byFold[strings.ToLower(op.OperationID)]
			if !ok {
				return nil, fmt.Errorf("api: operation %s has no entry in Roles", op.OperationID)
			}
			ops[method+" "+path] = id
			inSpec[id] = true
		}
	}
	for id := range Roles {
		if !inSpec[id] {
			return nil, fmt.Errorf("api: Roles names %s, which is not an operation of the spec", id)
		}
	}
	return ops, nil
}

type reachKey struct{}

// reachOf is the reach the request's operation was authorised with;
// outside an authorised request (a public route, a background call) it
// is ReachAll, so only authorise narrows it.
func reachOf(ctx context.Context) Reach {
	if r, ok := ctx.Value(reachKey{}).(Reach); ok {
		return r
	}
	return ReachAll
}

// authorize authenticates and authorises every request to an operation of
// the spec that is not public, before anything reads its parameters or
// body: an unauthenticated caller learns nothing but 401. Routes outside
// the spec (/fhir, which authenticates partners itself) pass untouched,
// as do requests that route nowhere (404, 405).
func (s *Server) authorize(mux *chi.Mux, ops map[string]string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			path := r.URL.RawPath
			if path == "" {
				path = r.URL.Path
			}
			op, ok := ops[r.Method+" "+mux.Find(chi.NewRouteContext(), r.Method, path)]
			pol := Roles[op]
			if !ok || pol.Public {
				next.ServeHTTP(w, r)
				return
			}
			p, err := s.auth.Authenticate(r)
			if err != nil {
				writeProblem(w, r, s.unauthenticated(r.Context(), err))
				return
			}
			if info := infoFrom(r.Context()); info != nil {
				info.clientID = p.ClientID
			}
			reach := pol.ReachOf(p)
			if reach == 0 {
				writeProblem(w, r, forbidden(pol.Scopes()))
				return
			}
			ctx := context.WithValue(caller.With(r.Context(), p), reachKey{}, reach)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// unauthenticated is the 401 for err: a bare Bearer challenge when the
// request carried no credentials, invalid_token when it carried some
// (RFC 6750 section 3.1). Why they failed is logged, not answered.
func (s *Server) unauthenticated(ctx context.Context, err error) *problemError {
	if errors.Is(err, caller.ErrNoCredentials) {
		p := newProblem(http.StatusUnauthorized, ProblemUnauthenticated, "Unauthenticated",
			"this operation needs a bearer access token or a client certificate")
		p.challenge = `Bearer realm="p2p"`
		return p
	}
	s.logFor(ctx).Info("credentials refused", zap.Error(err))
	p := newProblem(http.StatusUnauthorized, ProblemUnauthenticated, "Unauthenticated",
		"the credentials are invalid, expired or of a disabled client")
	p.challenge = `Bearer realm="p2p", error="invalid_token"`
	return p
}

// forbidden is the 403 of a client none of whose scopes opens the
// operation; the challenge names the scopes that would.
func forbidden(scopes []caller.Scope) *problemError {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	p := newProblem(http.StatusForbidden, ProblemForbidden, "Forbidden",
		"the client's scopes do not allow this operation; it needs one of: "+strings.Join(names, ", "))
	p.challenge = `Bearer realm="p2p", error="insufficient_scope", scope="` + strings.Join(names, " ") + `"`
	return p
}

// principal is the authenticated caller of the request ctx belongs to;
// the zero Principal outside an authenticated request.
func principal(ctx context.Context) caller.Principal {
	p, _ := caller.From(ctx)
	return p
}

// clientID is the authenticated client of the request ctx belongs to.
func clientID(ctx context.Context) string { return principal(ctx).ClientID }

// owner is the client whose transfers alone the request may see, or ""
// when it may see every transfer.
func owner(ctx context.Context) string {
	if reachOf(ctx) == ReachOwn {
		return clientID(ctx)
	}
	return ""
}

// reviewer names who decides a review: the person acting through the
// client when the credential names one, else the client.
func reviewer(p caller.Principal) string {
	if p.Person != "" {
		return p.Person
	}
	return p.ClientID
}
