package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/signing"
)

// keysList reads `p2p keys list` into purpose → state → kids.
func keysList(t *testing.T, dir string) map[string]map[string][]string {
	t.Helper()
	out, stderr, code := run(t, "keys", "list", "--keys-dir", dir)
	if code != 0 {
		t.Fatalf("keys list: exit %d: %s", code, stderr)
	}
	got := map[string]map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if got[f[0]] == nil {
			got[f[0]] = map[string][]string{}
		}
		got[f[0]][f[1]] = append(got[f[0]][f[1]], f[2])
	}
	return got
}

// TestKeysCLI walks the key sets through generate, list, a prepared
// rotation and a direct one, and a migration from the single old key.
func TestKeysCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	first, _, code := run(t, "keys", "generate", "--keys-dir", dir)
	if code != 0 || strings.Count(first, " created ") != 4 {
		t.Fatalf("generate: exit %d: %s", code, first)
	}
	before := keysList(t, dir)
	second, _, code := run(t, "keys", "generate", "--keys-dir", dir)
	if code != 0 || strings.Count(second, "exists: kept") != 4 || !strings.Contains(second, before["manifest"]["active"][0]) ||
		!strings.Contains(second, before["payload"]["active"][0]) {
		t.Fatalf("second generate: exit %d: %s", code, second)
	}
	kids := map[string]bool{}
	for _, p := range append(signing.Purposes, "payload") {
		for _, k := range before[string(p)]["active"] {
			kids[k] = true
		}
	}
	if len(kids) != 4 {
		t.Fatalf("the purposes share keys: %v", before)
	}

	out, _, code := run(t, "keys", "rotate", "--keys-dir", dir, "--purpose", "manifest", "--prepare")
	prepared := keysList(t, dir)["manifest"]["next"]
	if code != 0 || len(prepared) != 1 || !strings.Contains(out, prepared[0]) {
		t.Fatalf("prepare: exit %d: %s", code, out)
	}
	out, _, code = run(t, "keys", "rotate", "--keys-dir", dir, "--purpose", "manifest")
	after := keysList(t, dir)
	if code != 0 || after["manifest"]["active"][0] != prepared[0] || after["manifest"]["retired"][0] != before["manifest"]["active"][0] ||
		after["manifest"]["next"] != nil || after["token"]["active"][0] != before["token"]["active"][0] {
		t.Fatalf("rotate: exit %d: %s\nbefore %v\nafter %v", code, out, before, after)
	}
	// The payload keys: prepared, then rotated; the retired key is kept
	// (it decrypts what Temporal still holds).
	out, _, code = run(t, "keys", "rotate", "--keys-dir", dir, "--purpose", "payload", "--prepare")
	nextPayload := keysList(t, dir)["payload"]["next"]
	if code != 0 || len(nextPayload) != 1 || !strings.Contains(out, nextPayload[0]) {
		t.Fatalf("prepare payload: exit %d: %s", code, out)
	}
	out, _, code = run(t, "keys", "rotate", "--keys-dir", dir, "--purpose", "payload")
	if p := keysList(t, dir)["payload"]; code != 0 || p["active"][0] != nextPayload[0] || len(p["retired"]) != 1 || p["retired"][0] != before["payload"]["active"][0] ||
		keysList(t, dir)["manifest"]["active"][0] != after["manifest"]["active"][0] {
		t.Fatalf("rotate payload: exit %d: %s %v", code, out, p)
	}
	out, _, code = run(t, "keys", "rotate", "--keys-dir", dir, "--purpose", "all")
	if all := keysList(t, dir); code != 0 || len(all["manifest"]["retired"]) != 2 || len(all["checkpoint"]["retired"]) != 1 || len(all["token"]["retired"]) != 1 ||
		len(all["payload"]["retired"]) != 2 {
		t.Fatalf("rotate all: exit %d: %s %v", code, out, all)
	}
	listed, _, _ := run(t, "keys", "list", "--keys-dir", dir)
	if !regexp.MustCompile(`checkpoint\s+retired\s+\S+\s+\S+\s+for ever`).MatchString(listed) ||
		!regexp.MustCompile(`token\s+retired\s+\S+\s+\S+\s+\d{4}-`).MatchString(listed) {
		t.Errorf("list does not say how long retired keys are published:\n%s", listed)
	}

	// A keys directory from before payloads were encrypted.
	signingOnly := filepath.Join(t.TempDir(), "keys")
	if _, err := signing.CreateKeySets(signingOnly, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"rotate without a purpose", []string{"keys", "rotate", "--keys-dir", dir}, 2, "--purpose are required"},
		{"rotate an unknown purpose", []string{"keys", "rotate", "--keys-dir", dir, "--purpose", "receipts"}, 2, "unknown key purpose"},
		{"rotate a missing directory", []string{"keys", "rotate", "--keys-dir", dir + "-missing", "--purpose", "token"}, 1, "no such file"},
		{"generate without a directory", []string{"keys", "generate"}, 2, "--keys-dir"},
		{"list without a directory", []string{"keys", "list"}, 2, "--keys-dir"},
		{"rotate payload keys never generated", []string{"keys", "rotate", "--keys-dir", signingOnly, "--purpose", "all"}, 1, "p2p keys generate --keys-dir " + signingOnly},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("P2P_KEYS_DIR", "")
			_, stderr, code := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d: %s", code, stderr)
			}
		})
	}
}

// TestKeysGenerateFromSigningKey: the single key of before is kept as a
// retired key of the manifest and checkpoint sets, so `p2p audit verify`
// still verifies the checkpoints it signed from the new keys directory.
func TestKeysGenerateFromSigningKey(t *testing.T) {
	tmp := t.TempDir()
	legacyPath := filepath.Join(tmp, "signing-key.jwk")
	legacy, err := signing.LoadOrCreate(legacyPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "keys")
	out, _, code := run(t, "keys", "generate", "--keys-dir", dir, "--from-signing-key", legacyPath)
	if code != 0 || !strings.Contains(out, legacy.KID()) {
		t.Fatalf("exit %d: %s", code, out)
	}
	got := keysList(t, dir)
	for p, want := range map[string]bool{"manifest": true, "checkpoint": true, "token": false} {
		if has := len(got[p]["retired"]) == 1 && got[p]["retired"][0] == legacy.KID(); has != want {
			t.Errorf("%s: old key retired %v, want %v", p, has, want)
		}
	}
	// A checkpoint the old key signed verifies with the new set's JWKS.
	sig, err := legacy.Sign([]byte(`{"v":"p2p-audit-checkpoint/1","size":1,"root":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","time":"2026-01-01T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := loadJWKS(context.Background(), "", dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, kid, err := audit.OpenCheckpoint(sig, jwks); err != nil || kid != legacy.KID() {
		t.Fatalf("old checkpoint: kid %s err %v", kid, err)
	}
	if err := os.Chmod(legacyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, "keys", "generate", "--keys-dir", filepath.Join(tmp, "keys2"), "--from-signing-key", legacyPath)
	if code != 1 || !strings.Contains(stderr, "chmod 600") {
		t.Errorf("a world-readable old key: exit %d: %s", code, stderr)
	}
}

// TestKeysStartupErrors: api and worker refuse to start without usable
// keys or Temporal credentials, saying what to do, before any network
// call.
func TestKeysStartupErrors(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "P2P_") {
			t.Setenv(k, "")
		}
	}
	data := t.TempDir()
	db := filepath.Join(data, "p2p.db")
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := signing.CreateKeySets(keys, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	signingOnly := filepath.Join(t.TempDir(), "keys")
	if _, err := signing.CreateKeySets(signingOnly, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := payloadcodec.CreateKeySet(keys); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "keys")
	if _, err := signing.CreateKeySets(open, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(open, signing.KeySetFile(signing.Checkpoint)), 0o640); err != nil {
		t.Fatal(err)
	}
	inData := filepath.Join(data, "keys")
	if _, err := signing.CreateKeySets(inData, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	registry := filepath.Join(data, "partners.yaml")
	if err := os.WriteFile(registry, []byte("partners:\n- {id: p, push_url: 'http://p.invalid/exports'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--database-url", db, "--partners", registry, "--temporal-address", "127.0.0.1:1"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no keys", nil, nil, "no manifest signing key: set P2P_KEYS_DIR"},
		{"only the old single key", map[string]string{"P2P_SIGNING_KEY": "/etc/p2p/key.jwk"}, nil,
			"p2p keys generate --keys-dir DIR --from-signing-key /etc/p2p/key.jwk"},
		{"a key file others may read", nil, []string{"--keys-dir", open}, "chmod 600"},
		{"keys in the data directory", nil, []string{"--keys-dir", inData}, "lies in the data directory"},
		{"keys in the import directory", nil, []string{"--keys-dir", keys, "--import-dir", filepath.Dir(keys)}, "lies in the data directory"},
		{"a key in the environment that is no key", map[string]string{"P2P_MANIFEST_KEY": "hunter2"}, []string{"--keys-dir", keys}, "P2P_MANIFEST_KEY: signing: key is neither"},
		{"no payload key", nil, []string{"--keys-dir", signingOnly}, "no payload key in " + signingOnly + ", and Temporal payloads are never sent unencrypted"},
		{"a payload key in the environment that is no key", map[string]string{"P2P_PAYLOAD_KEY": "hunter2"}, []string{"--keys-dir", keys}, "P2P_PAYLOAD_KEY: payloadcodec: the payload key is not JSON"},
		{"a missing Temporal CA", nil, []string{"--keys-dir", keys, "--temporal-tls-ca-file", missing}, "P2P_TEMPORAL_TLS_CA_FILE: open " + missing},
		{"a Temporal CA that is no certificate", nil, []string{"--keys-dir", keys, "--temporal-tls-ca-file", garbage}, "holds no PEM certificate"},
		{"a Temporal client certificate without its key", nil, []string{"--keys-dir", keys, "--temporal-tls-cert-file", garbage}, "go together"},
		{"a bad Temporal client certificate", nil, []string{"--keys-dir", keys, "--temporal-tls-cert-file", garbage, "--temporal-tls-key-file", garbage}, "client certificate " + garbage},
		{"a missing Temporal API key file", nil, []string{"--keys-dir", keys, "--temporal-api-key-file", missing}, "P2P_TEMPORAL_API_KEY_FILE"},
		{"an API key twice", map[string]string{"P2P_TEMPORAL_API_KEY": "k"}, []string{"--keys-dir", keys, "--temporal-api-key-file", garbage}, "not both"},
	}
	for _, tt := range tests {
		for _, cmd := range []string{"api", "worker"} {
			if cmd == "api" && strings.Contains(tt.name, "import directory") {
				continue // the API takes no --import-dir
			}
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				for k, v := range tt.env {
					t.Setenv(k, v)
				}
				args := append(append([]string(nil), base...), tt.args...)
				var err error
				if cmd == "api" {
					_, _, _, err = newAPI(context.Background(), args, io.Discard, io.Discard)
				} else {
					_, _, err = newWorker(context.Background(), args, io.Discard, io.Discard)
				}
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
			})
		}
	}
}
