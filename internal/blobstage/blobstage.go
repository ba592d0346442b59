// Package blobstage keeps the files of imports in a bucket
// (gocloud.dev/blob), so that the worker that downloads a file and the one
// that delivers it need not share a disk. A round's downloads are staged
// under .staging/<transfer>/round-<n>/ (error files under error/); a
// delivery copies them to <transfer>/ and is sealed by the marker
// <transfer>/_delivered.json, written last: until it exists, a reader of
// the sink must take the transfer's files as incomplete.
//
// Two kinds of bucket: a directory (fileblob: p2p dev, a single host,
// P2P_IMPORT_DIR), whose layout is the one imports had before buckets, and
// S3 or an S3-compatible store (s3blob), whose credentials come from the
// AWS credential chain, never from the URL.
package blobstage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcerrors"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/fhir"
)

// Bucket is the import bucket: staged downloads and the delivered NDJSON
// sink of every import.
type Bucket struct {
	b    *blob.Bucket
	dir  string // a file bucket's directory, absolute; "" for S3
	name string // how messages name the bucket: no query, no credentials
}

// The key layout.
const (
	// StagingRoot is the prefix of every staged file.
	StagingRoot = ".staging/"
	// Marker is the name, under <transfer>/, of the object that seals a
	// delivery: written once every file is in place and checked.
	Marker = "_delivered.json"
	// ndjson ends the key of every committed file; temporary files of a
	// file bucket end in .tmp.
	ndjson = ".ndjson"
)

// safeID is what a transfer id must be to name a key (and a directory of
// a file bucket).
var safeID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// ValidID tells whether id can name a transfer's keys: letters, digits,
// '.', '_', '-', at most 128, and not "." or "..".
func ValidID(id string) bool { return safeID.MatchString(id) && strings.Trim(id, ".") != "" }

// ErrBadID is the error of a transfer id that cannot name a key.
var ErrBadID = errors.New("blobstage: transfer id is not safe in a key")

// OpenDir opens the file bucket at dir (P2P_IMPORT_DIR), creating it mode
// 0700 if needed. Files are written 0600 and synced before they are
// renamed into place; directories are created 0700; no metadata sidecar
// files are written, so that the directory holds only the NDJSON files and
// markers.
func OpenDir(dir string) (*Bucket, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("import directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("import directory: %w", err)
	}
	b, err := fileblob.OpenBucket(abs, &fileblob.Options{
		DirFileMode: 0o700,
		// Temporary files beside the final ones: never in os.TempDir,
		// which may be another mount (the rename would fail) and would
		// hold PHI outside the import directory.
		NoTempDir: true,
		Metadata:  fileblob.MetadataDontWrite,
	})
	if err != nil {
		return nil, fmt.Errorf("import directory: %w", err)
	}
	return &Bucket{b: b, dir: abs, name: "file://" + filepath.ToSlash(abs)}, nil
}

// Open opens the bucket at rawURL: s3://BUCKET?region=…&endpoint=…&
// use_path_style=true (the options of gocloud.dev/blob/s3blob, among them
// ssetype and kmskeyid for server-side encryption), or file:///DIR (as
// OpenDir). Errors never quote the URL's query.
func Open(ctx context.Context, rawURL string) (*Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("import bucket: not a URL (s3://BUCKET?region=… or file:///DIR)")
	}
	if u.User != nil {
		return nil, errors.New("import bucket: the URL holds credentials: leave them to the AWS credential chain (environment, shared files, instance or task role)")
	}
	switch u.Scheme {
	case "file":
		if (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" || u.Path == "" {
			return nil, errors.New("import bucket: a file bucket is file:///ABSOLUTE/DIR, without host or options")
		}
		return OpenDir(filepath.FromSlash(u.Path))
	case s3blob.Scheme:
		name := "s3://" + u.Host
		b, err := (&s3blob.URLOpener{}).OpenBucketURL(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("import bucket %s: %s", name, strings.ReplaceAll(err.Error(), u.String(), name))
		}
		return &Bucket{b: b, name: name}, nil
	}
	return nil, fmt.Errorf("import bucket: scheme %q is not s3 or file", u.Scheme)
}

// String names the bucket for logs: scheme and bucket or directory, never
// the URL's options; "none" for no bucket.
func (b *Bucket) String() string {
	if b == nil {
		return "none"
	}
	return b.name
}

// Dir is the directory of a file bucket; "" for S3.
func (b *Bucket) Dir() string { return b.dir }

// Check tells whether the bucket can be reached (and, for S3, exists):
// a worker checks at start, so that a wrong name or missing credentials
// fail there rather than at the first import.
func (b *Bucket) Check(ctx context.Context) error {
	ok, err := b.b.IsAccessible(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("import bucket %s: %w", b.name, err)
	case !ok:
		return fmt.Errorf("import bucket %s: does not exist or is not accessible", b.name)
	}
	return nil
}

// Close releases the bucket.
func (b *Bucket) Close() error { return b.b.Close() }

// StagedPrefix is the prefix of every file staged for transfer id, of
// every round.
func StagedPrefix(id string) string { return StagingRoot + id + "/" }

// RoundPrefix is the prefix of round's staged files of transfer id (with
// errorFiles, of its error files only).
func RoundPrefix(id string, round int, errorFiles bool) string {
	p := StagedPrefix(id) + "round-" + strconv.Itoa(round) + "/"
	if errorFiles {
		p += "error/"
	}
	return p
}

// StagedKey is the key of the n-th staged file of resourceType.
func StagedKey(id string, round int, errorFiles bool, resourceType string, n int) string {
	return RoundPrefix(id, round, errorFiles) + bulkdata.FileName(resourceType, n)
}

// DeliveredPrefix is the prefix of transfer id's delivered files.
func DeliveredPrefix(id string) string { return id + "/" }

// DeliveredKey is the key of the n-th delivered file of resourceType
// (error files under error/).
func DeliveredKey(id string, errorFile bool, resourceType string, n int) string {
	p := DeliveredPrefix(id)
	if errorFile {
		p += "error/"
	}
	return p + bulkdata.FileName(resourceType, n)
}

// MarkerKey is the key of the marker that seals transfer id's delivery.
func MarkerKey(id string) string { return DeliveredPrefix(id) + Marker }

// Stage is the sink of round's downloads for transfer id (errorFiles:
// the manifest's error files): each file is written to its key under
// RoundPrefix only when committed, so that a download that fails, or a
// process that dies, leaves no partial file under a final key. A file
// staged again replaces the earlier copy.
func (b *Bucket) Stage(ctx context.Context, id string, round int, errorFiles bool) (bulkdata.Sink, error) {
	if !ValidID(id) {
		return nil, ErrBadID
	}
	return &sink{b: b, ctx: ctx, prefix: RoundPrefix(id, round, errorFiles)}, nil
}

// StagedBytes is the size of round's committed staged files of transfer
// id (error files too), but for the one at except, which a retried
// download replaces.
func (b *Bucket) StagedBytes(ctx context.Context, id string, round int, except string) (int64, error) {
	if !ValidID(id) {
		return 0, ErrBadID
	}
	var n int64
	err := b.each(ctx, RoundPrefix(id, round, false), func(o *blob.ListObject) error {
		if strings.HasSuffix(o.Key, ndjson) && o.Key != except {
			n += o.Size
		}
		return nil
	})
	return n, err
}

// Promote copies round's staged files of transfer id to their delivered
// keys (RoundPrefix's rest under DeliveredPrefix), each one atomically,
// and returns how many. Again after a crash, it copies them again: the
// staged files stay until Seal.
func (b *Bucket) Promote(ctx context.Context, id string, round int) (int, error) {
	if !ValidID(id) {
		return 0, ErrBadID
	}
	from := RoundPrefix(id, round, false)
	var objs []*blob.ListObject
	if err := b.each(ctx, from, func(o *blob.ListObject) error {
		if strings.HasSuffix(o.Key, ndjson) {
			objs = append(objs, o)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, o := range objs {
		dst := DeliveredPrefix(id) + strings.TrimPrefix(o.Key, from)
		if err := b.copy(ctx, dst, o); err != nil {
			return 0, fmt.Errorf("blobstage: copying %s: %w", o.Key, err)
		}
		if err := b.sync(dst); err != nil {
			return 0, err
		}
	}
	return len(objs), nil
}

// CopyLimit is the largest object S3 copies in one request (CopyObject);
// a larger one is copied by reading it and uploading it in parts.
var CopyLimit int64 = 5 << 30

// copy copies the object o to dst, in one request where the store allows.
func (b *Bucket) copy(ctx context.Context, dst string, o *blob.ListObject) error {
	if b.dir != "" || o.Size <= CopyLimit {
		return b.b.Copy(ctx, dst, o.Key, &blob.CopyOptions{BeforeCopy: private})
	}
	r, err := b.Open(ctx, o.Key)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }() // read only: the upload's outcome is what counts
	w, err := b.create(ctx, dst, "application/fhir+ndjson")
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		_ = w.Abort()
		return err
	}
	return w.Commit()
}

// Sealed tells whether transfer id's delivery is sealed.
func (b *Bucket) Sealed(ctx context.Context, id string) (bool, error) {
	if !ValidID(id) {
		return false, ErrBadID
	}
	ok, err := b.b.Exists(ctx, MarkerKey(id))
	if err != nil {
		return false, fmt.Errorf("blobstage: marker of %s: %w", id, err)
	}
	return ok, nil
}

// Seal writes the marker of transfer id's delivery (what it holds: the
// caller's receipt, no PHI), then removes everything staged for the
// transfer: the files now delivered and any earlier round's. Sealing again
// rewrites the marker and removes what is left.
func (b *Bucket) Seal(ctx context.Context, id string, receipt []byte) error {
	if !ValidID(id) {
		return ErrBadID
	}
	w, err := b.create(ctx, MarkerKey(id), "application/json")
	if err != nil {
		return err
	}
	if _, err := w.Write(receipt); err != nil {
		_ = w.Abort()
		return fmt.Errorf("blobstage: marker: %w", err)
	}
	if err := w.Commit(); err != nil {
		return err
	}
	_, err = b.deletePrefix(ctx, StagedPrefix(id))
	return err
}

// Discard removes every object staged for transfer id, of every round,
// temporary files a killed download left included; existed tells whether
// there were any.
func (b *Bucket) Discard(ctx context.Context, id string) (existed bool, err error) {
	if !ValidID(id) {
		return false, ErrBadID
	}
	n, err := b.deletePrefix(ctx, StagedPrefix(id))
	return n > 0, err
}

// Digest is the SHA-256, hex, of the object at key.
func (b *Bucket) Digest(ctx context.Context, key string) (string, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return "", err
	}
	// Read only: once the digest is in hand, a failed close loses nothing.
	defer func() { _ = r.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("blobstage: reading %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Open opens the object at key for reading (the FHIR loader reads the
// delivered files so).
func (b *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := b.b.NewReader(ctx, key, nil)
	if err != nil {
		return nil, fmt.Errorf("blobstage: opening %s: %w", key, err)
	}
	return r, nil
}

// Keys lists the keys under prefix, in order: what Discard and Seal
// remove, and what tests look at.
func (b *Bucket) Keys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := b.each(ctx, prefix, func(o *blob.ListObject) error {
		keys = append(keys, o.Key)
		return nil
	})
	return keys, err
}

// IsNotFound tells whether err says an object does not exist.
func IsNotFound(err error) bool { return gcerrors.Code(err) == gcerrors.NotFound }

// each calls fn with every object under prefix.
func (b *Bucket) each(ctx context.Context, prefix string, fn func(*blob.ListObject) error) error {
	it := b.b.List(&blob.ListOptions{Prefix: prefix})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blobstage: listing %s: %w", prefix, err)
		}
		if o.IsDir {
			continue
		}
		if err := fn(o); err != nil {
			return err
		}
	}
}

// deletePrefix deletes every object under prefix and returns how many.
// A file bucket's emptied directories are removed too.
func (b *Bucket) deletePrefix(ctx context.Context, prefix string) (int, error) {
	keys, err := b.Keys(ctx, prefix)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := b.b.Delete(ctx, k); err != nil && !IsNotFound(err) {
			return 0, fmt.Errorf("blobstage: deleting %s: %w", k, err)
		}
	}
	if b.dir != "" {
		pruneEmpty(filepath.Join(b.dir, filepath.FromSlash(strings.TrimSuffix(prefix, "/"))))
	}
	return len(keys), nil
}

// pruneEmpty removes the empty directories at and below dir, deepest
// first. A directory that is not empty stays: whatever is in it is not
// ours to remove.
func pruneEmpty(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // fails on a directory that is not empty: left alone
	}
}

// private makes a file bucket's file mode 0600 before anything is written
// to it: the files hold PHI. Other buckets have no file to change.
func private(as func(any) bool) error {
	var f *os.File
	if as(&f) {
		return f.Chmod(0o600)
	}
	return nil
}

// sync makes a file bucket's file at key, and its directory, durable: a
// copy's data is synced before the marker that seals it is written. S3
// has nothing to sync: an object exists once its write returned.
func (b *Bucket) sync(key string) error {
	if b.dir == "" {
		return nil
	}
	p := filepath.Join(b.dir, filepath.FromSlash(key))
	if err := syncPath(p); err != nil {
		return fmt.Errorf("blobstage: syncing %s: %w", key, err)
	}
	if err := syncPath(filepath.Dir(p)); err != nil {
		return fmt.Errorf("blobstage: syncing the directory of %s: %w", key, err)
	}
	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// create opens a writer of the object at key.
func (b *Bucket) create(ctx context.Context, key, contentType string) (*file, error) {
	wctx, cancel := context.WithCancel(ctx)
	f := &file{b: b, key: key, cancel: cancel}
	w, err := b.b.NewWriter(wctx, key, &blob.WriterOptions{ContentType: contentType,
		BeforeWrite: func(as func(any) bool) error {
			if err := private(as); err != nil {
				return err
			}
			as(&f.os) // a file bucket's temporary file, synced at commit
			return nil
		}})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("blobstage: creating %s: %w", key, err)
	}
	f.w, f.buf = w, bufio.NewWriterSize(w, 256<<10)
	return f, nil
}

// sink is a bulkdata.Sink writing under prefix.
type sink struct {
	b      *Bucket
	ctx    context.Context
	prefix string
}

func (s *sink) Create(resourceType string, n int) (bulkdata.SinkFile, error) {
	// The type becomes part of a key: only a resource type name is safe.
	if !fhir.ValidTypeName(resourceType) || n < 1 {
		return nil, fmt.Errorf("blobstage: bad file %.40q #%d", resourceType, n)
	}
	return s.b.create(s.ctx, s.prefix+bulkdata.FileName(resourceType, n), "application/fhir+ndjson")
}

// file is an object being written: nothing is visible under its key until
// Commit returns (a file bucket renames a synced temporary file into
// place; S3 publishes an upload once complete).
type file struct {
	b      *Bucket
	key    string
	w      *blob.Writer
	buf    *bufio.Writer
	os     *os.File // a file bucket's temporary file; nil for S3
	cancel context.CancelFunc
	done   bool
}

var _ bulkdata.SinkFile = (*file)(nil)

func (f *file) Write(p []byte) (int, error) {
	if f.done {
		return 0, errors.New("blobstage: write after commit or abort")
	}
	return f.buf.Write(p)
}

// Commit flushes and publishes the object: once it returns, the object is
// complete under its key and, in a file bucket, on disk.
func (f *file) Commit() error {
	if f.done {
		return nil
	}
	f.done = true
	defer f.cancel()
	err := f.buf.Flush()
	if err == nil && f.os != nil {
		err = f.os.Sync()
	}
	if err != nil {
		f.cancel() // a cancelled write publishes nothing
		_ = f.w.Close()
		return fmt.Errorf("blobstage: writing %s: %w", f.key, err)
	}
	if err := f.w.Close(); err != nil {
		return fmt.Errorf("blobstage: committing %s: %w", f.key, err)
	}
	if f.os != nil {
		if err := syncPath(filepath.Dir(filepath.Join(f.b.dir, filepath.FromSlash(f.key)))); err != nil {
			return fmt.Errorf("blobstage: syncing the directory of %s: %w", f.key, err)
		}
	}
	return nil
}

// Abort drops the object: nothing is published, the temporary file or
// the multipart upload is removed.
func (f *file) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.cancel()
	_ = f.w.Close() // cancelled: its error only says so
	return nil
}
