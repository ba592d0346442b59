package signing

import (
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// SignTyped signs payload as Sign does but with protected header typ
// set to typ (e.g. "at+jwt" for access tokens, RFC 9068) and no cty, so
// that a verifier checking typ never takes one kind of signed object for
// another.
func (s *Signer) SignTyped(payload []byte, typ string) (string, error) {
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: Algorithm, Key: s.key}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	obj, err := sg.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: sign: %w", err)
	}
	c, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("signing: serialize: %w", err)
	}
	return c, nil
}
