package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/dsn"
)

func init() {
	commands["audit verify"] = command{"recompute the audit log's tree and check every signed checkpoint", runAuditVerify}
}

// errAuditFailed is returned when the log fails verification: the report
// is already printed, and the process exits non-zero.
var errAuditFailed = errors.New("audit verify: the audit log fails verification")

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p audit verify", flag.ContinueOnError)
	db := fs.String("database-url", app.Env("P2P_DATABASE_URL", filepath.Join(defaultDataDir, "p2p.db")),
		"postgres://… or a SQLite file path (P2P_DATABASE_URL)")
	since := fs.String("since", "", "recompute from this position (a number) or the first event at or after this RFC 3339 time; the tree before it is trusted")
	jwksArg := fs.String("jwks", "", "the JWK Set that verifies checkpoints: a file or an http(s) URL (e.g. https://p2p.example/.well-known/jwks.json)")
	keysDir := fs.String("keys-dir", app.Env("P2P_KEYS_DIR", ""), "our keys directory, whose checkpoint key set verifies checkpoints when --jwks is not given (P2P_KEYS_DIR)")
	key := fs.String("signing-key", app.Env(app.LegacySigningKeyEnv, ""), "the single signing key of p2p before keys were split by purpose, JWK JSON file, when neither --jwks nor --keys-dir is given (P2P_SIGNING_KEY)")
	var trusted fileList
	fs.Var(&trusted, "trusted-checkpoint", "a signed checkpoint kept outside the database (the JSON of GET /v1/audit/checkpoint, or its jws): it must verify and the log must reach and agree with it; repeatable")
	witness := fs.String("witness", witnessDefault(), "a witness directory (P2P_AUDIT_WITNESS) whose every checkpoint is trusted like --trusted-checkpoint; default: P2P_AUDIT_WITNESS when it is a directory, else for a SQLite store the audit-witness directory beside it, if there is one")
	maxAge, err := app.EnvDuration("P2P_AUDIT_CHECKPOINT_MAX_AGE", app.DefaultAuditMaxAge)
	if err != nil {
		return err
	}
	fs.Func("max-age", fmt.Sprintf("fail when the newest checkpoint that verifies is older than this; 0: no limit (P2P_AUDIT_CHECKPOINT_MAX_AGE, default %s)", app.FormatDuration(maxAge)), func(v string) error {
		maxAge, err = app.ParseDuration(v)
		return err
	})
	allowNone := fs.Bool("allow-no-checkpoint", false, "pass a log that no checkpoint vouches for yet (a brand-new log); without it such a log fails")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("audit verify: unexpected arguments %v", fs.Args()))
	}
	if *witness == "" {
		*witness = witnessBeside(*db)
	}
	o := audit.Options{RequireCheckpoint: !*allowNone, MaxAge: maxAge, Now: time.Now()}
	if o.Trusted, err = trustedCheckpoints(trusted, *witness); err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	jwks, err := loadJWKS(ctx, *jwksArg, *keysDir, *key, *db)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	st, err := dsn.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }() // only read: a close error loses nothing
	if o.From, err = sincePosition(ctx, st, *since); err != nil {
		return fmt.Errorf("audit verify: --since: %w", err)
	}
	rep, err := audit.VerifyWith(ctx, st, jwks, o)
	if err != nil {
		return fmt.Errorf("audit verify: reading the store: %w", err)
	}
	if rep.OK() {
		fmt.Fprintf(stdout, "audit verify: OK: %d entries, %d recomputed from position %d, %d checkpoints verified, %d trusted checkpoints outside the database, root %s",
			rep.Size, rep.Checked, rep.From, rep.Checkpoints, rep.Trusted, base64.StdEncoding.EncodeToString(rep.Root[:]))
		if !rep.Newest.IsZero() {
			fmt.Fprintf(stdout, ", newest checkpoint %s (size %d)", rep.Newest.UTC().Format(time.RFC3339), rep.NewestSize)
		}
		fmt.Fprintln(stdout)
		return nil
	}
	if f := rep.FirstBad; f != nil {
		fmt.Fprintf(stdout, "audit verify: FAILED: first bad entry at position %d%s: %s\n", f.Position, describeEntry(ctx, st, f.Position), f.Reason)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "audit verify: FAILED: %s\n", p)
	}
	fmt.Fprintf(stdout, "audit verify: %d entries, %d recomputed from position %d, %d checkpoints\n", rep.Size, rep.Checked, rep.From, rep.Checkpoints)
	return errAuditFailed
}

// fileList is a repeatable flag of file paths.
type fileList []string

func (l *fileList) String() string     { return strings.Join(*l, ",") }
func (l *fileList) Set(v string) error { *l = append(*l, v); return nil }

// witnessDefault is P2P_AUDIT_WITNESS when it names a directory (a URL
// witness cannot be read back).
func witnessDefault() string {
	w := app.Env("P2P_AUDIT_WITNESS", "")
	if _, isDir := audit.NewWitness(w).(audit.DirWitness); isDir {
		return w
	}
	return ""
}

// devstackWitnessDir is devstack.AuditWitnessDir, which a nodev build
// does not link (TestDevWitnessDir keeps them equal).
const devstackWitnessDir = "audit-witness"

// witnessBeside is the witness directory `p2p dev` keeps beside a SQLite
// store, if it exists.
func witnessBeside(db string) string {
	if kind, target, err := dsn.Parse(db); err == nil && kind == dsn.SQLite {
		if p := filepath.Join(filepath.Dir(target), devstackWitnessDir); fileExists(p) {
			return p
		}
	}
	return ""
}

// trustedCheckpoints reads the --trusted-checkpoint files and every file
// of the witness directory.
func trustedCheckpoints(files []string, witness string) ([]audit.Trusted, error) {
	if witness != "" {
		if !fileExists(witness) {
			return nil, fmt.Errorf("--witness %s: no such directory", witness)
		}
		ws, err := audit.DirWitness{Dir: witness}.Files()
		if err != nil {
			return nil, fmt.Errorf("--witness: %w", err)
		}
		files = append(files, ws...)
	}
	out := make([]audit.Trusted, 0, len(files))
	for _, f := range files {
		t, err := audit.ReadTrusted(f)
		if err != nil {
			return nil, fmt.Errorf("trusted checkpoint: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// describeEntry names the transfer and seq of the event stored at pos, if
// there is one (a deleted entry has none).
func describeEntry(ctx context.Context, st store.AuditLog, pos int64) string {
	var desc string
	err := st.AuditEvents(ctx, store.AuditFilter{FromPosition: pos, Limit: 1}, func(ae store.AuditEvent) error {
		if ae.Position == pos {
			desc = fmt.Sprintf(" (transfer %s, seq %d, type %s)", ae.TransferID, ae.Event.Seq, ae.Event.Type)
		}
		return nil
	})
	if err != nil || desc == "" {
		return " (no event is stored there)"
	}
	return desc
}

// sincePosition turns --since into the first position to recompute: a
// number is a position, a time the position of the first event at or
// after it (the end of the log when there is none).
func sincePosition(ctx context.Context, st store.AuditLog, since string) (int64, error) {
	if since == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(since, 10, 64); err == nil {
		if n < 0 {
			return 0, errors.New("a position is 0 or more")
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, since)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a position nor an RFC 3339 time", since)
	}
	pos, err := st.AuditSize(ctx)
	if err != nil {
		return 0, err
	}
	err = st.AuditEvents(ctx, store.AuditFilter{Since: t, Limit: 1}, func(ae store.AuditEvent) error {
		pos = ae.Position
		return nil
	})
	return pos, err
}

// loadJWKS reads the JWK Set that verifies checkpoints: --jwks (a file or a
// URL), else the public keys of our checkpoint key set (P2P_CHECKPOINT_KEY,
// --keys-dir), else the old single key, else, for a SQLite store, the keys
// `p2p dev` keeps beside it.
func loadJWKS(ctx context.Context, jwksArg, keysDir, keyPath, db string) ([]byte, error) {
	switch {
	case strings.HasPrefix(jwksArg, "http://") || strings.HasPrefix(jwksArg, "https://"):
		return fetchJWKS(ctx, jwksArg)
	case jwksArg != "":
		return os.ReadFile(jwksArg)
	case os.Getenv(app.KeyEnv(signing.Checkpoint)) != "" || keysDir != "":
		return checkpointJWKS(app.Keys{Dir: keysDir})
	case keyPath != "":
		return legacyJWKS(keyPath)
	}
	if kind, target, err := dsn.Parse(db); err == nil && kind == dsn.SQLite {
		dir := filepath.Dir(target)
		if fileExists(filepath.Join(dir, app.DevKeysDir, signing.KeySetFile(signing.Checkpoint))) {
			return checkpointJWKS(app.Keys{Dir: filepath.Join(dir, app.DevKeysDir)})
		}
		if p := filepath.Join(dir, "signing-key.jwk"); fileExists(p) {
			return legacyJWKS(p) // a dev data directory not started since keys were split
		}
	}
	return nil, errors.New("no JWKS: give --jwks FILE|URL or --keys-dir (P2P_KEYS_DIR)")
}

// checkpointJWKS is the JWKS of the checkpoint key set of k, every retired
// key included (checkpoints verify for ever).
func checkpointJWKS(k app.Keys) ([]byte, error) {
	s, err := k.Load(os.Getenv, nil, signing.Checkpoint)
	if err != nil {
		return nil, err
	}
	return s.Checkpoint.PublicJWKS()
}

func legacyJWKS(path string) ([]byte, error) {
	s, err := signing.Load(path)
	if err != nil {
		return nil, err
	}
	return s.PublicJWKS()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// fetchJWKS GETs a JWK Set, with a timeout and a bound on its size.
func fetchJWKS(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS: %s", res.Status)
	}
	return io.ReadAll(io.LimitReader(res.Body, 1<<20))
}
