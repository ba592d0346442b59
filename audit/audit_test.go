package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/audit/audittest"
	"github.com/p2p-payer/p2p/internal/rfc6962"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// backend opens a new, empty store and gives raw SQL access to its
// database that bypasses the append-only triggers: an attacker with
// database access.
type backend struct {
	name string
	open func(t *testing.T) audittest.DB
}

func backends(t *testing.T) []backend {
	bs := []backend{{name: "sqlite", open: audittest.OpenSQLite}}
	if os.Getenv("P2P_TEST_DATABASE_URL") != "" || os.Getenv("CI") == "true" {
		bs = append(bs, backend{name: "postgres", open: audittest.OpenPostgres})
	}
	return bs
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)

// fixture records 30 events: 10 transfers, then two changes each, with a
// checkpoint at 12 entries and one at 30, both also in the witness
// directory if it is not "".
func fixture(t *testing.T, s store.Store, signer *signing.Signer, witness string) {
	t.Helper()
	ctx := context.Background()
	cp := &audit.Checkpointer{Store: s, Signer: signer}
	if witness != "" {
		cp.Witness = audit.DirWitness{Dir: witness}
	}
	for i := range 10 {
		id := fmt.Sprintf("tr-%02d", i)
		_, err := s.CreateTransfer(ctx, store.NewTransfer{
			ClientID: "client-a", IdempotencyKey: "key-" + id, Fingerprint: "fp",
			Transfer: transfer.Transfer{ID: id, PartnerID: "sandbox", CorrelationID: id, State: transfer.StateInitiated,
				CreatedAt: base.Add(time.Duration(i) * time.Second)},
			Event: transfer.Event{Actor: "api", Type: "state", State: transfer.StateInitiated,
				Detail: map[string]any{"client_id": "client-a", "key_sha256": "ab12"}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round, st := range []transfer.State{transfer.StateIdentityPending, transfer.StateConsentVerified} {
		for i := range 10 {
			if round == 0 && i == 2 {
				if _, err := cp.Sign(ctx, base.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := s.ApplyChange(ctx, fmt.Sprintf("tr-%02d", i), store.Change{State: st, Event: transfer.Event{
				At: base.Add(time.Duration(20+round*10+i) * time.Second), State: st, Actor: "worker", Type: "state",
				Detail: map[string]any{"member_id": fmt.Sprintf("M%06d", i), "score": 9.25, "rule": "fs"}}})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cp.Sign(ctx, base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// newSigner is a new checkpoint signer and its public JWKS.
func newSigner(t *testing.T) (*signing.Signer, []byte) {
	t.Helper()
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := signer.PublicJWKS()
	if err != nil {
		t.Fatal(err)
	}
	return signer, jwks
}

// What the signer does with a tampered log (TestVerifyDetectsTampering).
const (
	signsGenuine = iota // signs, and its root is the one signed before the tampering
	refuses             // refuses with an *audit.InconsistentError
)

// TestVerifyDetectsTampering alters the database as an attacker with
// access to it would, past the triggers, and checks that Verify names the
// first position altered, and that the signer then either refuses or signs
// the genuine head, never a forged one.
func TestVerifyDetectsTampering(t *testing.T) {
	signer, jwks := newSigner(t)
	ev := func(pos int) string { return fmt.Sprintf("(SELECT event_id FROM audit_log WHERE position = %d)", pos) }
	truncate := func(db audittest.DB, n int, head bool) {
		db.Exec(fmt.Sprintf("DELETE FROM timeline_events WHERE id IN (SELECT event_id FROM audit_log WHERE position >= %d)", n))
		db.Exec(fmt.Sprintf("DELETE FROM audit_log WHERE position >= %d", n))
		if head {
			db.Exec(fmt.Sprintf("DELETE FROM audit_hashes WHERE idx >= %d", tlog.StoredHashIndex(0, int64(n))))
			db.Exec(fmt.Sprintf("UPDATE audit_head SET size = %d", n))
		}
	}
	rewrite := func(db audittest.DB) {
		db.Exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999","rule":"fs","score":9.25}' WHERE id = ` + ev(17))
		audittest.RebuildTree(t, db)
	}
	for _, b := range backends(t) {
		cases := []struct {
			name    string
			from    int64
			tamper  func(t *testing.T, db audittest.DB)
			trusted bool   // verify with the witness directory's checkpoints
			bad     int64  // -1: none; -2: a problem beyond the entries
			reason  string // in FirstBad's reason, or in a problem for -2
			sign    int    // signsGenuine or refuses
		}{
			{"untouched", 0, func(*testing.T, audittest.DB) {}, false, -1, "", signsGenuine},
			{"untouched, with the witness", 0, func(*testing.T, audittest.DB) {}, true, -1, "", signsGenuine},
			{"alter a byte", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE timeline_events SET actor = 'workeR' WHERE id = " + ev(17))
			}, false, 17, "event does not match its recorded leaf hash", signsGenuine},
			{"alter a detail and its leaf hash", 0, func(t *testing.T, db audittest.DB) {
				var ae store.AuditEvent
				if err := db.Store.AuditEvents(context.Background(), store.AuditFilter{FromPosition: 7, Limit: 1}, func(e store.AuditEvent) error { ae = e; return nil }); err != nil {
					t.Fatal(err)
				}
				ae.Event.Detail = map[string]any{"member_id": "M999999", "rule": "fs", "score": 9.25}
				h, err := audit.LeafHash(ae)
				if err != nil {
					t.Fatal(err)
				}
				db.Exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999","rule":"fs","score":9.25}' WHERE id = ` + ev(7))
				db.Exec("UPDATE audit_log SET leaf_hash = " + db.Blob(h) + " WHERE position = 7")
			}, false, 7, "the event's leaf differs from the tree's leaf at this position", signsGenuine},
			{"alter the partner an event recorded", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE timeline_events SET partner_id = 'other' WHERE id = " + ev(13))
			}, false, 13, "event does not match its recorded leaf hash", signsGenuine},
			{"delete a row", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("DELETE FROM timeline_events WHERE id = " + ev(11))
				db.Exec("DELETE FROM audit_log WHERE position = 11")
			}, false, 11, "entry missing (the next stored entry is at 12)", signsGenuine},
			{"delete an event only", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("DELETE FROM timeline_events WHERE id = " + ev(4))
			}, false, 4, "entry missing (the next stored entry is at 5)", signsGenuine},
			{"swap two rows", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE audit_log SET position = -1 WHERE position = 3")
				db.Exec("UPDATE audit_log SET position = 3 WHERE position = 9")
				db.Exec("UPDATE audit_log SET position = 9 WHERE position = -1")
			}, false, 3, "the event's leaf differs from the tree's leaf at this position", signsGenuine},
			{"swap two events' contents", 0, func(_ *testing.T, db audittest.DB) {
				// Through a value that encodes both ids: event_id is unique.
				db.Exec("UPDATE audit_log SET event_id = -(event_id * 1000000 + " + ev(26) + ") WHERE position = 21")
				db.Exec("UPDATE audit_log SET event_id = (SELECT -event_id FROM audit_log WHERE position = 21) / 1000000 WHERE position = 26")
				db.Exec("UPDATE audit_log SET event_id = (-event_id) % 1000000 WHERE position = 21")
			}, false, 21, "event does not match its recorded leaf hash", signsGenuine},
			{"truncate the tail", 0, func(_ *testing.T, db audittest.DB) { truncate(db, 25, false) }, false, 25, "entry missing: the log ends at 25, its head says 30", signsGenuine},
			{"truncate the tail and the tree", 0, func(_ *testing.T, db audittest.DB) { truncate(db, 25, true) }, false, 25, "the log ends at 25, before its signed checkpoint of size 30", refuses},
			{"truncate to before a checkpoint", 0, func(_ *testing.T, db audittest.DB) { truncate(db, 5, true) }, false, 5, "the log ends at 5, before its signed checkpoint of size 30", refuses},
			{"forge a checkpoint", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE audit_checkpoints SET size = 11 WHERE size = 12")
			}, false, -2, "checkpoint 1 (size 11): stored columns differ from its signed payload", signsGenuine},
			{"sign a wrong root", 0, func(t *testing.T, db audittest.DB) {
				putCheckpoint(t, db.Store, signer, 15, tlog.Hash{2}, "")
			}, false, 14, "entries 0..14 do not hash to the signed checkpoint of size 15", refuses},
			{"sign a wrong root before since", 20, func(t *testing.T, db audittest.DB) {
				putCheckpoint(t, db.Store, signer, 15, tlog.Hash{2}, "")
			}, false, -2, "the stored tree at size 15 differs from its signed checkpoint", refuses},
			{"a checkpoint whose signature does not verify", 0, func(t *testing.T, db audittest.DB) {
				putCheckpoint(t, db.Store, signer, 15, tlog.Hash{2}, "e30.e30.e30")
			}, false, -2, "checkpoint 3 (size 15, kid " + signer.KID() + "): ", signsGenuine},
			{"replace the tree's root hashes", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec(fmt.Sprintf("UPDATE audit_hashes SET hash = %s WHERE idx = %d", db.Blob(tlog.Hash{1}), tlog.StoredHashIndex(4, 0)))
			}, false, -2, "the stored tree at size 30 differs from the recomputed one", refuses},
			{"since skips an altered prefix", 20, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(2))
			}, false, -1, "", signsGenuine},
			{"since finds an alteration after it", 20, func(_ *testing.T, db audittest.DB) {
				db.Exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(22))
			}, false, 22, "event does not match its recorded leaf hash", signsGenuine},
			{"rewrite an event and rebuild the tree", 0, func(_ *testing.T, db audittest.DB) { rewrite(db) },
				false, 29, "entries 0..29 do not hash to the signed checkpoint of size 30", refuses},
			{"rewrite an event, rebuild the tree, delete the covering checkpoints", 0, func(_ *testing.T, db audittest.DB) {
				rewrite(db)
				db.Exec("DELETE FROM audit_checkpoints WHERE size >= 17")
			}, true, 29, "entries 0..29 do not hash to the signed checkpoint of size 30", refuses},
			{"rewrite an event, rebuild the tree, delete every checkpoint", 0, func(_ *testing.T, db audittest.DB) {
				rewrite(db)
				db.Exec("DELETE FROM audit_checkpoints")
			}, true, 29, "entries 0..29 do not hash to the signed checkpoint of size 30", refuses},
			{"rewrite before the witnessed checkpoints, rebuild, delete every checkpoint", 0, func(_ *testing.T, db audittest.DB) {
				db.Exec(`UPDATE timeline_events SET actor = 'x' WHERE id = ` + ev(3))
				audittest.RebuildTree(t, db)
				db.Exec("DELETE FROM audit_checkpoints")
			}, true, 11, "entries 0..11 do not hash to the signed checkpoint of size 12", refuses},
		}
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				db := b.open(t)
				witness := t.TempDir()
				fixture(t, db.Store, signer, witness)
				genuine, err := db.Store.LatestCheckpoint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				tc.tamper(t, db)
				o := audit.Options{From: tc.from}
				if tc.trusted {
					o.Trusted = witnessed(t, witness)
				}
				rep, err := audit.VerifyWith(ctx, db.Store, jwks, o)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				switch {
				case tc.bad == -1 && !rep.OK():
					t.Fatalf("untampered log fails: %+v %+v", rep.FirstBad, rep.Problems)
				case tc.bad == -2 && (rep.OK() || rep.FirstBad != nil):
					t.Fatalf("want a problem beyond the entries, got %+v %+v", rep.FirstBad, rep.Problems)
				case tc.bad >= 0 && (rep.FirstBad == nil || rep.FirstBad.Position != tc.bad):
					t.Fatalf("first bad = %+v (problems %v), want position %d", rep.FirstBad, rep.Problems, tc.bad)
				}
				if got := reason(rep); !strings.Contains(got, tc.reason) {
					t.Errorf("reason %q, want it to contain %q", got, tc.reason)
				}
				if tc.bad == -1 && (rep.Size != 30 || rep.Checkpoints != 2 || rep.Checked != 30-tc.from) {
					t.Errorf("report %+v", rep)
				}
				t.Logf("%+v %v", rep.FirstBad, rep.Problems)

				// Then someone asks for a checkpoint.
				cp := &audit.Checkpointer{Store: db.Store, Signer: signer, Witness: audit.DirWitness{Dir: witness}}
				got, err := cp.Sign(ctx, base.Add(2*time.Hour))
				switch tc.sign {
				case signsGenuine:
					if err != nil || got.Size != genuine.Size || got.Root != genuine.Root {
						t.Fatalf("Sign = size %d root %x, %v; want the genuine head (size %d root %x)", got.Size, got.Root, err, genuine.Size, genuine.Root)
					}
				case refuses:
					var ie *audit.InconsistentError
					if !errors.As(err, &ie) || !errors.Is(err, audit.ErrInconsistent) {
						t.Fatalf("Sign = size %d root %x, %v; want a refusal", got.Size, got.Root, err)
					}
					t.Logf("refused: %v", err)
				}
			})
		}
	}
}

// witnessed is every checkpoint of a witness directory, as trusted ones.
func witnessed(t *testing.T, dir string) []audit.Trusted {
	t.Helper()
	files, err := audit.DirWitness{Dir: dir}.Files()
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Trusted
	for _, f := range files {
		tr, err := audit.ReadTrusted(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tr)
	}
	if len(out) == 0 {
		t.Fatal("the witness directory holds no checkpoint")
	}
	return out
}

// reason is the first bad entry's reason, else the problems.
func reason(rep audit.Report) string {
	if rep.FirstBad != nil {
		return rep.FirstBad.Reason
	}
	return strings.Join(rep.Problems, "; ")
}

// putCheckpoint stores a checkpoint of the head (size, root) signed by
// signer, or with jws in place of the signature when it is not "": a
// forger with database access.
func putCheckpoint(t *testing.T, s store.Store, signer *signing.Signer, size int64, root tlog.Hash, jws string) {
	t.Helper()
	at := base.Add(2 * time.Hour)
	if jws == "" {
		payload, err := json.Marshal(audit.CheckpointPayload{V: audit.CheckpointVersion, Size: size,
			Root: base64.StdEncoding.EncodeToString(root[:]), Time: at.Format(time.RFC3339Nano)})
		if err != nil {
			t.Fatal(err)
		}
		if jws, err = signer.Sign(payload); err != nil {
			t.Fatal(err)
		}
	}
	c := store.Checkpoint{Size: size, Root: root, At: at, KID: signer.KID(), JWS: jws}
	if err := s.PutCheckpoint(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// TestProofsVerifyIndependently checks tree heads and inclusion proofs
// against RFC 6962 as written (§2.1 MTH, §2.1.1 audit paths, verified as
// RFC 9162 §2.1.3.2 says), without tlog.
func TestProofsVerifyIndependently(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t).Store
			signer, jwks := newSigner(t)
			fixture(t, s, signer, "")
			var leaves [][32]byte
			err := s.AuditEvents(ctx, store.AuditFilter{}, func(ae store.AuditEvent) error {
				data, err := audit.LeafData(ae)
				if err != nil {
					return err
				}
				leaves = append(leaves, sha256.Sum256(append([]byte{0}, data...)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(leaves) != 30 {
				t.Fatalf("%d leaves", len(leaves))
			}
			for n := 1; n <= len(leaves); n++ {
				h, err := audit.HeadAt(ctx, s, int64(n))
				if err != nil {
					t.Fatal(err)
				}
				root := rfc6962.MTH(leaves[:n])
				if h.Root != tlog.Hash(root) {
					t.Fatalf("size %d: root %x, RFC 6962 MTH %x", n, h.Root, root)
				}
				for m := 0; m < n; m++ {
					p, err := audit.Prove(ctx, s, int64(m), int64(n))
					if err != nil {
						t.Fatal(err)
					}
					path := make([][32]byte, len(p))
					for i := range p {
						path[i] = p[i]
					}
					if !rfc6962.VerifyInclusion(uint64(m), uint64(n), leaves[m], path, root) {
						t.Fatalf("proof of %d in %d does not verify", m, n)
					}
					if m+1 < n && rfc6962.VerifyInclusion(uint64(m+1), uint64(n), leaves[m], path, root) {
						t.Fatalf("proof of %d in %d verifies at %d", m, n, m+1)
					}
				}
			}
			cp, err := s.LatestCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			h, at, kid, err := audit.OpenCheckpoint(cp.JWS, jwks)
			if err != nil || h.Size != 30 || h.Root != tlog.Hash(rfc6962.MTH(leaves)) || kid != signer.KID() || !at.Equal(base.Add(time.Hour)) {
				t.Fatalf("checkpoint %+v %v %s: %v", h, at, kid, err)
			}
		})
	}
}

// TestVerifyLongLog verifies a log longer than a page and a comparison
// batch (1,024 entries), with a checkpoint inside the second batch, so that
// the batch boundaries are crossed.
func TestVerifyLongLog(t *testing.T) {
	const n = 1100
	signer, jwks := newSigner(t)
	for _, b := range backends(t) {
		db := b.open(t)
		blob := db.Blob
		cases := []struct {
			name   string
			from   int64
			tamper func(exec func(string))
			bad    int64 // -1: none
			reason string
		}{
			{"untouched", 0, func(func(string)) {}, -1, ""},
			{"untouched since", 1025, func(func(string)) {}, -1, ""},
			{"alter an event", 0, func(exec func(string)) {
				exec("UPDATE timeline_events SET actor = 'x' WHERE id = (SELECT event_id FROM audit_log WHERE position = 1090)")
			}, 1090, "event does not match its recorded leaf hash"},
			{"alter the tree's leaf", 1025, func(exec func(string)) {
				exec(fmt.Sprintf("UPDATE audit_hashes SET hash = %s WHERE idx = %d", blob(tlog.Hash{1}), tlog.StoredHashIndex(0, 1050)))
			}, 1050, "the event's leaf differs from the tree's leaf at this position"},
		}
		s, exec := db.Store, db.Exec
		ctx := context.Background()
		for i := range n {
			if i == 1030 {
				if _, err := audit.Checkpoint(ctx, s, signer, base); err != nil {
					t.Fatal(err)
				}
			}
			id := fmt.Sprintf("tr-%04d", i)
			_, err := s.CreateTransfer(ctx, store.NewTransfer{
				ClientID: "client-a", IdempotencyKey: id, Fingerprint: "fp",
				Transfer: transfer.Transfer{ID: id, PartnerID: "sandbox", CorrelationID: id, State: transfer.StateInitiated, CreatedAt: base},
				Event:    transfer.Event{Actor: "api", Type: "state", State: transfer.StateInitiated},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// The cases run in order on one store: each tampers further.
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				tc.tamper(exec)
				rep, err := audit.Verify(ctx, s, jwks, tc.from)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				switch {
				case tc.bad == -1 && (!rep.OK() || rep.Checked != n-tc.from || rep.Checkpoints != 1):
					t.Fatalf("untampered log: %+v", rep)
				case tc.bad >= 0 && (rep.FirstBad == nil || rep.FirstBad.Position != tc.bad || rep.FirstBad.Reason != tc.reason):
					t.Fatalf("first bad = %+v (problems %v), want position %d: %s", rep.FirstBad, rep.Problems, tc.bad, tc.reason)
				}
			})
		}
	}
}
