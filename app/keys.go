package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/smartauth"
	"github.com/p2p-payer/p2p/workflows"
)

// Keys is where the signing keys of each purpose (export manifests, audit
// checkpoints, access tokens) come from, and how long a retired key's
// public half stays in our JWKS: as long as what it signed must verify.
type Keys struct {
	// Dir (P2P_KEYS_DIR) holds a key set file per purpose
	// (signing.KeySetFile: manifest-keys.json, …), mode 0600, made by
	// `p2p keys generate` and rotated by `p2p keys rotate`. It must lie
	// outside the data directories: keys beside the database are copied
	// into its backups and open to whoever reads the data.
	Dir string
	// ManifestRetention (P2P_MANIFEST_KEY_RETENTION): partners verify a
	// manifest while they may download its files (the file TTL). Default
	// DefaultManifestKeyRetention.
	ManifestRetention time.Duration
	// CheckpointRetention (P2P_CHECKPOINT_KEY_RETENTION): checkpoints are
	// verified for as long as the log is kept; 0 (the default): for ever.
	CheckpointRetention time.Duration
	// TokenRetention (P2P_TOKEN_KEY_RETENTION): access tokens live
	// minutes. Default DefaultTokenKeyRetention.
	TokenRetention time.Duration
}

// Defaults of Keys: the lifetime of what each purpose signs, plus a day
// (manifests) or an hour (tokens) for clocks and rolling restarts.
const (
	DefaultManifestKeyRetention = workflows.DefaultFileTTL + Day
	DefaultTokenKeyRetention    = smartauth.DefaultTokenLifetime + time.Hour
)

// KeyEnv is the environment variable that may hold the keys of p instead
// of the keys directory: a key set file's JSON, or one private key (JWK
// or PEM), e.g. from a secret store. It is read from the environment
// only: a key on the command line would show in the process list.
func KeyEnv(p signing.Purpose) string { return "P2P_" + strings.ToUpper(string(p)) + "_KEY" }

// LegacySigningKeyEnv is the single signing key of p2p before keys were
// split by purpose; Load refuses to start with it alone and says how to
// migrate.
const LegacySigningKeyEnv = "P2P_SIGNING_KEY"

// Retention is how long a retired key of p stays published (0: for ever).
func (k Keys) Retention(p signing.Purpose) time.Duration {
	switch p {
	case signing.Manifest:
		return k.ManifestRetention
	case signing.Checkpoint:
		return k.CheckpointRetention
	}
	return k.TokenRetention
}

// Validate refuses retentions shorter than what the keys sign lives:
// a partner would see a valid manifest or token fail after a rotation.
func (k Keys) Validate() error {
	switch {
	case k.ManifestRetention != 0 && k.ManifestRetention < workflows.DefaultFileTTL:
		return fmt.Errorf("P2P_MANIFEST_KEY_RETENTION (%s) is shorter than the export file TTL (%s): 0 keeps keys for ever", FormatDuration(k.ManifestRetention), FormatDuration(workflows.DefaultFileTTL))
	case k.TokenRetention != 0 && k.TokenRetention < smartauth.DefaultTokenLifetime:
		return fmt.Errorf("P2P_TOKEN_KEY_RETENTION (%s) is shorter than an access token's lifetime (%s)", FormatDuration(k.TokenRetention), smartauth.DefaultTokenLifetime)
	case k.CheckpointRetention < 0 || k.ManifestRetention < 0 || k.TokenRetention < 0:
		return errors.New("key retentions are 0 (for ever) or positive")
	}
	return nil
}

// Signers are the signer of each purpose; nil where not loaded.
type Signers struct {
	Manifest   *signing.Signer
	Checkpoint *signing.Signer
	Token      *signing.Signer
}

// Of returns the signer of p.
func (s Signers) Of(p signing.Purpose) *signing.Signer {
	switch p {
	case signing.Manifest:
		return s.Manifest
	case signing.Checkpoint:
		return s.Checkpoint
	}
	return s.Token
}

func (s *Signers) set(p signing.Purpose, v *signing.Signer) {
	switch p {
	case signing.Manifest:
		s.Manifest = v
	case signing.Checkpoint:
		s.Checkpoint = v
	default:
		s.Token = v
	}
}

// Load loads the key sets of purposes: each from its environment variable
// (KeyEnv) when set, else from Dir. Dir must not lie inside any of
// dataDirs (the SQLite database's directory, the import directory), and a
// key file group or others may read is refused. getenv reads the
// environment (os.Getenv).
func (k Keys) Load(getenv func(string) string, dataDirs []string, purposes ...signing.Purpose) (Signers, error) {
	var out Signers
	if k.Dir != "" {
		if err := outside(k.Dir, dataDirs); err != nil {
			return out, err
		}
	}
	for _, p := range purposes {
		ks, err := k.loadSet(getenv, p)
		if err != nil {
			return out, err
		}
		s, err := ks.Signer(k.Retention(p))
		if err != nil {
			return out, fmt.Errorf("%s keys: %w", p, err)
		}
		out.set(p, s)
	}
	return out, nil
}

func (k Keys) loadSet(getenv func(string) string, p signing.Purpose) (*signing.KeySet, error) {
	if v := getenv(KeyEnv(p)); v != "" {
		ks, err := signing.ParseKeySet(p, []byte(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyEnv(p), err)
		}
		return ks, nil
	}
	if k.Dir == "" {
		if getenv(LegacySigningKeyEnv) != "" {
			return nil, fmt.Errorf("%s (one key for everything) is replaced by a key set per purpose: run `p2p keys generate --keys-dir DIR --from-signing-key %s`, then set P2P_KEYS_DIR=DIR and unset %s",
				LegacySigningKeyEnv, getenv(LegacySigningKeyEnv), LegacySigningKeyEnv)
		}
		return nil, fmt.Errorf("no %s signing key: set P2P_KEYS_DIR (create it with `p2p keys generate --keys-dir DIR`) or %s", p, KeyEnv(p))
	}
	path := filepath.Join(k.Dir, signing.KeySetFile(p))
	ks, err := signing.LoadKeySet(p, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s signing key in %s: create it with `p2p keys generate --keys-dir %s`", p, k.Dir, k.Dir)
	}
	return ks, err
}

// outside refuses a keys directory inside one of dataDirs (or holding
// one): the data's backups and readers would carry our private keys.
func outside(dir string, dataDirs []string) error {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return filepath.Clean(p)
		}
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return r
		}
		return a
	}
	kd := abs(dir)
	for _, d := range dataDirs {
		if d == "" {
			continue
		}
		dd := abs(d)
		if within(kd, dd) || within(dd, kd) {
			return fmt.Errorf("the keys directory %s lies in the data directory %s: keep private keys outside the data (its backups, its readers)", dir, d)
		}
	}
	return nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// DevKeysDir is where `p2p dev` keeps its key sets, inside its data
// directory: acceptable for dev only, whose data is demo data.
const DevKeysDir = "keys"

// devLegacyKey is the single signing key p2p dev kept before keys were
// split by purpose.
const devLegacyKey = "signing-key.jwk"

// DevSigners returns the signers of `p2p dev`, creating the key sets in
// dataDir/keys on first use. A data directory from before keys were split
// keeps working: its single key becomes the retired key of the manifest
// and checkpoint sets (its checkpoints still verify) and its file is
// removed once the new sets are written.
func DevSigners(dataDir string, log *zap.Logger) (Signers, error) {
	dir := filepath.Join(dataDir, DevKeysDir)
	legacyPath := filepath.Join(dataDir, devLegacyKey)
	legacy, err := signing.Load(legacyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		legacy = nil
	case err != nil:
		return Signers{}, fmt.Errorf("the signing key of this data directory: %w", err)
	}
	created, err := signing.CreateKeySets(dir, legacy, time.Now())
	if err != nil {
		return Signers{}, err
	}
	if legacy != nil {
		if err := os.Remove(legacyPath); err != nil {
			return Signers{}, fmt.Errorf("removing the migrated signing key: %w", err)
		}
		if log != nil {
			log.Info("signing key split by purpose; the old key stays published as retired",
				zap.String("keys_dir", dir), zap.String("retired_kid", legacy.KID()))
		}
	} else if len(created) > 0 && log != nil {
		log.Info("signing keys created", zap.String("keys_dir", dir))
	}
	k := Keys{Dir: dir, ManifestRetention: DefaultManifestKeyRetention, TokenRetention: DefaultTokenKeyRetention}
	return k.Load(func(string) string { return "" }, nil, signing.Purposes...)
}
