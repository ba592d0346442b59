package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/store"
)

// Finding is the first entry of the log that fails verification.
type Finding struct {
	Position int64
	Reason   string
}

// Report is what Verify found.
type Report struct {
	From        int64     // first position recomputed; the stored tree is trusted before it
	Size        int64     // entries the store says it holds
	Checked     int64     // entries recomputed
	Root        tlog.Hash // recomputed root of the first From+Checked entries
	Checkpoints int       // stored checkpoints checked
	Trusted     int       // checkpoints kept outside the database checked
	// Newest is the time of the newest checkpoint whose signature
	// verifies, stored or trusted, and NewestSize its size; zero: none.
	Newest     time.Time
	NewestSize int64
	FirstBad   *Finding // the first bad position, if any
	Problems   []string // what is wrong beyond an entry: checkpoints, the stored tree, freshness
}

// Options are what VerifyWith checks beyond the stored log.
type Options struct {
	// From is the first position recomputed; the stored tree is trusted
	// before it (and checked against the checkpoints inside it).
	From int64
	// Trusted are checkpoints kept outside the database: each must verify
	// and the log must reach and agree with it, as with a stored one.
	Trusted []Trusted
	// RequireCheckpoint fails a log with no checkpoint that verifies.
	RequireCheckpoint bool
	// MaxAge, when positive, fails a log whose newest checkpoint that
	// verifies was signed more than MaxAge before Now.
	MaxAge time.Duration
	Now    time.Time
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return r.FirstBad == nil && len(r.Problems) == 0 }

// leafBatch is how many recomputed leaves are compared with the stored
// tree per query, and how many entries are read per page.
const leafBatch = 1024

// Verify recomputes the audit log from position from on: every leaf from
// its stored event, the tree from the leaves, compared with each entry's
// stored leaf, with the stored tree, and with every stored checkpoint,
// whose signatures it checks against jwks. The positions before from are
// taken from the stored tree. It reports the first bad position; an error
// means it could not read the store.
func Verify(ctx context.Context, s store.AuditLog, jwks []byte, from int64) (Report, error) {
	return VerifyWith(ctx, s, jwks, Options{From: from})
}

// VerifyWith is Verify with checkpoints kept outside the database and a
// freshness requirement (Options).
func VerifyWith(ctx context.Context, s store.AuditLog, jwks []byte, o Options) (Report, error) {
	size, err := s.AuditSize(ctx)
	if err != nil {
		return Report{}, err
	}
	from := max(0, min(o.From, size))
	v := &verifier{ctx: ctx, s: s, rep: Report{From: from, Size: size}, next: from, pendingFrom: from}
	if err := v.openCheckpoints(jwks); err != nil {
		return v.rep, err
	}
	v.openTrusted(o.Trusted, jwks)
	v.fresh(o)
	if err := v.trustPrefix(); err != nil {
		return v.rep, err
	}
	if err := v.entries(); err != nil {
		return v.rep, err
	}
	return v.report()
}

// verifier is one run of Verify: what it has recomputed so far and what
// it has found.
type verifier struct {
	ctx context.Context
	s   store.AuditLog
	rep Report

	// signed are the heads of the checkpoints whose signatures verify, by
	// size; sizes are their sizes, ascending, and sizes[nextSize] the next
	// one beyond the entries recomputed so far.
	signed   map[int64][]Head
	sizes    []int64
	nextSize int

	next        int64         // the position of the next entry to recompute
	tree        *compactRange // the tree of the entries before next
	pending     []tlog.Hash   // recomputed leaves not yet compared with the stored tree…
	pendingFrom int64         // …from this position on
}

// bad records a bad position, keeping the first.
func (v *verifier) bad(pos int64, format string, args ...any) {
	if v.rep.FirstBad == nil || pos < v.rep.FirstBad.Position {
		v.rep.FirstBad = &Finding{Position: pos, Reason: fmt.Sprintf(format, args...)}
	}
}

// problem records something wrong beyond an entry.
func (v *verifier) problem(format string, args ...any) {
	v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, args...))
}

// openCheckpoints checks every stored checkpoint's signature and that its
// columns are what it signs, and keeps the heads of those that verify.
func (v *verifier) openCheckpoints(jwks []byte) error {
	cps, err := v.s.Checkpoints(v.ctx)
	if err != nil {
		return err
	}
	v.signed = map[int64][]Head{}
	for i, c := range cps {
		v.rep.Checkpoints++
		h, at, kid, err := OpenCheckpoint(c.JWS, jwks)
		switch {
		case err != nil:
			v.problem("checkpoint %d (size %d, kid %s): %v", i+1, c.Size, c.KID, err)
			continue
		case h != Head{Size: c.Size, Root: c.Root} || kid != c.KID:
			v.problem("checkpoint %d (size %d): stored columns differ from its signed payload", i+1, c.Size)
		}
		v.sign(h, at)
	}
	return nil
}

// sign keeps a verified checkpoint's head, to be checked against the log.
func (v *verifier) sign(h Head, at time.Time) {
	if _, ok := v.signed[h.Size]; !ok {
		v.sizes = append(v.sizes, h.Size)
		slices.Sort(v.sizes)
	}
	v.signed[h.Size] = append(v.signed[h.Size], h)
	if at.After(v.rep.Newest) {
		v.rep.Newest, v.rep.NewestSize = at, h.Size
	}
}

// openTrusted checks the signatures of checkpoints kept outside the
// database and keeps their heads: the log must reach and agree with each,
// like a stored one. One that does not verify is a problem: whoever kept
// it trusted it.
func (v *verifier) openTrusted(trusted []Trusted, jwks []byte) {
	for _, t := range trusted {
		v.rep.Trusted++
		h, at, _, err := OpenCheckpoint(t.JWS, jwks)
		if err != nil {
			v.problem("trusted checkpoint %s: %v", t.Name, err)
			continue
		}
		v.sign(h, at)
	}
}

// fresh checks that a checkpoint verified, and recently enough.
func (v *verifier) fresh(o Options) {
	switch {
	case v.rep.Newest.IsZero() && o.RequireCheckpoint:
		v.problem("no signed checkpoint: nothing signed vouches for this log (the worker signs one every P2P_AUDIT_CHECKPOINT_INTERVAL; GET /v1/audit/checkpoint signs one now; --allow-no-checkpoint passes a brand-new log)")
	case !v.rep.Newest.IsZero() && o.MaxAge > 0 && o.Now.Sub(v.rep.Newest) > o.MaxAge:
		v.problem("the newest signed checkpoint (size %d, %s) is older than %s", v.rep.NewestSize,
			v.rep.Newest.UTC().Format(time.RFC3339), o.MaxAge)
	}
}

// trustPrefix takes the tree of the entries before From from the store,
// and checks the checkpoints inside that prefix against the stored tree.
func (v *verifier) trustPrefix() error {
	from := v.rep.From
	var err error
	if v.tree, err = prefixRange(v.ctx, v.s, from); err != nil {
		return err
	}
	for ; v.nextSize < len(v.sizes) && v.sizes[v.nextSize] <= from; v.nextSize++ {
		n := v.sizes[v.nextSize]
		h, err := HeadAt(v.ctx, v.s, n)
		if err != nil {
			return err
		}
		for _, sh := range v.signed[n] {
			if sh.Root != h.Root {
				v.problem("the stored tree at size %d differs from its signed checkpoint", n)
			}
		}
	}
	return nil
}

// entries recomputes the entries from From on, a page at a time, until
// the log ends or an entry is bad. Pages, so that no query of Verify's
// runs inside another's rows (an in-memory store has one connection).
func (v *verifier) entries() error {
	page := make([]store.AuditEvent, 0, leafBatch)
	for v.rep.FirstBad == nil && v.next < v.rep.Size {
		page = page[:0]
		// Never past Size: entries appended meanwhile are not this run's.
		limit := int(min(leafBatch, v.rep.Size-v.next))
		err := v.s.AuditEvents(v.ctx, store.AuditFilter{FromPosition: v.next, Limit: limit}, func(ae store.AuditEvent) error {
			page = append(page, ae)
			return nil
		})
		if err != nil {
			return err
		}
		for _, ae := range page {
			if err := v.entry(ae); err != nil {
				return err
			}
			if v.rep.FirstBad != nil {
				break
			}
		}
		if len(page) < limit {
			break
		}
	}
	if err := v.flush(); err != nil {
		return err
	}
	v.rep.Checked = v.next - v.rep.From
	v.rep.Root = v.tree.root()
	return nil
}

// entry recomputes the next entry's leaf from its event, compares it with
// the entry's recorded leaf hash and adds it to the tree; at a checkpoint's
// size it compares the tree so far with the stored tree and the checkpoint.
func (v *verifier) entry(ae store.AuditEvent) error {
	if ae.Position != v.next {
		v.bad(v.next, "entry missing (the next stored entry is at %d)", ae.Position)
		return nil
	}
	leaf, err := LeafHash(ae)
	if err != nil {
		v.bad(v.next, "event cannot be encoded: %v", err)
		return nil
	}
	if leaf != ae.LeafHash {
		v.bad(v.next, "event does not match its recorded leaf hash")
		return nil
	}
	v.pending = append(v.pending, leaf)
	v.tree.push(leaf)
	v.next++
	if len(v.pending) == leafBatch {
		if err := v.flush(); err != nil {
			return err
		}
	}
	if v.nextSize < len(v.sizes) && v.sizes[v.nextSize] == v.next {
		return v.checkpoint()
	}
	return nil
}

// checkpoint compares the tree of the entries before next, which the
// next checkpoint signs, with the stored tree's leaves and with the
// checkpoint's root.
func (v *verifier) checkpoint() error {
	if err := v.flush(); err != nil {
		return err
	}
	if v.rep.FirstBad != nil {
		return nil
	}
	root := v.tree.root()
	for _, sh := range v.signed[v.next] {
		if sh.Root != root {
			v.bad(v.next-1, "entries 0..%d do not hash to the signed checkpoint of size %d", v.next-1, v.next)
		}
	}
	v.nextSize++
	return nil
}

// flush compares the pending recomputed leaves with the stored tree's.
func (v *verifier) flush() error {
	if len(v.pending) == 0 {
		return nil
	}
	idx := make([]int64, len(v.pending))
	for i := range v.pending {
		idx[i] = tlog.StoredHashIndex(0, v.pendingFrom+int64(i))
	}
	stored, err := v.s.ReadAuditHashes(v.ctx, idx)
	if err != nil {
		return err
	}
	for i := range v.pending {
		if stored[i] != v.pending[i] {
			v.bad(v.pendingFrom+int64(i), "the event's leaf differs from the tree's leaf at this position")
			break
		}
	}
	v.pendingFrom += int64(len(v.pending))
	v.pending = v.pending[:0]
	return nil
}

// report ends the run once every entry is recomputed: the log must reach
// its head's size and its last checkpoint, and the stored tree must be the
// recomputed one.
func (v *verifier) report() (Report, error) {
	switch {
	case v.rep.FirstBad != nil:
	case v.next < v.rep.Size:
		v.bad(v.next, "entry missing: the log ends at %d, its head says %d", v.next, v.rep.Size)
	case v.nextSize < len(v.sizes):
		v.bad(v.next, "the log ends at %d, before its signed checkpoint of size %d", v.next, v.sizes[len(v.sizes)-1])
	default:
		h, err := HeadAt(v.ctx, v.s, v.rep.Size)
		if err != nil {
			v.problem("the stored tree at size %d: %v", v.rep.Size, err)
		} else if h.Root != v.rep.Root {
			v.problem("the stored tree at size %d differs from the recomputed one", v.rep.Size)
		}
	}
	return v.rep, nil
}
