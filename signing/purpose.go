package signing

import (
	"fmt"
	"strings"
)

// Purpose is what a signature is for. Each purpose has its own key set and
// its own JWS typ (RFC 8725 §3.11, explicit typing), which verifiers
// check: a manifest signature never verifies as a checkpoint or an access
// token, even if a key were shared.
type Purpose string

// The purposes p2p signs for.
const (
	// Manifest signs export manifests, which partners verify on delivery
	// and while they may download the files.
	Manifest Purpose = "manifest"
	// Checkpoint signs audit log checkpoints, which must verify for as
	// long as the log is kept.
	Checkpoint Purpose = "checkpoint"
	// Token signs the access tokens our token endpoints issue (RFC 9068
	// typ at+jwt), which only we verify.
	Token Purpose = "token"
)

// Purposes lists every purpose, in the order the CLI shows them.
var Purposes = []Purpose{Manifest, Checkpoint, Token}

// The typ header of each purpose.
const (
	TypeManifest   = "p2p-manifest+jws"
	TypeCheckpoint = "p2p-checkpoint+jws"
	TypeToken      = "at+jwt"
)

// ParsePurpose returns the purpose named s.
func ParsePurpose(s string) (Purpose, error) {
	for _, p := range Purposes {
		if string(p) == s {
			return p, nil
		}
	}
	return "", fmt.Errorf("signing: unknown key purpose %q (want manifest, checkpoint or token)", s)
}

// Type is the typ header of every JWS signed for p; JOSE for none.
func (p Purpose) Type() string {
	switch p {
	case Manifest:
		return TypeManifest
	case Checkpoint:
		return TypeCheckpoint
	case Token:
		return TypeToken
	}
	return HeaderType
}

// contentType is the cty header of p's JWS: its payload is JSON, except
// an access token's, which is a JWT's claims (no cty, RFC 7519 §5.2).
func (p Purpose) contentType() string {
	if p == Token {
		return ""
	}
	return HeaderContentType
}

// accepts reports whether a JWS typed typ may be one made for p. Before
// keys were split by purpose every JWS was typed JOSE; of those only
// checkpoints must still verify (they are kept for ever; a stale token or
// manifest is refused anyway), and a checkpoint's payload names its
// version, which nothing else we signed carries.
func (p Purpose) accepts(typ string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		return strings.TrimPrefix(s, "application/")
	}
	if norm(typ) == norm(p.Type()) {
		return true
	}
	return p == Checkpoint && typ == HeaderType
}
