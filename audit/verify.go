package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"

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
	FirstBad    *Finding  // the first bad position, if any
	Problems    []string  // what is wrong beyond an entry: checkpoints, the stored tree
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return r.FirstBad == nil && len(r.Problems) == 0 }

// leafBatch is how many recomputed leaves are compared with the stored
// tree per query.
const leafBatch = 1024

var errStop = errors.New("stop")

// Verify recomputes the audit log from position from on: every leaf from
// its stored event, the tree from the leaves, compared with each entry's
// stored leaf, with the stored tree, and with every stored checkpoint,
// whose signatures it checks against jwks. The positions before from are
// taken from the stored tree. It reports the first bad position; an error
// means it could not read the store.
func Verify(ctx context.Context, s store.Store, jwks []byte, from int64) (Report, error) {
	size, err := s.AuditSize(ctx)
	if err != nil {
		return Report{}, err
	}
	from = max(0, min(from, size))
	rep := Report{From: from, Size: size}
	cps, err := s.Checkpoints(ctx)
	if err != nil {
		return rep, err
	}
	// The signed heads, by size.
	signed := map[int64][]Head{}
	var sizes []int64
	for i, c := range cps {
		rep.Checkpoints++
		h, _, kid, err := OpenCheckpoint(c.JWS, jwks)
		switch {
		case err != nil:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoint %d (size %d, kid %s): %v", i+1, c.Size, c.KID, err))
			continue
		case h != Head{Size: c.Size, Root: c.Root} || kid != c.KID:
			rep.Problems = append(rep.Problems, fmt.Sprintf("checkpoint %d (size %d): stored columns differ from its signed payload", i+1, c.Size))
		}
		if _, ok := signed[h.Size]; !ok {
			sizes = append(sizes, h.Size)
		}
		signed[h.Size] = append(signed[h.Size], h)
	}
	slices.Sort(sizes)
	cr, err := prefixRange(ctx, s, from)
	if err != nil {
		return rep, err
	}
	// Checkpoints inside the trusted prefix are checked against the stored tree.
	for _, n := range sizes {
		if n > from {
			break
		}
		h, err := HeadAt(ctx, s, n)
		if err != nil {
			return rep, err
		}
		for _, sh := range signed[n] {
			if sh.Root != h.Root {
				rep.Problems = append(rep.Problems, fmt.Sprintf("the stored tree at size %d differs from its signed checkpoint", n))
			}
		}
	}
	bad := func(pos int64, format string, args ...any) {
		if rep.FirstBad == nil || pos < rep.FirstBad.Position {
			rep.FirstBad = &Finding{Position: pos, Reason: fmt.Sprintf(format, args...)}
		}
	}
	// pending are recomputed leaves not yet compared with the stored tree.
	var pending []tlog.Hash
	pendingFrom := from
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		idx := make([]int64, len(pending))
		for i := range pending {
			idx[i] = tlog.StoredHashIndex(0, pendingFrom+int64(i))
		}
		stored, err := s.ReadAuditHashes(ctx, idx)
		if err != nil {
			return err
		}
		for i := range pending {
			if stored[i] != pending[i] {
				bad(pendingFrom+int64(i), "the event's leaf differs from the tree's leaf at this position")
				break
			}
		}
		pendingFrom += int64(len(pending))
		pending = pending[:0]
		return nil
	}
	next := from
	nextSize := 0 // index in sizes of the next checkpoint beyond the prefix
	for nextSize < len(sizes) && sizes[nextSize] <= from {
		nextSize++
	}
	check := func(ae store.AuditEvent) error {
		if ae.Position != next {
			bad(next, "entry missing (the next stored entry is at %d)", ae.Position)
			return errStop
		}
		leaf, err := LeafHash(ae.TransferID, ae.Event)
		if err != nil {
			bad(next, "event cannot be encoded: %v", err)
			return errStop
		}
		if leaf != ae.LeafHash {
			bad(next, "event does not match its recorded leaf hash")
			return errStop
		}
		pending = append(pending, leaf)
		cr.push(leaf)
		next++
		if len(pending) == leafBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		if nextSize < len(sizes) && sizes[nextSize] == next {
			if err := flush(); err != nil {
				return err
			}
			if rep.FirstBad != nil {
				return errStop
			}
			root := cr.root()
			for _, sh := range signed[next] {
				if sh.Root != root {
					bad(next-1, "entries 0..%d do not hash to the signed checkpoint of size %d", next-1, next)
				}
			}
			nextSize++
		}
		if rep.FirstBad != nil {
			return errStop
		}
		return nil
	}
	// Pages of entries, so that no query of Verify's runs inside another's
	// rows (an in-memory store has one connection).
	page := make([]store.AuditEvent, 0, leafBatch)
	for rep.FirstBad == nil {
		page = page[:0]
		err := s.AuditEvents(ctx, store.AuditFilter{FromPosition: next, Limit: leafBatch}, func(ae store.AuditEvent) error {
			page = append(page, ae)
			return nil
		})
		if err != nil {
			return rep, err
		}
		for _, ae := range page {
			if err := check(ae); err != nil {
				if errors.Is(err, errStop) {
					break
				}
				return rep, err
			}
		}
		if len(page) < leafBatch {
			break
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	rep.Checked = next - from
	rep.Root = cr.root()
	if rep.FirstBad != nil {
		return rep, nil
	}
	if next < size {
		bad(next, "entry missing: the log ends at %d, its head says %d", next, size)
		return rep, nil
	}
	if nextSize < len(sizes) {
		bad(next, "the log ends at %d, before its signed checkpoint of size %d", next, sizes[len(sizes)-1])
		return rep, nil
	}
	h, err := HeadAt(ctx, s, size)
	if err != nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the stored tree at size %d: %v", size, err))
	} else if h.Root != rep.Root {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the stored tree at size %d differs from the recomputed one", size))
	}
	return rep, nil
}
