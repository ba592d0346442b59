package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/store"
)

// Checkpointer signs checkpoints of a store's audit log, and only of heads
// it can connect to a head signed before: a database-level attacker who
// rewrites events, rebuilds the tree and deletes the checkpoints that
// covered them must not get the forged history signed.
//
// Before signing the log's head at its current size, Sign takes the
// anchors it can find — the latest stored checkpoint whose signature
// verifies, the newest checkpoint of the witness directory, the last head
// this Checkpointer signed — and requires each to be a prefix of the
// stored tree (its root is the stored tree's root at its size: RFC 6962
// consistency, checked on the stored hashes). It then recomputes every
// leaf after the largest anchor from its event, compares it with the
// entry's recorded leaf hash and the stored tree, and the stored root
// with the recomputed one. With no anchor at all (the first checkpoint
// ever, or every copy of the earlier ones gone) it recomputes the whole
// log from leaf 0: the log is then its own trust anchor, which is why a
// witness outside the database matters.
//
// It is safe for concurrent use; signings in one process are serialised.
type Checkpointer struct {
	Store  store.AuditLog
	Signer Signer
	// JWKS returns the keys that verify our checkpoints, retired ones
	// included; nil: the Signer's PublicJWKS (a *signing.Signer has one).
	JWKS func() ([]byte, error)
	// Witness, when set, gets a copy of every checkpoint signed; a
	// DirWitness is also read back for the newest anchor. Publishing
	// failures are logged, never fatal: the checkpoint is signed and
	// stored first, and `p2p audit verify` reports a witness gone stale.
	Witness Witness
	Log     *zap.Logger // nil: no logging

	mu   sync.Mutex
	last *Head // the newest head this Checkpointer signed
}

// ErrInconsistent is what an *InconsistentError matches with errors.Is.
var ErrInconsistent = errors.New("audit: the log does not connect to its signed checkpoints")

// InconsistentError is why Sign refused to sign: the log as stored
// cannot be connected to a checkpoint signed before. It names positions
// and sizes only, never an event's content.
type InconsistentError struct {
	Source string // where that checkpoint came from: "store", "witness", "memory"; "" for none (the log from leaf 0)
	Size   int64  // its size
	Reason string
}

func (e *InconsistentError) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("audit: refusing to sign: the log does not verify from leaf 0: %s", e.Reason)
	}
	return fmt.Sprintf("audit: refusing to sign: the log does not extend the signed checkpoint of size %d (%s): %s", e.Size, e.Source, e.Reason)
}

// Is makes errors.Is(err, ErrInconsistent) true.
func (e *InconsistentError) Is(target error) bool { return target == ErrInconsistent }

// anchor is a signed head Sign must extend, and where it was found.
type anchor struct {
	head   Head
	source string
}

// Sign verifies the log from its anchors to its current size, then signs
// that head at now, stores the checkpoint, publishes it to the witness and
// returns it. It returns an *InconsistentError, and logs it at error
// level, when the log does not extend an anchor; other errors are the
// store's or the signer's.
func (c *Checkpointer) Sign(ctx context.Context, now time.Time) (store.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	jwks, err := c.jwks()
	if err != nil {
		return store.Checkpoint{}, err
	}
	size, err := c.Store.AuditSize(ctx)
	if err != nil {
		return store.Checkpoint{}, err
	}
	anchors, err := c.anchors(ctx, jwks)
	if err != nil {
		return store.Checkpoint{}, err
	}
	base := anchor{head: Head{Root: emptyRoot}}
	for _, a := range anchors {
		if err := c.connects(ctx, a, size); err != nil {
			return store.Checkpoint{}, c.refuse(err)
		}
		if a.head.Size > base.head.Size {
			base = a
		}
	}
	head, reason, err := extend(ctx, c.Store, base.head, size)
	if err != nil {
		return store.Checkpoint{}, err
	}
	if reason != "" {
		return store.Checkpoint{}, c.refuse(&InconsistentError{Source: base.source, Size: base.head.Size, Reason: reason})
	}
	cp, err := sign(ctx, c.Store, c.Signer, head, now)
	if err != nil {
		return store.Checkpoint{}, err
	}
	c.last = &head
	if c.Witness != nil {
		if err := c.Witness.Publish(ctx, cp); err != nil {
			c.logger().Error("audit checkpoint not published to the witness", zap.String("witness", c.Witness.String()),
				zap.Int64("size", cp.Size), zap.Error(err))
		}
	}
	return cp, nil
}

func (c *Checkpointer) logger() *zap.Logger {
	if c.Log == nil {
		return zap.NewNop()
	}
	return c.Log
}

// refuse logs a refusal loudly and returns it.
func (c *Checkpointer) refuse(err error) error {
	var ie *InconsistentError
	if errors.As(err, &ie) {
		c.logger().Error("AUDIT LOG INCONSISTENT: refusing to sign a checkpoint; the audit log may have been altered in the database, run `p2p audit verify`",
			zap.String("anchor", ie.Source), zap.Int64("anchor_size", ie.Size), zap.String("reason", ie.Reason))
	}
	return err
}

func (c *Checkpointer) jwks() ([]byte, error) {
	if c.JWKS != nil {
		return c.JWKS()
	}
	if ks, ok := c.Signer.(interface{ PublicJWKS() ([]byte, error) }); ok {
		return ks.PublicJWKS()
	}
	return nil, errors.New("audit: no JWKS to verify earlier checkpoints with")
}

// connects checks that anchor a is a prefix of the stored log of size
// entries: the stored tree's root at a's size is a's.
func (c *Checkpointer) connects(ctx context.Context, a anchor, size int64) error {
	if a.head.Size > size {
		return &InconsistentError{Source: a.source, Size: a.head.Size,
			Reason: fmt.Sprintf("the log holds %d entries, fewer than the checkpoint", size)}
	}
	h, err := HeadAt(ctx, c.Store, a.head.Size)
	if err != nil {
		return err
	}
	if h.Root != a.head.Root {
		return &InconsistentError{Source: a.source, Size: a.head.Size,
			Reason: fmt.Sprintf("the stored tree at size %d differs from the checkpoint", a.head.Size)}
	}
	return nil
}

// anchors are the signed heads Sign must extend: the latest stored
// checkpoint that verifies, the witness directory's newest that does, and
// the last head signed here.
func (c *Checkpointer) anchors(ctx context.Context, jwks []byte) ([]anchor, error) {
	var out []anchor
	h, ok, err := c.storeAnchor(ctx, jwks)
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, anchor{h, "store"})
	}
	if d, isDir := c.Witness.(DirWitness); isDir {
		h, ok, err := c.witnessAnchor(d, jwks)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, anchor{h, "witness"})
		}
	}
	if c.last != nil {
		out = append(out, anchor{*c.last, "memory"})
	}
	return out, nil
}

// storeAnchor is the latest stored checkpoint whose signature verifies.
// Usually the latest; when it does not verify (a row an attacker wrote, a
// key dropped from the JWKS), the newest earlier one that does.
func (c *Checkpointer) storeAnchor(ctx context.Context, jwks []byte) (Head, bool, error) {
	latest, err := c.Store.LatestCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, err
	}
	if h, _, _, err := OpenCheckpoint(latest.JWS, jwks); err == nil {
		return h, true, nil
	}
	cps, err := c.Store.Checkpoints(ctx)
	if err != nil {
		return Head{}, false, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		h, _, _, err := OpenCheckpoint(cps[i].JWS, jwks)
		if err == nil {
			return h, true, nil
		}
		c.logger().Warn("stored audit checkpoint does not verify; not an anchor", zap.Int64("size", cps[i].Size),
			zap.String("kid", cps[i].KID), zap.Error(err))
	}
	return Head{}, false, nil
}

// witnessAnchor is the witness directory's newest checkpoint whose
// signature verifies.
func (c *Checkpointer) witnessAnchor(d DirWitness, jwks []byte) (Head, bool, error) {
	files, err := d.Files()
	if err != nil {
		return Head{}, false, fmt.Errorf("audit witness %s: %w", d.Dir, err)
	}
	for i := len(files) - 1; i >= 0; i-- {
		t, err := ReadTrusted(files[i])
		if err == nil {
			var h Head
			if h, _, _, err = OpenCheckpoint(t.JWS, jwks); err == nil {
				return h, true, nil
			}
		}
		c.logger().Warn("witnessed audit checkpoint does not verify; not an anchor", zap.String("file", files[i]), zap.Error(err))
	}
	return Head{}, false, nil
}

// extend recomputes the log's entries from from.Size to size on top of the
// stored tree's first from.Size leaves, which must hash to from.Root, and
// returns the head at size; reason says why not when it does not verify.
func extend(ctx context.Context, s store.AuditLog, from Head, size int64) (Head, string, error) {
	v := &verifier{ctx: ctx, s: s, rep: Report{From: from.Size, Size: size}, next: from.Size, pendingFrom: from.Size,
		signed: map[int64][]Head{}}
	var err error
	if v.tree, err = prefixRange(ctx, s, from.Size); err != nil {
		return Head{}, "", err
	}
	if v.tree.root() != from.Root {
		return Head{}, fmt.Sprintf("the stored tree at size %d differs from the checkpoint", from.Size), nil
	}
	if err := v.entries(); err != nil {
		return Head{}, "", err
	}
	rep, err := v.report()
	if err != nil {
		return Head{}, "", err
	}
	if f := rep.FirstBad; f != nil {
		return Head{}, fmt.Sprintf("position %d: %s", f.Position, f.Reason), nil
	}
	if len(rep.Problems) > 0 {
		return Head{}, strings.Join(rep.Problems, "; "), nil
	}
	return Head{Size: size, Root: rep.Root}, "", nil
}

// sign signs h at now and stores the checkpoint.
func sign(ctx context.Context, s store.AuditLog, signer Signer, h Head, now time.Time) (store.Checkpoint, error) {
	now = now.UTC().Truncate(time.Microsecond)
	payload, err := json.Marshal(CheckpointPayload{
		V: CheckpointVersion, Size: h.Size, Root: base64.StdEncoding.EncodeToString(h.Root[:]),
		Time: now.Format(timeLayout),
	})
	if err != nil {
		return store.Checkpoint{}, err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return store.Checkpoint{}, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	c := store.Checkpoint{Size: h.Size, Root: h.Root, At: now, KID: signer.KID(), JWS: jws}
	if err := s.PutCheckpoint(ctx, c); err != nil {
		return store.Checkpoint{}, err
	}
	return c, nil
}
