package activities

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/identity"
)

// A snapshot file is snapshotMagic, the store's fingerprint (16 bytes),
// the id of the stored model the index decided with (8 bytes, little
// endian), then identity.WriteSnapshot's bytes, which carry the member
// version and their own checksum.
const snapshotMagic = "p2p identity index snapshot 1\n"

// storeFingerprint ties a snapshot to the store it was taken from: a
// snapshot of another database (a dev store wiped and seeded again) has
// versions that mean other members. It is derived from the store's
// presentation key, which never leaves the store.
func (m *IndexMatcher) storeFingerprint(ctx context.Context) ([16]byte, error) {
	var fp [16]byte
	key, err := m.Store.PresentationKey(ctx)
	if err != nil {
		return fp, err
	}
	sum := sha256.Sum256(append([]byte("p2p identity snapshot store\x00"), key...))
	copy(fp[:], sum[:])
	return fp, nil
}

// restore reads the snapshot file, if one is configured and usable: from
// this store, no newer than it, and whole. Anything else is logged and
// the index is built from the store instead (ix nil).
func (m *IndexMatcher) restore(ctx context.Context, cfg identity.Config) (ix *identity.Index, version, model int64, from string) {
	if m.Snapshot == "" {
		return nil, 0, 0, ""
	}
	start := time.Now()
	ix, version, model, err := m.readSnapshot(ctx, cfg)
	if err == nil {
		var current int64
		if current, err = m.Store.MemberVersion(ctx); err == nil && version > current {
			err = fmt.Errorf("it is of member version %d, the store is at %d: another database", version, current)
		}
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && m.Logger != nil {
			m.Logger.Warn("identity index snapshot not used; building the index from the store", zap.String("file", m.Snapshot), zap.Error(err))
		}
		return nil, 0, 0, ""
	}
	if m.Logger != nil {
		m.Logger.Info("identity index snapshot read", zap.String("file", m.Snapshot), zap.Int64("member_version", version),
			zap.Duration("took", time.Since(start)))
	}
	return ix, version, model, "snapshot"
}

func (m *IndexMatcher) readSnapshot(ctx context.Context, cfg identity.Config) (*identity.Index, int64, int64, error) {
	f, err := os.Open(m.Snapshot)
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() { _ = f.Close() }() // only read: nothing to lose
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(snapshotMagic)+16+8)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, 0, 0, errors.New("not a p2p identity index snapshot")
	}
	fp, err := m.storeFingerprint(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	if [16]byte(head[len(snapshotMagic):len(snapshotMagic)+16]) != fp {
		return nil, 0, 0, errors.New("it was taken from another store")
	}
	model := int64(binary.LittleEndian.Uint64(head[len(snapshotMagic)+16:]))
	ix, version, err := identity.ReadSnapshot(r, cfg)
	if err != nil {
		return nil, 0, 0, err
	}
	return ix, version, model, nil
}

// saveSnapshot writes the index to the snapshot file, if one is
// configured and the index changed since the last one: to a temporary
// file beside it, synced, then renamed over it, so a crash leaves the old
// snapshot or the new, never a torn one. The file holds members'
// demographics (PHI): it is created 0600 in a directory of 0700. Holds
// the turn. A failure is logged: the snapshot only speeds up the next
// start.
func (m *IndexMatcher) saveSnapshot() {
	if m.Snapshot == "" || m.ix == nil {
		return
	}
	// A version applied only in part is written as the one before it:
	// the next start applies that version again, which changes nothing.
	version := m.version
	if m.after != "" {
		version--
	}
	if m.snapshotted && version == m.snapVersion {
		return
	}
	start := time.Now()
	err := m.writeSnapshot(version)
	if err != nil {
		if m.Logger != nil {
			m.Logger.Warn("writing the identity index snapshot", zap.String("file", m.Snapshot), zap.Error(err))
		}
		return
	}
	m.snapshotted, m.snapVersion = true, version
	if m.Logger != nil {
		m.Logger.Info("identity index snapshot written", zap.String("file", m.Snapshot), zap.Int64("member_version", version),
			zap.Duration("took", time.Since(start)))
	}
}

func (m *IndexMatcher) writeSnapshot(version int64) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fp, err := m.storeFingerprint(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Dir(m.Snapshot)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(m.Snapshot)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	head := make([]byte, 0, len(snapshotMagic)+16+8)
	head = append(append(head, snapshotMagic...), fp[:]...)
	head = binary.LittleEndian.AppendUint64(head, uint64(m.model))
	if _, err := w.Write(head); err != nil {
		return err
	}
	if err := m.ix.WriteSnapshot(w, version); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), m.Snapshot); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself survives a power cut
		_ = d.Close()
	}
	return nil
}
