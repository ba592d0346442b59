package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
)

// Hashes is the store's audit tree as a tlog.HashReader, for tlog's tree
// hashes and proofs.
func Hashes(ctx context.Context, s store.AuditLog) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return s.ReadAuditHashes(ctx, indexes)
	})
}

// Head is a tree head: the size of the log and the RFC 6962 root hash of
// its first Size entries (tlog.TreeHash; the empty tree's is SHA-256 of
// nothing).
type Head struct {
	Size int64
	Root tlog.Hash
}

// TreeHead returns the current head of the store's audit log.
func TreeHead(ctx context.Context, s store.AuditLog) (Head, error) {
	n, err := s.AuditSize(ctx)
	if err != nil {
		return Head{}, err
	}
	return HeadAt(ctx, s, n)
}

// HeadAt returns the head of the store's audit log at size n.
func HeadAt(ctx context.Context, s store.AuditLog, n int64) (Head, error) {
	root, err := tlog.TreeHash(n, Hashes(ctx, s))
	if err != nil {
		return Head{}, fmt.Errorf("audit: tree hash at %d: %w", n, err)
	}
	return Head{Size: n, Root: root}, nil
}

// CheckpointVersion is the "v" of every checkpoint payload.
const CheckpointVersion = "p2p-audit-checkpoint/1"

// CheckpointPayload is what a checkpoint's JWS signs.
type CheckpointPayload struct {
	V    string `json:"v"`    // CheckpointVersion
	Size int64  `json:"size"` // entries 0..size-1
	Root string `json:"root"` // base64 (standard, padded) of the RFC 6962 root hash
	Time string `json:"time"` // RFC 3339 UTC, microseconds
}

// Signer signs checkpoints; *signing.Signer is one.
type Signer interface {
	KID() string
	Sign(payload []byte) (string, error)
}

// Checkpoint signs the current tree head at now, once the log verifies
// from its latest signed checkpoint (see Checkpointer, which this is
// without a witness or a memory of earlier signings), stores the
// checkpoint and returns it.
func Checkpoint(ctx context.Context, s store.AuditLog, signer Signer, now time.Time) (store.Checkpoint, error) {
	return (&Checkpointer{Store: s, Signer: signer}).Sign(ctx, now)
}

// OpenCheckpoint verifies a checkpoint's JWS against jwks and returns the
// head and time it signs, and the kid that signed it.
func OpenCheckpoint(jws string, jwks []byte) (Head, time.Time, string, error) {
	payload, kid, err := signing.VerifyFor(signing.Checkpoint, jws, jwks)
	if err != nil {
		return Head{}, time.Time{}, "", err
	}
	var p CheckpointPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return Head{}, time.Time{}, kid, fmt.Errorf("audit: checkpoint payload: %w", err)
	}
	if p.V != CheckpointVersion {
		return Head{}, time.Time{}, kid, fmt.Errorf("audit: checkpoint version %q", p.V)
	}
	root, err := base64.StdEncoding.DecodeString(p.Root)
	if err != nil || len(root) != tlog.HashSize {
		return Head{}, time.Time{}, kid, errors.New("audit: checkpoint root is not a base64 SHA-256 hash")
	}
	at, err := time.Parse(time.RFC3339Nano, p.Time)
	if err != nil {
		return Head{}, time.Time{}, kid, fmt.Errorf("audit: checkpoint time: %w", err)
	}
	h := Head{Size: p.Size}
	copy(h.Root[:], root)
	return h, at, kid, nil
}

// Prove returns the inclusion proof of the entry at position pos in the
// tree of size n (pos < n): the RFC 6962 audit path, leaf to root.
func Prove(ctx context.Context, s store.AuditLog, pos, n int64) (tlog.RecordProof, error) {
	if pos < 0 || pos >= n {
		return nil, fmt.Errorf("audit: position %d is not in a tree of size %d", pos, n)
	}
	p, err := tlog.ProveRecord(n, pos, Hashes(ctx, s))
	if err != nil {
		return nil, fmt.Errorf("audit: prove %d in %d: %w", pos, n, err)
	}
	return p, nil
}

// compactRange is the roots of the perfect subtrees of a tree's first size
// leaves, left to right: enough to extend it by a leaf and to compute its
// root in O(log size) memory.
type compactRange struct {
	size   int64
	hashes []tlog.Hash
}

func (c *compactRange) push(leaf tlog.Hash) {
	c.hashes = append(c.hashes, leaf)
	c.size++
	for n := c.size; n&1 == 0; n >>= 1 {
		l, r := c.hashes[len(c.hashes)-2], c.hashes[len(c.hashes)-1]
		c.hashes = append(c.hashes[:len(c.hashes)-2], tlog.NodeHash(l, r))
	}
}

// root is the RFC 6962 root: the subtrees folded right to left.
func (c *compactRange) root() tlog.Hash {
	if c.size == 0 {
		return tlog.Hash(emptyRoot)
	}
	h := c.hashes[len(c.hashes)-1]
	for i := len(c.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(c.hashes[i], h)
	}
	return h
}

// emptyRoot is SHA-256 of nothing, the root of the empty tree.
var emptyRoot = [32]byte{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

// prefixRange is the compact range of the first n leaves, from the
// store's stored hashes.
func prefixRange(ctx context.Context, s store.AuditLog, n int64) (*compactRange, error) {
	var idx []int64
	start := int64(0)
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			idx = append(idx, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	hs, err := s.ReadAuditHashes(ctx, idx)
	if err != nil {
		return nil, err
	}
	return &compactRange{size: n, hashes: hs}, nil
}
