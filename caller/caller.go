// Package caller names who is calling an API and what they may do: the
// authenticated client of a request, its scopes (roles) and, when a
// person acts through it, that person. Authentication (package
// smartauth's access tokens, mutual TLS) produces a Principal; the API
// checks it per operation and per object.
package caller

import (
	"context"
	"errors"
	"net/http"
	"slices"
)

// Scope is a role a client is registered with and an access token
// carries. The /v1 API checks one per operation.
type Scope string

// The /v1 scopes. Admin holds every other one.
const (
	// TransfersWrite: a payer system submitting transfers; it sees only
	// the transfers it created.
	TransfersWrite Scope = "transfers:write"
	// TransfersRead: ops reading every transfer, its timeline and manifest.
	TransfersRead Scope = "transfers:read"
	// Review: deciding transfers in manual review, reading them and their
	// candidate members.
	Review Scope = "review"
	// MembersWrite: loading members' demographics.
	MembersWrite Scope = "members:write"
	// MembersRead: reading a member's demographics.
	MembersRead Scope = "members:read"
	// AuditRead: reading the audit log, its checkpoints and proofs.
	AuditRead Scope = "audit:read"
	// PayloadsRead: decoding what p2p keeps in Temporal (the codec
	// server, for Temporal's Web UI and CLI), which shows member ids and
	// file URLs.
	PayloadsRead Scope = "payloads:read"
	// Admin: all of the above.
	Admin Scope = "admin"
)

// Scopes lists every /v1 scope, in the order the docs list them.
var Scopes = []Scope{TransfersWrite, TransfersRead, Review, MembersWrite, MembersRead, AuditRead, PayloadsRead, Admin}

// Valid reports whether s is a /v1 scope.
func (s Scope) Valid() bool { return slices.Contains(Scopes, s) }

// Principal is an authenticated caller.
type Principal struct {
	// ClientID is the registered client that authenticated. Idempotency
	// keys, object ownership and audit actors derive from it.
	ClientID string
	// Scopes are what the client may do: its registered roles, narrowed
	// to what its access token was granted.
	Scopes []Scope
	// Person is the person acting through the client (a reviewer), when
	// the credential names one; empty for a system.
	Person string
	// Method says how the client authenticated: "bearer" or "mtls".
	Method string
}

// Has reports whether p holds s (Admin holds every scope).
func (p Principal) Has(s Scope) bool {
	return slices.Contains(p.Scopes, s) || slices.Contains(p.Scopes, Admin)
}

// Authenticator finds the Principal of a request. It returns
// ErrNoCredentials when the request carries none and an error wrapping
// ErrInvalidCredentials when it carries some that do not hold; both are
// 401 to the caller. A request with invalid credentials is never treated
// as one without.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (Principal, error)

// Authenticate returns f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (Principal, error) { return f(r) }

// Authentication errors.
var (
	// ErrNoCredentials: the request carries no bearer token and no
	// client certificate.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials: the request's credentials are expired,
	// forged, for another audience or type, or of a disabled client.
	ErrInvalidCredentials = errors.New("invalid credentials")
)

type key struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, key{}, p)
}

// From returns the Principal ctx carries.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(key{}).(Principal)
	return p, ok
}
