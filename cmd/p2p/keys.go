package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/dsn"
)

func init() {
	commands["keys rotate"] = command{"rotate the signing or payload keys of a purpose (or prepare the next key)", runKeysRotate}
	commands["keys list"] = command{"list the signing keys of each purpose and how long each is published, and the payload keys", runKeysList}
}

// loadSigners loads the signing keys the subcommand with flags which
// uses: the API signs tokens and checkpoints and publishes every key, the
// worker signs manifests and checkpoints. The data directories the keys
// must stay out of are the SQLite database's and the import directory.
func loadSigners(cfg *app.Config, which int) (app.Signers, error) {
	purposes := []signing.Purpose{signing.Manifest, signing.Checkpoint}
	if which&app.FlagAPI != 0 {
		purposes = signing.Purposes
	}
	s, err := cfg.Keys.Load(os.Getenv, dataDirs(cfg), purposes...)
	if err != nil {
		return s, fmt.Errorf("signing keys: %w", err)
	}
	return s, nil
}

// dataDirs are the directories the keys must stay out of: the SQLite
// database's and the import directory (or file bucket).
func dataDirs(cfg *app.Config) []string {
	dirs := []string{cfg.ImportFileDir()}
	if kind, target, err := dsn.Parse(cfg.DatabaseURL); err == nil && kind == dsn.SQLite {
		dirs = append(dirs, filepath.Dir(target))
	}
	return dirs
}

// loadPayloadCodec loads the payload keys that every Temporal client of
// the api and the worker encrypts with; none is an error.
func loadPayloadCodec(cfg *app.Config) (*payloadcodec.Codec, error) {
	return cfg.Keys.PayloadCodec(os.Getenv, dataDirs(cfg))
}

// keysDirFlag binds --keys-dir, required.
func keysDirFlag(fs *flag.FlagSet) *string {
	return fs.String("keys-dir", app.Env("P2P_KEYS_DIR", ""), "directory of the key set files, one per purpose, mode 0600 (P2P_KEYS_DIR)")
}

func runKeysGenerate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p keys generate", flag.ContinueOnError)
	dir := keysDirFlag(fs)
	legacy := fs.String("from-signing-key", "", "the single private JWK of p2p before keys were split by purpose (P2P_SIGNING_KEY): kept in the new manifest and checkpoint sets as a retired key, so that what it signed still verifies")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return usageError(errors.New("keys generate: --keys-dir (or P2P_KEYS_DIR) is required, and nothing else"))
	}
	var old *signing.Signer
	if *legacy != "" {
		var err error
		if old, err = signing.Load(*legacy); err != nil {
			return fmt.Errorf("keys generate: --from-signing-key: %w", err)
		}
	}
	created, err := signing.CreateKeySets(*dir, old, time.Now())
	if err != nil {
		return fmt.Errorf("keys generate: %w", err)
	}
	for _, p := range signing.Purposes {
		ks, err := signing.LoadKeySet(p, filepath.Join(*dir, signing.KeySetFile(p)))
		if err != nil {
			return fmt.Errorf("keys generate: %w", err)
		}
		verb := "exists: kept"
		for _, c := range created {
			if c == p {
				verb = "created"
			}
		}
		fmt.Fprintf(stdout, "%-10s %s %s (active kid %s)\n", p, signing.KeySetFile(p), verb, ks.Active.KeyID)
	}
	made, err := payloadcodec.CreateKeySet(*dir)
	if err != nil {
		return fmt.Errorf("keys generate: %w", err)
	}
	ks, err := payloadcodec.LoadKeySet(filepath.Join(*dir, payloadcodec.KeySetFile))
	if err != nil {
		return fmt.Errorf("keys generate: %w", err)
	}
	verb := "exists: kept"
	if made {
		verb = "created"
	}
	fmt.Fprintf(stdout, "%-10s %s %s (active kid %s)\n", payloadcodec.Purpose, payloadcodec.KeySetFile, verb, ks.Active.ID)
	if old != nil && len(created) > 0 {
		fmt.Fprintf(stdout, "the old key (kid %s) is retired in the new sets; once P2P_KEYS_DIR is set, remove it and unset P2P_SIGNING_KEY\n", old.KID())
	}
	return nil
}

// retentionOf is the retention of p's retired keys as `p2p api` reads it:
// its P2P_*_KEY_RETENTION variable, else the default.
func retentionOf(p signing.Purpose) (time.Duration, error) {
	def := map[signing.Purpose]time.Duration{signing.Manifest: app.DefaultManifestKeyRetention, signing.Token: app.DefaultTokenKeyRetention}[p]
	return app.EnvDuration(app.KeyEnv(p)+"_RETENTION", def)
}

func runKeysRotate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p keys rotate", flag.ContinueOnError)
	dir := keysDirFlag(fs)
	purpose := fs.String("purpose", "", "manifest, checkpoint, token, payload or all")
	prepare := fs.Bool("prepare", false, "only add the next key, published (a payload key: decrypting) but not signing (encrypting) yet; restart every p2p process, then rotate: no verifier ever meets an unknown key")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *dir == "" || *purpose == "" || fs.NArg() > 0 {
		return usageError(errors.New("keys rotate: --keys-dir (or P2P_KEYS_DIR) and --purpose are required"))
	}
	purposes, payload := signing.Purposes, true
	if *purpose != "all" {
		payload = *purpose == payloadcodec.Purpose
		purposes = nil
		if !payload {
			p, err := signing.ParsePurpose(*purpose)
			if err != nil {
				return usageError(fmt.Errorf("keys rotate: %w (or payload)", err))
			}
			purposes = []signing.Purpose{p}
		}
	}
	now := time.Now()
	var payloadKeys *payloadcodec.KeySet
	if payload { // loaded first: a missing set changes nothing
		var err error
		if payloadKeys, err = loadPayloadKeySet(*dir); err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
	}
	for _, p := range purposes {
		retention, err := retentionOf(p)
		if err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
		path := filepath.Join(*dir, signing.KeySetFile(p))
		ks, err := signing.LoadKeySet(p, path)
		if err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
		var msg string
		if *prepare {
			kid, err := ks.Prepare()
			if err != nil {
				return err
			}
			msg = fmt.Sprintf("next key %s published from each process's next start; run keys rotate after restarting them all", kid)
		} else {
			old := ks.Active.KeyID
			kid, err := ks.Rotate(now)
			if err != nil {
				return err
			}
			msg = fmt.Sprintf("active key %s, %s retired", kid, old)
			if dropped := ks.Prune(retention, now); len(dropped) > 0 {
				msg += fmt.Sprintf(", %d retired key(s) past their %s retention dropped", len(dropped), app.FormatDuration(retention))
			}
		}
		if err := ks.Save(path); err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
		fmt.Fprintf(stdout, "%-10s %s\n", p, msg)
	}
	if payload {
		msg, err := rotatePayloadKeys(*dir, payloadKeys, *prepare, now)
		if err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
		fmt.Fprintf(stdout, "%-10s %s\n", payloadcodec.Purpose, msg)
	}
	if !*prepare {
		fmt.Fprintln(stdout, "restart the p2p api and worker processes to sign with the new keys")
	}
	return nil
}

func runKeysList(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p keys list", flag.ContinueOnError)
	dir := keysDirFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return usageError(errors.New("keys list: --keys-dir (or P2P_KEYS_DIR) is required, and nothing else"))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// tabwriter buffers until Flush, which reports any write error.
	row := func(cols ...string) { _, _ = fmt.Fprintln(tw, strings.Join(cols, "\t")) }
	row("PURPOSE", "STATE", "KID", "RETIRED", "PUBLISHED UNTIL")
	now := time.Now()
	for _, p := range signing.Purposes {
		ks, err := signing.LoadKeySet(p, filepath.Join(*dir, signing.KeySetFile(p)))
		if err != nil {
			return fmt.Errorf("keys list: %w", err)
		}
		retention, err := retentionOf(p)
		if err != nil {
			return fmt.Errorf("keys list: %w", err)
		}
		row(string(p), "active", ks.Active.KeyID, "-", "-")
		if ks.Next != nil {
			row(string(p), "next", ks.Next.KeyID, "-", "-")
		}
		for _, r := range ks.Retired {
			until := "for ever"
			if u := r.PublishedUntil(retention); !u.IsZero() {
				until = u.UTC().Format(time.RFC3339)
				if !now.Before(u) {
					until += " (past: dropped at the next rotate)"
				}
			}
			row(string(p), "retired", r.Key.KeyID, r.RetiredAt.UTC().Format(time.RFC3339), until)
		}
	}
	// Payload keys all decrypt, retired ones included, for as long as
	// they are kept: nothing is published.
	ks, err := loadPayloadKeySet(*dir)
	if err != nil {
		return fmt.Errorf("keys list: %w", err)
	}
	row(payloadcodec.Purpose, "active", ks.Active.ID, "-", "-")
	if ks.Next != nil {
		row(payloadcodec.Purpose, "next", ks.Next.ID, "-", "-")
	}
	for _, r := range ks.Retired {
		row(payloadcodec.Purpose, "retired", r.Key.ID, r.RetiredAt.UTC().Format(time.RFC3339), "- (decrypts for ever)")
	}
	return tw.Flush()
}

// rotatePayloadKeys prepares or rotates the payload keys in dir. A
// retired payload key is never dropped: Temporal may still hold payloads
// it encrypted (histories, for the namespace's retention).
func rotatePayloadKeys(dir string, ks *payloadcodec.KeySet, prepare bool, now time.Time) (string, error) {
	var msg string
	if prepare {
		kid, err := ks.Prepare()
		if err != nil {
			return "", err
		}
		msg = fmt.Sprintf("next key %s decrypts from each process's next start; run keys rotate after restarting them all", kid)
	} else {
		old := ks.Active.ID
		kid, err := ks.Rotate(now)
		if err != nil {
			return "", err
		}
		msg = fmt.Sprintf("active key %s, %s retired (it still decrypts)", kid, old)
	}
	return msg, ks.Save(filepath.Join(dir, payloadcodec.KeySetFile))
}

// loadPayloadKeySet reads dir's payload key set; a keys directory made
// before payloads were encrypted has none, and is told how to add it.
func loadPayloadKeySet(dir string) (*payloadcodec.KeySet, error) {
	ks, err := payloadcodec.LoadKeySet(filepath.Join(dir, payloadcodec.KeySetFile))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("no payload key set in %s: create it with `p2p keys generate --keys-dir %s` (it keeps the signing keys)", dir, dir)
	}
	return ks, err
}
