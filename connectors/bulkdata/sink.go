package bulkdata

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/p2p-payer/p2p/fault"
)

// Sink is where downloaded files go: Create opens the n-th file of a
// resource type; the caller writes it and then commits or aborts it.
type Sink interface {
	Create(resourceType string, n int) (SinkFile, error)
}

// SinkFile is one file being written to a sink. Exactly one of Commit and
// Abort takes effect; calling either after the other does nothing.
type SinkFile interface {
	io.Writer
	Commit() error // the file is complete: make it visible
	Abort() error  // the download failed: leave no trace
}

// DownloadTo downloads f into the file sink.Create(f.Type, n) returns,
// committing it on success and aborting it on any failure, so the sink
// only ever holds complete, checked files.
func (c *Client) DownloadTo(ctx context.Context, f OutputFile, requiresAccessToken bool, sink Sink, n int) (FileResult, error) {
	res := FileResult{Type: f.Type, URL: f.URL}
	if !resourceTypeRE.MatchString(f.Type) {
		return res, fault.New(fault.Validation, ErrTypeBadRequest, fmt.Sprintf("partner %s: download: type %.40q is not a resource type", c.cfg.Partner, f.Type))
	}
	sf, err := sink.Create(f.Type, n)
	if err != nil {
		return res, fault.Wrap(fault.Transport, ErrTypeSink, "partner "+c.cfg.Partner+": opening the "+f.Type+" file", err)
	}
	res, err = c.Download(ctx, f, requiresAccessToken, sf)
	if err != nil {
		_ = sf.Abort()
		return res, err
	}
	if err := sf.Commit(); err != nil {
		return res, fault.Wrap(fault.Transport, ErrTypeSink, "partner "+c.cfg.Partner+": committing the "+f.Type+" file", err)
	}
	return res, nil
}

// Discard is a Sink that keeps nothing (checks and digests only).
var Discard Sink = discardSink{}

type discardSink struct{}

func (discardSink) Create(string, int) (SinkFile, error) { return discardFile{}, nil }

type discardFile struct{}

func (discardFile) Write(p []byte) (int, error) { return len(p), nil }
func (discardFile) Commit() error               { return nil }
func (discardFile) Abort() error                { return nil }

// NDJSONDirSink writes files into a directory as <type>.<n>.ndjson, e.g.
// Patient.1.ndjson. Each file is written to a temporary name in the same
// directory, synced, and renamed into place on Commit: a reader (or a crash)
// never sees half a file under the final name. A file of the same name is
// replaced, so a retried download ends with one copy.
type NDJSONDirSink struct {
	Dir string
}

var _ Sink = (*NDJSONDirSink)(nil)

// NewNDJSONDirSink returns a sink writing into dir, creating it (mode
// 0700: the files hold PHI) if needed.
func NewNDJSONDirSink(dir string) (*NDJSONDirSink, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bulkdata: sink directory: %w", err)
	}
	return &NDJSONDirSink{Dir: dir}, nil
}

// FileName is the name of the n-th file of resourceType.
func FileName(resourceType string, n int) string {
	return fmt.Sprintf("%s.%d.ndjson", resourceType, n)
}

// Create opens a temporary file for the n-th file of resourceType.
func (s *NDJSONDirSink) Create(resourceType string, n int) (SinkFile, error) {
	// The type becomes part of a path: only a resource type name is safe.
	if !resourceTypeRE.MatchString(resourceType) || n < 1 {
		return nil, fmt.Errorf("bulkdata: sink: bad file %.40q #%d", resourceType, n)
	}
	name := FileName(resourceType, n)
	f, err := os.CreateTemp(s.Dir, "."+name+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("bulkdata: sink: %w", err)
	}
	return &DirFile{f: f, w: bufio.NewWriterSize(f, 256<<10), path: filepath.Join(s.Dir, name)}, nil
}

// DirFile is a file of an NDJSONDirSink being written.
type DirFile struct {
	f    *os.File
	w    *bufio.Writer
	path string
	done bool
}

// Path is where the file will be once committed.
func (d *DirFile) Path() string { return d.path }

// Write buffers p for the temporary file.
func (d *DirFile) Write(p []byte) (int, error) {
	if d.done {
		return 0, errors.New("bulkdata: sink: write after commit or abort")
	}
	return d.w.Write(p)
}

// Commit flushes and syncs the temporary file, renames it to Path and syncs
// the directory, so the file survives a crash once Commit returns.
func (d *DirFile) Commit() error {
	if d.done {
		return nil
	}
	d.done = true
	tmp := d.f.Name()
	err := d.w.Flush()
	if err == nil {
		err = d.f.Sync()
	}
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("bulkdata: sink: commit %s: %w", filepath.Base(d.path), err)
	}
	if dir, err := os.Open(filepath.Dir(d.path)); err == nil {
		err = dir.Sync()
		_ = dir.Close()
		if err != nil {
			return fmt.Errorf("bulkdata: sink: sync directory: %w", err)
		}
	}
	return nil
}

// Abort removes the temporary file.
func (d *DirFile) Abort() error {
	if d.done {
		return nil
	}
	d.done = true
	_ = d.f.Close()
	return os.Remove(d.f.Name())
}
