package pdex

import (
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/p2p-payer/p2p/export"
)

// Caller is the partner calling /fhir, once authenticated, and the SMART
// system scopes its access token holds.
type Caller struct {
	PartnerID string
	// Scopes are the access token's scopes (system/Patient.rs, ...).
	Scopes []string
	// AllScopes: the partner was named by its client certificate or by a
	// trusted gateway, which carry no scopes; it holds every scope.
	AllScopes bool
}

// Permission is one letter of a SMART v2 scope's permissions: c, r, u,
// d or s.
type Permission byte

// The permissions /fhir checks.
const (
	Read   Permission = 'r'
	Search Permission = 's'
)

// Permits reports whether c may use permission p on resource type res: a
// scope system/<res or *>.<permissions> holding p. SMART v1's read (rs),
// write (cud) and * (cruds) are read as their v2 equivalents.
func (c Caller) Permits(res string, p Permission) bool {
	if c.AllScopes {
		return true
	}
	for _, sc := range c.Scopes {
		rest, ok := strings.CutPrefix(sc, "system/")
		if !ok {
			continue
		}
		typ, perms, ok := strings.Cut(rest, ".")
		if !ok || (typ != "*" && typ != res) {
			continue
		}
		switch perms {
		case "read":
			perms = "rs"
		case "write":
			perms = "cud"
		case "*":
			perms = "cruds"
		}
		if strings.IndexByte(perms, byte(p)) >= 0 {
			return true
		}
	}
	return false
}

// readsAny reports whether c may read some resource type we export: what
// a bulk export's kick-off, status and deletion ask for. Each file is
// then checked against its own type.
func (c Caller) readsAny() bool {
	return c.Permits(export.ProvenanceType, Read) || slices.ContainsFunc(export.SupportedTypes, func(t string) bool { return c.Permits(t, Read) })
}

// readsFile reports whether c may download a file of resource type typ.
// Provenance comes with the resources it is about: any read scope of an
// exported type covers it.
func (c Caller) readsFile(typ string) bool {
	if typ == export.ProvenanceType {
		return c.readsAny()
	}
	return c.Permits(typ, Read)
}

// routeScopes is what each /fhir route asks of a caller's scopes, by
// route pattern: the one table docs/serving-partners.md lists. A bulk
// kick-off also needs read on every type it exports (kickoff), and a
// file read on its type (file).
var routeScopes = map[string]struct {
	what   string // as the docs say it
	permit func(Caller) bool
}{
	"/Patient/$member-match":              {"system/Patient.s", func(c Caller) bool { return c.Permits("Patient", Search) }},
	"/Group/$bulk-member-match":           {"system/Patient.s", func(c Caller) bool { return c.Permits("Patient", Search) }},
	"/bulk-member-match-status/{id}":      {"system/Patient.s", func(c Caller) bool { return c.Permits("Patient", Search) }},
	"/Patient/$export":                    {"read of each type exported", Caller.readsAny},
	"/Group/{group}/$davinci-data-export": {"read of each type exported", Caller.readsAny},
	"/Group/{group}/$export":              {"read of each type exported", Caller.readsAny},
	"/bulk-status/{id}":                   {"read of an exported type", Caller.readsAny},
	"/bulk-files/{id}/{digest}":           {"read of the file's type", Caller.readsAny},
}

// OutcomeInsufficientScope is the outcome class of a 403 for a token
// whose scope does not cover the route.
const OutcomeInsufficientScope = "insufficient_scope"

// routePattern is r's route within the Handler's own router: the last
// pattern chi matched (those before it are where /fhir is mounted).
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil && len(rc.RoutePatterns) > 0 {
		return rc.RoutePatterns[len(rc.RoutePatterns)-1]
	}
	return ""
}

// permitted reports whether c may call r's route; a route not in the
// table is refused (a new route must say what it needs).
func permitted(c Caller, r *http.Request) bool {
	need, ok := routeScopes[routePattern(r)]
	return ok && need.permit(c)
}

// insufficientScope is the 403 of a caller whose token lacks the scope
// the route needs (RFC 6750 §3.1).
func insufficientScope(need string) reply {
	return refuse(http.StatusForbidden, issue("forbidden", OutcomeInsufficientScope, "the access token's scope does not cover this: it needs "+need)).
		header("WWW-Authenticate", `Bearer error="insufficient_scope"`)
}

// caller authenticates r and checks its route's scope; on refusal it
// answers and returns false.
func (h *Handler) caller(w http.ResponseWriter, r *http.Request) (Caller, bool) {
	c, ok := h.d.Requester(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeOutcome(w, http.StatusUnauthorized, issue("login", OutcomeUnauthenticated, "authentication required"))
		return c, false
	}
	if !permitted(c, r) {
		insufficientScope(routeNeed(r)).write(w)
		return c, false
	}
	return c, true
}

// routeNeed says what r's route needs, for a refusal.
func routeNeed(r *http.Request) string {
	if need, ok := routeScopes[routePattern(r)]; ok {
		return need.what
	}
	return "a scope this route does not grant"
}
