package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/audit/audittest"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// auditDB is a store for the CLI to verify, its --database-url, and raw
// SQL access past the append-only triggers: an attacker with access to
// the database.
type auditDB struct {
	st   store.Store
	url  string
	exec func(stmt string)
}

func openAuditSQLite(t *testing.T) auditDB {
	db := audittest.OpenSQLite(t)
	return auditDB{st: db.Store, url: db.URL, exec: db.Exec}
}

func openAuditPostgres(t *testing.T) auditDB {
	db := audittest.OpenPostgres(t)
	return auditDB{st: db.Store, url: db.URL, exec: db.Exec}
}

var auditBase = time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)

// auditFixture records 30 events (10 transfers, then two changes each),
// with a checkpoint at 12 entries and one at 30, both also in the witness
// directory.
func auditFixture(t *testing.T, s store.Store, signer *signing.Signer, witness string) {
	t.Helper()
	ctx := context.Background()
	cp := &audit.Checkpointer{Store: s, Signer: signer, Witness: audit.DirWitness{Dir: witness}}
	for i := range 10 {
		id := fmt.Sprintf("tr-%02d", i)
		_, err := s.CreateTransfer(ctx, store.NewTransfer{
			ClientID: "client-a", IdempotencyKey: "key-" + id, Fingerprint: "fp",
			Transfer: transfer.Transfer{ID: id, PartnerID: "sandbox", CorrelationID: id, State: transfer.StateInitiated,
				CreatedAt: auditBase.Add(time.Duration(i) * time.Second)},
			Event: transfer.Event{Actor: "api", Type: "state", State: transfer.StateInitiated},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round, st := range []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified} {
		for i := range 10 {
			if round == 0 && i == 2 {
				if _, err := cp.Sign(ctx, auditBase.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := s.ApplyChange(ctx, fmt.Sprintf("tr-%02d", i), store.Change{State: st, Event: transfer.Event{
				At: auditBase.Add(time.Duration(20+round*10+i) * time.Second), State: st, Actor: "worker", Type: "state",
				Detail: map[string]any{"member_id": fmt.Sprintf("M%06d", i), "score": 9.25}}})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cp.Sign(ctx, auditBase.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// runP2P runs this test binary as p2p with args and returns its stdout,
// stderr and exit code.
func runP2P(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "P2P_TEST_RUN_AS_P2P=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("running p2p %v: %v", args, err)
	return "", "", 0
}

// signWith signs a checkpoint payload of size and root with s.
func signWith(t *testing.T, s *signing.Signer, size int64, root []byte) string {
	t.Helper()
	p, _ := json.Marshal(audit.CheckpointPayload{V: audit.CheckpointVersion, Size: size,
		Root: base64.StdEncoding.EncodeToString(root), Time: "2026-01-02T05:00:00.000000Z"})
	jws, err := s.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// TestAuditVerifyCLI runs `p2p audit verify` as a process against a store
// altered as an attacker with database access would, past the triggers:
// every alteration makes it exit non-zero and name what it found.
func TestAuditVerifyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs p2p processes")
	}
	dir := t.TempDir()
	// The key is written where --signing-key reads it.
	keyPath := filepath.Join(dir, "key.jwk")
	signer, err := signing.LoadOrCreate(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := signer.PublicJWKS()
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	attacker, _ := signing.Generate()
	forgedPath := filepath.Join(dir, "forged-checkpoint.json")
	if err := os.WriteFile(forgedPath, []byte(signWith(t, attacker, 30, make([]byte, 32))), 0o600); err != nil {
		t.Fatal(err)
	}

	ev := func(pos int) string { return fmt.Sprintf("(SELECT event_id FROM audit_log WHERE position = %d)", pos) }
	type db = auditDB
	opens := []struct {
		name string
		open func(*testing.T) auditDB
	}{{"sqlite", openAuditSQLite}}
	if os.Getenv("P2P_TEST_DATABASE_URL") != "" {
		opens = append(opens, struct {
			name string
			open func(*testing.T) auditDB
		}{"postgres", openAuditPostgres})
	}
	// Saved outside the database before any tampering: the latest
	// checkpoint as GET /v1/audit/checkpoint answers it.
	trustedPath := filepath.Join(dir, "trusted-checkpoint.json")
	rewrite := func(t *testing.T, d db) {
		d.exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999","score":9.25}' WHERE id = ` + ev(17))
		audittest.RebuildTree(t, audittest.DB{Store: d.st, URL: d.url, Exec: d.exec})
		d.exec("DELETE FROM audit_checkpoints WHERE size >= 17")
	}
	cases := []struct {
		name   string
		args   []string
		tamper func(t *testing.T, d db)
		want   string // in stdout; "" with exit 0
	}{
		{"untouched", nil, func(*testing.T, db) {}, ""},
		{"untouched, with the trusted checkpoint", []string{"--trusted-checkpoint", trustedPath}, func(*testing.T, db) {}, ""},
		{"untouched, with the witness", []string{"--witness", "WITNESS"}, func(*testing.T, db) {}, ""},
		{"rewrite an event, rebuild the tree, delete the covering checkpoints; with the trusted checkpoint", []string{"--trusted-checkpoint", trustedPath}, rewrite,
			"first bad entry at position 29 (transfer tr-09, seq 3, type state): entries 0..29 do not hash to the signed checkpoint of size 30"},
		{"rewrite an event, rebuild the tree, delete the covering checkpoints; with the witness", []string{"--witness", "WITNESS"}, rewrite,
			"first bad entry at position 29 (transfer tr-09, seq 3, type state): entries 0..29 do not hash to the signed checkpoint of size 30"},
		{"a trusted checkpoint by another key", []string{"--trusted-checkpoint", "FORGED"}, func(*testing.T, db) {},
			"trusted checkpoint FORGED: signing: unknown kid"},
		{"stale", []string{"--max-age", "1h"}, func(*testing.T, db) {}, "the newest signed checkpoint (size 30, 2026-01-02T04:04:05Z) is older than 1h0m0s"},
		{"no checkpoint", nil, func(_ *testing.T, d db) { d.exec("DELETE FROM audit_checkpoints") }, "no signed checkpoint"},
		{"untouched since a position", []string{"--since", "20"}, func(*testing.T, db) {}, ""},
		{"alter one byte of an event", nil, func(_ *testing.T, d db) {
			d.exec("UPDATE timeline_events SET actor = 'workeR' WHERE id = " + ev(17))
		}, "first bad entry at position 17 (transfer tr-07, seq 2, type state): event does not match its recorded leaf hash"},
		{"delete a row", nil, func(_ *testing.T, d db) {
			d.exec("DELETE FROM timeline_events WHERE id = " + ev(11))
			d.exec("DELETE FROM audit_log WHERE position = 11")
		}, "first bad entry at position 11 (no event is stored there): entry missing"},
		{"swap two rows", nil, func(_ *testing.T, d db) {
			d.exec("UPDATE audit_log SET position = -1 WHERE position = 3")
			d.exec("UPDATE audit_log SET position = 3 WHERE position = 9")
			d.exec("UPDATE audit_log SET position = 9 WHERE position = -1")
		}, "first bad entry at position 3 (transfer tr-09, seq 1, type state): the event's leaf differs from the tree's leaf"},
		{"truncate the tail", nil, func(_ *testing.T, d db) {
			d.exec("DELETE FROM timeline_events WHERE id IN (SELECT event_id FROM audit_log WHERE position >= 25)")
			d.exec("DELETE FROM audit_log WHERE position >= 25")
		}, "first bad entry at position 25 (no event is stored there): entry missing"},
		{"truncate the tail, the tree and the head", nil, func(_ *testing.T, d db) {
			d.exec("DELETE FROM timeline_events WHERE id IN (SELECT event_id FROM audit_log WHERE position >= 25)")
			d.exec("DELETE FROM audit_log WHERE position >= 25")
			d.exec("DELETE FROM audit_hashes WHERE idx >= 48") // tlog.StoredHashIndex(0, 25)
			d.exec("UPDATE audit_head SET size = 25")
		}, "first bad entry at position 25 (no event is stored there): the log ends at 25, before its signed checkpoint of size 30"},
		{"forged checkpoint signature", nil, func(t *testing.T, d db) {
			cp, err := d.st.LatestCheckpoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// The attacker's own signature over the true head, under our kid.
			forged := signWith(t, attacker, cp.Size, cp.Root[:])
			parts, ours := strings.Split(forged, "."), strings.Split(cp.JWS, ".")
			d.exec(fmt.Sprintf("UPDATE audit_checkpoints SET jws = '%s' WHERE size = 30", ours[0]+"."+ours[1]+"."+parts[2]))
		}, "checkpoint 2 (size 30, kid " + signer.KID() + "): signing: signature does not verify"},
		{"checkpoint by an unknown key", nil, func(t *testing.T, d db) {
			cp, _ := d.st.LatestCheckpoint(context.Background())
			if err := d.st.PutCheckpoint(context.Background(), store.Checkpoint{Size: cp.Size, Root: cp.Root, At: cp.At,
				KID: attacker.KID(), JWS: signWith(t, attacker, cp.Size, cp.Root[:])}); err != nil {
				t.Fatal(err)
			}
		}, "signing: unknown kid"},
		{"signed checkpoint whose root disagrees", nil, func(t *testing.T, d db) {
			root := bytes.Repeat([]byte{7}, 32)
			c := store.Checkpoint{Size: 20, At: auditBase, KID: signer.KID(), JWS: signWith(t, signer, 20, root)}
			copy(c.Root[:], root)
			if err := d.st.PutCheckpoint(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}, "first bad entry at position 19 (transfer tr-09, seq 2, type state): entries 0..19 do not hash to the signed checkpoint of size 20"},
		{"stored columns differ from the signed checkpoint", nil, func(_ *testing.T, d db) {
			d.exec("UPDATE audit_checkpoints SET size = 11 WHERE size = 12")
		}, "checkpoint 1 (size 11): stored columns differ from its signed payload"},
		{"rewrite an event and rebuild the whole tree", nil, func(t *testing.T, d db) {
			// Only the signed checkpoints can tell: every stored hash agrees.
			d.exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999","score":9.25}' WHERE id = ` + ev(17))
			audittest.RebuildTree(t, audittest.DB{Store: d.st, URL: d.url, Exec: d.exec})
		}, "first bad entry at position 29 (transfer tr-09, seq 3, type state): entries 0..29 do not hash to the signed checkpoint of size 30"},
		{"since finds an alteration after it", []string{"--since", auditBase.Add(35 * time.Second).Format(time.RFC3339)}, func(_ *testing.T, d db) {
			d.exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(27))
		}, "first bad entry at position 27"},
	}
	for _, o := range opens {
		for _, tc := range cases {
			t.Run(o.name+"/"+tc.name, func(t *testing.T) {
				d := o.open(t)
				witness := t.TempDir()
				auditFixture(t, d.st, signer, witness)
				latest, err := d.st.LatestCheckpoint(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				saved, _ := json.Marshal(audit.Saved(latest))
				if err := os.WriteFile(trustedPath, saved, 0o600); err != nil {
					t.Fatal(err)
				}
				tc.tamper(t, d)
				// One half of the cases find the JWKS from the key, the other
				// from a file. The fixture's checkpoints are from January:
				// only the freshness cases ask for recent ones.
				args := []string{"audit", "verify", "--database-url", d.url, "--max-age", "0"}
				for _, a := range tc.args {
					a = strings.NewReplacer("WITNESS", witness, "FORGED", forgedPath).Replace(a)
					args = append(args, a)
				}
				tc.want = strings.ReplaceAll(tc.want, "FORGED", forgedPath)
				if len(tc.name)%2 == 0 {
					args = append(args, "--signing-key", keyPath)
				} else {
					args = append(args, "--jwks", jwksPath)
				}
				stdout, stderr, code := runP2P(t, args...)
				t.Logf("exit %d\n%s%s", code, stdout, stderr)
				if tc.want == "" {
					if code != 0 || !strings.Contains(stdout, "audit verify: OK: 30 entries") || !strings.Contains(stdout, "2 checkpoints verified") {
						t.Fatalf("untampered log: exit %d, stdout %q stderr %q", code, stdout, stderr)
					}
					return
				}
				if code == 0 {
					t.Fatalf("tampered log verifies: %q", stdout)
				}
				if !strings.Contains(stdout, tc.want) {
					t.Fatalf("stdout %q does not say %q", stdout, tc.want)
				}
			})
		}
	}
}

// TestAuditVerifyNeedsAJWKS: without a key or a JWKS the command says
// what to give it instead of verifying nothing.
func TestAuditVerifyNeedsAJWKS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2p.db")
	var out, errOut bytes.Buffer
	err := runAuditVerify(context.Background(), []string{"--database-url", path, "--signing-key", ""}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--jwks") {
		t.Fatalf("err = %v", err)
	}
}
