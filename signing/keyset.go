package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySet is the keys of one purpose: the active key, which signs; maybe a
// next key, published before it signs so that every verifier knows it by
// the time it does; and the public halves of retired keys, published for
// as long as signatures made with them must verify (the retention the
// caller of Signer gives). A retired key's private half is not kept: it
// can sign nothing more.
type KeySet struct {
	Purpose Purpose
	Active  jose.JSONWebKey  // private
	Next    *jose.JSONWebKey // private; nil: none prepared
	Retired []RetiredKey     // oldest first
}

// RetiredKey is the public half of a key that no longer signs, and when
// it stopped.
type RetiredKey struct {
	Key       jose.JSONWebKey // public
	RetiredAt time.Time
}

// keySetFile is a KeySet as stored: JSON, mode 0600.
type keySetFile struct {
	Purpose Purpose          `json:"purpose"`
	Active  jose.JSONWebKey  `json:"active"`
	Next    *jose.JSONWebKey `json:"next,omitempty"`
	Retired []retiredFile    `json:"retired,omitempty"`
}

type retiredFile struct {
	Key       jose.JSONWebKey `json:"key"`
	RetiredAt time.Time       `json:"retired_at"`
}

// KeySetFile is the name of p's key set file in a keys directory.
func KeySetFile(p Purpose) string { return string(p) + "-keys.json" }

// NewKeySet returns a key set for p with a fresh active key.
func NewKeySet(p Purpose) (*KeySet, error) {
	k, err := newKey()
	if err != nil {
		return nil, err
	}
	return &KeySet{Purpose: p, Active: k}, nil
}

func newKey() (jose.JSONWebKey, error) {
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("signing: generate key: %w", err)
	}
	return privateKey(jose.JSONWebKey{Key: pk})
}

// ParseKeySet reads the keys of p from data: a key set file's JSON, or a
// single private key (a JWK, or PEM: PKCS #8 or SEC 1) as the active key,
// as an environment variable may hold it.
func ParseKeySet(p Purpose, data []byte) (*KeySet, error) {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(data, []byte("-----BEGIN")):
		k, err := parsePEM(data)
		if err != nil {
			return nil, err
		}
		return &KeySet{Purpose: p, Active: k}, nil
	case !bytes.HasPrefix(data, []byte("{")):
		return nil, errors.New("signing: key is neither JSON (a key set or a JWK) nor PEM")
	}
	var probe struct {
		Active json.RawMessage `json:"active"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("signing: parse key: %w", err)
	}
	if probe.Active == nil {
		s, err := parsePrivate(data)
		if err != nil {
			return nil, err
		}
		return &KeySet{Purpose: p, Active: s.key}, nil
	}
	var f keySetFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("signing: parse key set: %w", err)
	}
	if f.Purpose != p {
		return nil, fmt.Errorf("signing: the key set is for %q, not %q", f.Purpose, p)
	}
	ks := &KeySet{Purpose: p}
	var err error
	if ks.Active, err = privateKey(f.Active); err != nil {
		return nil, fmt.Errorf("signing: active key: %w", err)
	}
	if f.Next != nil {
		n, err := privateKey(*f.Next)
		if err != nil {
			return nil, fmt.Errorf("signing: next key: %w", err)
		}
		ks.Next = &n
	}
	for _, r := range f.Retired {
		pub, err := publicKey(r.Key)
		if err != nil {
			return nil, fmt.Errorf("signing: retired key: %w", err)
		}
		ks.Retired = append(ks.Retired, RetiredKey{Key: pub, RetiredAt: r.RetiredAt})
	}
	return ks, nil
}

// parsePEM reads a private P-256 key from PEM: PKCS #8 ("PRIVATE KEY") or
// SEC 1 ("EC PRIVATE KEY").
func parsePEM(data []byte) (jose.JSONWebKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return jose.JSONWebKey{}, errors.New("signing: PEM key does not decode")
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return jose.JSONWebKey{}, fmt.Errorf("signing: PEM block %q is not a private key", b.Type)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("signing: PEM key: %w", err)
	}
	return privateKey(jose.JSONWebKey{Key: key})
}

// publicKey checks that k is a P-256 key and returns its public half with
// kid, alg and use set.
func publicKey(k jose.JSONWebKey) (jose.JSONWebKey, error) {
	pub := k.Public()
	ec, ok := pub.Key.(*ecdsa.PublicKey)
	if !pub.Valid() || !ok || ec.Curve != elliptic.P256() {
		return pub, errors.New("signing: not an ECDSA P-256 key")
	}
	pub.Algorithm, pub.Use = string(Algorithm), "sig"
	kid, err := Thumbprint(pub)
	if err != nil {
		return pub, err
	}
	pub.KeyID = kid
	return pub, nil
}

// LoadKeySet reads the key set of p from the file at path, refusing a
// file group or others may read (CheckPrivateFile).
func LoadKeySet(p Purpose, path string) (*KeySet, error) {
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	ks, err := ParseKeySet(p, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// Save writes ks to path (mode 0600, its directory 0700), replacing the
// file atomically: a reader sees the old set or the new one.
func (ks *KeySet) Save(path string) error { return ks.write(path, true) }

// Create writes ks to path unless a file is there already (fs.ErrExist).
func (ks *KeySet) Create(path string) error { return ks.write(path, false) }

func (ks *KeySet) write(path string, replace bool) error {
	f := keySetFile{Purpose: ks.Purpose, Active: ks.Active, Next: ks.Next}
	for _, r := range ks.Retired {
		f.Retired = append(f.Retired, retiredFile{Key: r.Key.Public(), RetiredAt: r.RetiredAt.UTC()})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("signing: marshal key set: %w", err)
	}
	return writeFile(path, append(b, '\n'), replace)
}

// Prepare adds a next key, published from the next start of each process
// but not signing yet, unless there is one already; Rotate then makes it
// the active key. It returns the next key's kid.
func (ks *KeySet) Prepare() (string, error) {
	if ks.Next == nil {
		k, err := newKey()
		if err != nil {
			return "", err
		}
		ks.Next = &k
	}
	return ks.Next.KeyID, nil
}

// Rotate retires the active key at now (its public half stays published
// for the retention) and makes the next key active, or a fresh one when
// none was prepared. It returns the new active kid.
func (ks *KeySet) Rotate(now time.Time) (string, error) {
	if _, err := ks.Prepare(); err != nil {
		return "", err
	}
	old := ks.Active
	ks.Active, ks.Next = *ks.Next, nil
	ks.Retire(old, now)
	return ks.Active.KeyID, nil
}

// Retire adds k's public half to the retired keys at at, unless it is
// there already (or is the active or next key).
func (ks *KeySet) Retire(k jose.JSONWebKey, at time.Time) {
	pub, err := publicKey(k)
	if err != nil || ks.has(pub.KeyID) {
		return
	}
	ks.Retired = append(ks.Retired, RetiredKey{Key: pub, RetiredAt: at.UTC()})
}

func (ks *KeySet) has(kid string) bool {
	if ks.Active.KeyID == kid || (ks.Next != nil && ks.Next.KeyID == kid) {
		return true
	}
	for _, r := range ks.Retired {
		if r.Key.KeyID == kid {
			return true
		}
	}
	return false
}

// Prune drops the retired keys whose retention has passed at now and
// returns them; retention 0 keeps every key for ever.
func (ks *KeySet) Prune(retention time.Duration, now time.Time) []RetiredKey {
	if retention <= 0 {
		return nil
	}
	var kept, dropped []RetiredKey
	for _, r := range ks.Retired {
		if now.Before(r.RetiredAt.Add(retention)) {
			kept = append(kept, r)
		} else {
			dropped = append(dropped, r)
		}
	}
	ks.Retired = kept
	return dropped
}

// PublishedUntil is when a retired key leaves the JWKS given retention;
// zero (for ever) when retention is 0.
func (r RetiredKey) PublishedUntil(retention time.Duration) time.Time {
	if retention <= 0 {
		return time.Time{}
	}
	return r.RetiredAt.Add(retention)
}

// Signer returns the signer of ks: the active key signs, typed for the
// purpose; it publishes the next key and each retired key until its
// retention passes (0: for ever).
func (ks *KeySet) Signer(retention time.Duration) (*Signer, error) {
	s, err := newSigner(ks.Active, ks.Purpose)
	if err != nil {
		return nil, err
	}
	if ks.Next != nil {
		if s, err = s.withPublished(time.Time{}, *ks.Next); err != nil {
			return nil, err
		}
	}
	for _, r := range ks.Retired {
		if s, err = s.withPublished(r.PublishedUntil(retention), r.Key); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// CheckPrivateFile refuses a file holding private keys that group or
// others may read or write (mode 0600 or stricter is required), naming the
// fix. Windows has no such modes: nothing is checked there.
func CheckPrivateFile(path string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("signing: %s holds a private key but its mode is %04o, open to group or others: run chmod 600 %s", path, m, path)
	}
	return nil
}

// readPrivateFile reads a file of private keys after CheckPrivateFile.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("signing: read key: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: a close error loses nothing
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("signing: read key: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("signing: read key: %s is a directory", path)
	}
	if err := CheckPrivateFile(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("signing: read key: %w", err)
	}
	return b, nil
}

// CreateKeySets creates in dir the key set file of each purpose that has
// none, and returns the purposes it created. With legacy (the single key
// of p2p before keys were split by purpose), that key is retired at now in
// the new manifest and checkpoint sets, so that what it signed still
// verifies; tokens it signed are refused anyway (their typ).
func CreateKeySets(dir string, legacy *Signer, now time.Time) ([]Purpose, error) {
	var created []Purpose
	for _, p := range Purposes {
		ks, err := NewKeySet(p)
		if err != nil {
			return created, err
		}
		if legacy != nil && p != Token {
			ks.Retire(legacy.key, now)
		}
		switch err := ks.Create(filepath.Join(dir, KeySetFile(p))); {
		case errors.Is(err, fs.ErrExist):
		case err != nil:
			return created, err
		default:
			created = append(created, p)
		}
	}
	return created, nil
}

// ReadPrivateFile reads a file of private keys (at most 1 MiB), refusing
// one group or others may read or write (CheckPrivateFile): for key files
// of other packages (the payload keys) kept beside the signing keys.
func ReadPrivateFile(path string) ([]byte, error) { return readPrivateFile(path) }

// WritePrivateFile writes data to path, mode 0600 in a 0700 directory,
// atomically: replacing a file there when replace, else failing with
// fs.ErrExist when one is there.
func WritePrivateFile(path string, data []byte, replace bool) error {
	return writeFile(path, data, replace)
}
