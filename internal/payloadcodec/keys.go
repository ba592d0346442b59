package payloadcodec

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/p2p-payer/p2p/signing"
)

// Purpose names the payload keys beside the signing keys' purposes
// (`p2p keys rotate --purpose payload`).
const Purpose = "payload"

// KeySetFile is the payload key set's file in a keys directory, beside
// the signing key sets (signing.KeySetFile).
const KeySetFile = Purpose + "-keys.json"

// KeyEnv is the environment variable that may hold the payload keys
// instead of the keys directory: a key set file's JSON or one key (a JWK,
// kty oct). Environment only: a flag would show in the process list.
const KeyEnv = "P2P_PAYLOAD_KEY"

// KeySize is the size of a payload key: AES-256.
const KeySize = 32

// Key is one AES-256 key and its id, which every payload it encrypts
// names in its metadata.
type Key struct {
	ID     string
	secret []byte
}

// NewKey returns a fresh random key.
func NewKey() (Key, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("payloadcodec: generate key: %w", err)
	}
	return keyOf(b), nil
}

func keyOf(secret []byte) Key { return Key{ID: KeyID(secret), secret: secret} }

// KeyID is the id of the key secret: the first 12 bytes of a SHA-256 of
// it (domain separated), base64url, 16 characters. It names the key in
// every payload's metadata and reveals nothing of it.
func KeyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("p2p payload key id\n"))
	h.Write(secret)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// KeySet is the payload keys: the active key, which encrypts; maybe a next
// key, which decrypts already but does not encrypt yet, so that every
// process knows it before any encrypts with it; and the retired keys,
// which decrypt what they encrypted for as long as Temporal keeps it.
// Unlike a retired signing key, a retired payload key keeps its secret:
// decrypting needs it.
type KeySet struct {
	Active  Key
	Next    *Key
	Retired []RetiredKey // oldest first
}

// RetiredKey is a key that no longer encrypts, and when it stopped.
type RetiredKey struct {
	Key       Key
	RetiredAt time.Time
}

// NewKeySet returns a key set with a fresh active key.
func NewKeySet() (*KeySet, error) {
	k, err := NewKey()
	if err != nil {
		return nil, err
	}
	return &KeySet{Active: k}, nil
}

// Keys returns every key that decrypts: active, next, then retired.
func (ks *KeySet) Keys() []Key {
	out := []Key{ks.Active}
	if ks.Next != nil {
		out = append(out, *ks.Next)
	}
	for _, r := range ks.Retired {
		out = append(out, r.Key)
	}
	return out
}

// Prepare adds a next key unless there is one, and returns its id: from
// each process's next start it decrypts, and Rotate then makes it the
// one that encrypts.
func (ks *KeySet) Prepare() (string, error) {
	if ks.Next == nil {
		k, err := NewKey()
		if err != nil {
			return "", err
		}
		ks.Next = &k
	}
	return ks.Next.ID, nil
}

// Rotate retires the active key at now (it still decrypts) and makes the
// next key active, or a fresh one when none was prepared. It returns the
// new active key's id.
func (ks *KeySet) Rotate(now time.Time) (string, error) {
	if _, err := ks.Prepare(); err != nil {
		return "", err
	}
	old := ks.Active
	ks.Active, ks.Next = *ks.Next, nil
	ks.Retired = append(ks.Retired, RetiredKey{Key: old, RetiredAt: now.UTC()})
	return ks.Active.ID, nil
}

// jwk is a key as stored: a JSON Web Key (RFC 7517) of type oct.
type jwk struct {
	Kty string `json:"kty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	K   string `json:"k"`
}

// keySetFile is a KeySet as stored: JSON, mode 0600.
type keySetFile struct {
	Purpose string        `json:"purpose"`
	Active  jwk           `json:"active"`
	Next    *jwk          `json:"next,omitempty"`
	Retired []retiredFile `json:"retired,omitempty"`
}

type retiredFile struct {
	Key       jwk       `json:"key"`
	RetiredAt time.Time `json:"retired_at"`
}

func toJWK(k Key) jwk {
	return jwk{Kty: "oct", Alg: "A256GCM", Kid: k.ID, K: base64.RawURLEncoding.EncodeToString(k.secret)}
}

// fromJWK checks j (an AES-256 key whose kid, if given, is its KeyID).
func fromJWK(j jwk) (Key, error) {
	if j.Kty != "oct" {
		return Key{}, fmt.Errorf("payloadcodec: key type %q, want oct", j.Kty)
	}
	if j.Alg != "" && j.Alg != "A256GCM" {
		return Key{}, fmt.Errorf("payloadcodec: key alg %q, want A256GCM", j.Alg)
	}
	b, err := base64.RawURLEncoding.DecodeString(j.K)
	if err != nil {
		return Key{}, fmt.Errorf("payloadcodec: key: %w", err)
	}
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("payloadcodec: key is %d bytes, want %d (AES-256)", len(b), KeySize)
	}
	k := keyOf(b)
	if j.Kid != "" && j.Kid != k.ID {
		return Key{}, fmt.Errorf("payloadcodec: key id %q does not match the key (%q): the file is damaged", j.Kid, k.ID)
	}
	return k, nil
}

// ParseKeySet reads the payload keys from data: a key set file's JSON,
// or one key (a JWK, kty oct) as the active key, as an environment
// variable may hold it.
func ParseKeySet(data []byte) (*KeySet, error) {
	data = bytes.TrimSpace(data)
	if !bytes.HasPrefix(data, []byte("{")) {
		return nil, errors.New("payloadcodec: the payload key is not JSON (a key set file or a JWK)")
	}
	var probe struct {
		Active json.RawMessage `json:"active"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("payloadcodec: parse key: %w", err)
	}
	if probe.Active == nil {
		var j jwk
		if err := json.Unmarshal(data, &j); err != nil {
			return nil, fmt.Errorf("payloadcodec: parse key: %w", err)
		}
		k, err := fromJWK(j)
		if err != nil {
			return nil, err
		}
		return &KeySet{Active: k}, nil
	}
	var f keySetFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("payloadcodec: parse key set: %w", err)
	}
	if f.Purpose != Purpose {
		return nil, fmt.Errorf("payloadcodec: the key set is for %q, not %q", f.Purpose, Purpose)
	}
	ks := &KeySet{}
	var err error
	if ks.Active, err = fromJWK(f.Active); err != nil {
		return nil, fmt.Errorf("active key: %w", err)
	}
	if f.Next != nil {
		n, err := fromJWK(*f.Next)
		if err != nil {
			return nil, fmt.Errorf("next key: %w", err)
		}
		ks.Next = &n
	}
	for _, r := range f.Retired {
		k, err := fromJWK(r.Key)
		if err != nil {
			return nil, fmt.Errorf("retired key: %w", err)
		}
		ks.Retired = append(ks.Retired, RetiredKey{Key: k, RetiredAt: r.RetiredAt})
	}
	return ks, nil
}

// MarshalJSON returns ks as its file holds it.
func (ks *KeySet) MarshalJSON() ([]byte, error) {
	f := keySetFile{Purpose: Purpose, Active: toJWK(ks.Active)}
	if ks.Next != nil {
		n := toJWK(*ks.Next)
		f.Next = &n
	}
	for _, r := range ks.Retired {
		f.Retired = append(f.Retired, retiredFile{Key: toJWK(r.Key), RetiredAt: r.RetiredAt.UTC()})
	}
	return json.MarshalIndent(f, "", "  ")
}

// LoadKeySet reads the key set file at path, refusing one group or others
// may read (signing.CheckPrivateFile).
func LoadKeySet(path string) (*KeySet, error) {
	b, err := signing.ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	ks, err := ParseKeySet(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// Save writes ks to path (mode 0600, its directory 0700), replacing the
// file atomically.
func (ks *KeySet) Save(path string) error { return ks.write(path, true) }

// Create writes ks to path unless a file is there already (fs.ErrExist).
func (ks *KeySet) Create(path string) error { return ks.write(path, false) }

func (ks *KeySet) write(path string, replace bool) error {
	b, err := ks.MarshalJSON()
	if err != nil {
		return fmt.Errorf("payloadcodec: marshal key set: %w", err)
	}
	return signing.WritePrivateFile(path, append(b, '\n'), replace)
}

// CreateKeySet creates the payload key set in dir unless it has one, and
// reports whether it did.
func CreateKeySet(dir string) (bool, error) {
	ks, err := NewKeySet()
	if err != nil {
		return false, err
	}
	switch err := ks.Create(filepath.Join(dir, KeySetFile)); {
	case errors.Is(err, fs.ErrExist):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}
