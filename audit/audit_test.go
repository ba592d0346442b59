package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
	open func(t *testing.T) (store.Store, func(stmt string))
	blob func(h tlog.Hash) string // a SQL literal of bytes
}

func backends(t *testing.T) []backend {
	bs := []backend{{name: "sqlite", open: openSQLite, blob: func(h tlog.Hash) string { return "X'" + hex.EncodeToString(h[:]) + "'" }}}
	if os.Getenv("P2P_TEST_DATABASE_URL") != "" {
		bs = append(bs, backend{name: "postgres", open: openPostgres, blob: func(h tlog.Hash) string {
			return "decode('" + hex.EncodeToString(h[:]) + "', 'hex')"
		}})
	}
	return bs
}

func openSQLite(t *testing.T) (store.Store, func(string)) {
	db := audittest.OpenSQLite(t)
	return db.Store, db.Exec
}

func openPostgres(t *testing.T) (store.Store, func(string)) {
	db := audittest.OpenPostgres(t)
	return db.Store, db.Exec
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)

// fixture records 30 events: 10 transfers, then two changes each, with a
// checkpoint at 12 entries and one at 30.
func fixture(t *testing.T, s store.Store, signer *signing.Signer) {
	t.Helper()
	ctx := context.Background()
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
				if _, err := audit.Checkpoint(ctx, s, signer, base.Add(time.Minute)); err != nil {
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
	if _, err := audit.Checkpoint(ctx, s, signer, base.Add(time.Hour)); err != nil {
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

// TestVerifyDetectsTampering alters the database as an attacker with
// access to it would, past the triggers, and checks that Verify names the
// first position altered.
func TestVerifyDetectsTampering(t *testing.T) {
	signer, jwks := newSigner(t)
	ev := func(pos int) string { return fmt.Sprintf("(SELECT event_id FROM audit_log WHERE position = %d)", pos) }
	truncate := func(exec func(string), n int, head bool) {
		exec(fmt.Sprintf("DELETE FROM timeline_events WHERE id IN (SELECT event_id FROM audit_log WHERE position >= %d)", n))
		exec(fmt.Sprintf("DELETE FROM audit_log WHERE position >= %d", n))
		if head {
			exec(fmt.Sprintf("DELETE FROM audit_hashes WHERE idx >= %d", tlog.StoredHashIndex(0, int64(n))))
			exec(fmt.Sprintf("UPDATE audit_head SET size = %d", n))
		}
	}
	for _, b := range backends(t) {
		cases := []struct {
			name   string
			from   int64
			tamper func(t *testing.T, s store.Store, exec func(string))
			bad    int64  // -1: none; -2: a problem beyond the entries
			reason string // in FirstBad's reason, or in a problem for -2
		}{
			{"untouched", 0, func(*testing.T, store.Store, func(string)) {}, -1, ""},
			{"alter a byte", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("UPDATE timeline_events SET actor = 'workeR' WHERE id = " + ev(17))
			}, 17, "event does not match its recorded leaf hash"},
			{"alter a detail and its leaf hash", 0, func(t *testing.T, s store.Store, exec func(string)) {
				var ae store.AuditEvent
				if err := s.AuditEvents(context.Background(), store.AuditFilter{FromPosition: 7, Limit: 1}, func(e store.AuditEvent) error { ae = e; return nil }); err != nil {
					t.Fatal(err)
				}
				ae.Event.Detail = map[string]any{"member_id": "M999999", "rule": "fs", "score": 9.25}
				h, err := audit.LeafHash(ae.TransferID, ae.Event)
				if err != nil {
					t.Fatal(err)
				}
				exec(`UPDATE timeline_events SET detail = '{"member_id":"M999999","rule":"fs","score":9.25}' WHERE id = ` + ev(7))
				exec("UPDATE audit_log SET leaf_hash = " + b.blob(h) + " WHERE position = 7")
			}, 7, "the event's leaf differs from the tree's leaf at this position"},
			{"delete a row", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("DELETE FROM timeline_events WHERE id = " + ev(11))
				exec("DELETE FROM audit_log WHERE position = 11")
			}, 11, "entry missing (the next stored entry is at 12)"},
			{"delete an event only", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("DELETE FROM timeline_events WHERE id = " + ev(4))
			}, 4, "entry missing (the next stored entry is at 5)"},
			{"swap two rows", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("UPDATE audit_log SET position = -1 WHERE position = 3")
				exec("UPDATE audit_log SET position = 3 WHERE position = 9")
				exec("UPDATE audit_log SET position = 9 WHERE position = -1")
			}, 3, "the event's leaf differs from the tree's leaf at this position"},
			{"swap two events' contents", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				// Through a value that encodes both ids: event_id is unique.
				exec("UPDATE audit_log SET event_id = -(event_id * 1000000 + " + ev(26) + ") WHERE position = 21")
				exec("UPDATE audit_log SET event_id = (SELECT -event_id FROM audit_log WHERE position = 21) / 1000000 WHERE position = 26")
				exec("UPDATE audit_log SET event_id = (-event_id) % 1000000 WHERE position = 21")
			}, 21, "event does not match its recorded leaf hash"},
			{"truncate the tail", 0, func(_ *testing.T, _ store.Store, exec func(string)) { truncate(exec, 25, false) }, 25, "entry missing: the log ends at 25, its head says 30"},
			{"truncate the tail and the tree", 0, func(_ *testing.T, _ store.Store, exec func(string)) { truncate(exec, 25, true) }, 25, "the log ends at 25, before its signed checkpoint of size 30"},
			{"truncate to before a checkpoint", 0, func(_ *testing.T, _ store.Store, exec func(string)) { truncate(exec, 5, true) }, 5, "the log ends at 5, before its signed checkpoint of size 30"},
			{"forge a checkpoint", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("UPDATE audit_checkpoints SET size = 11 WHERE size = 12")
			}, -2, "checkpoint 1 (size 11): stored columns differ from its signed payload"},
			{"sign a wrong root", 0, func(t *testing.T, s store.Store, _ func(string)) {
				putCheckpoint(t, s, signer, 15, tlog.Hash{2}, "")
			}, 14, "entries 0..14 do not hash to the signed checkpoint of size 15"},
			{"sign a wrong root before since", 20, func(t *testing.T, s store.Store, _ func(string)) {
				putCheckpoint(t, s, signer, 15, tlog.Hash{2}, "")
			}, -2, "the stored tree at size 15 differs from its signed checkpoint"},
			{"a checkpoint whose signature does not verify", 0, func(t *testing.T, s store.Store, _ func(string)) {
				putCheckpoint(t, s, signer, 15, tlog.Hash{2}, "e30.e30.e30")
			}, -2, "checkpoint 3 (size 15, kid " + signer.KID() + "): "},
			{"replace the tree's root hashes", 0, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec(fmt.Sprintf("UPDATE audit_hashes SET hash = %s WHERE idx = %d", b.blob(tlog.Hash{1}), tlog.StoredHashIndex(4, 0)))
			}, -2, "the stored tree at size 30 differs from the recomputed one"},
			{"since skips an altered prefix", 20, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(2))
			}, -1, ""},
			{"since finds an alteration after it", 20, func(_ *testing.T, _ store.Store, exec func(string)) {
				exec("UPDATE timeline_events SET actor = 'x' WHERE id = " + ev(22))
			}, 22, "event does not match its recorded leaf hash"},
		}
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				s, exec := b.open(t)
				fixture(t, s, signer)
				tc.tamper(t, s, exec)
				rep, err := audit.Verify(context.Background(), s, jwks, tc.from)
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
			})
		}
	}
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
			s, _ := b.open(t)
			signer, jwks := newSigner(t)
			fixture(t, s, signer)
			var leaves [][32]byte
			err := s.AuditEvents(ctx, store.AuditFilter{}, func(ae store.AuditEvent) error {
				data, err := audit.LeafData(ae.TransferID, ae.Event)
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
				exec(fmt.Sprintf("UPDATE audit_hashes SET hash = %s WHERE idx = %d", b.blob(tlog.Hash{1}), tlog.StoredHashIndex(0, 1050)))
			}, 1050, "the event's leaf differs from the tree's leaf at this position"},
		}
		s, exec := b.open(t)
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
