package blobstage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/internal/blobstage/s3test"
)

// backend is a bucket under test and, for a file bucket, its directory.
type backend struct {
	name string
	open func(t *testing.T) *blobstage.Bucket
}

// backends are the two kinds of bucket: a directory (fileblob) and S3
// (s3blob against gofakes3 on loopback).
var backends = []backend{
	{"file", func(t *testing.T) *blobstage.Bucket {
		b, err := blobstage.OpenDir(filepath.Join(t.TempDir(), "imports"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}},
	{"file-url", func(t *testing.T) *blobstage.Bucket {
		b, err := blobstage.Open(context.Background(), "file://"+filepath.ToSlash(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}},
	{"s3", func(t *testing.T) *blobstage.Bucket {
		srv := s3test.Start(t, "imports")
		b, err := blobstage.Open(context.Background(), srv.BucketURL("imports"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		if err := b.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		return b
	}},
}

func stage(t *testing.T, b *blobstage.Bucket, id string, round int, errorFiles bool, typ string, n int, body string) string {
	t.Helper()
	s, err := b.Stage(context.Background(), id, round, errorFiles)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Create(typ, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, body); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(body))
	return hex.EncodeToString(h[:])
}

func keys(t *testing.T, b *blobstage.Bucket, prefix string) []string {
	t.Helper()
	ks, err := b.Keys(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// A round staged, promoted, checked and sealed: the delivered files hold
// the staged bytes, the marker is there, nothing is left staged (earlier
// rounds' leftovers neither); promoting and sealing again changes nothing.
func TestStageDeliverSeal(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			ctx := context.Background()
			b := bk.open(t)
			stage(t, b, "t1", 1, false, "Patient", 1, `{"resourceType":"Patient","id":"old"}`+"\n") // an earlier round
			pat := stage(t, b, "t1", 2, false, "Patient", 1, `{"resourceType":"Patient","id":"p"}`+"\n")
			cov := stage(t, b, "t1", 2, false, "Coverage", 2, `{"resourceType":"Coverage","id":"c"}`+"\n")
			oo := stage(t, b, "t1", 2, true, "OperationOutcome", 1, `{"resourceType":"OperationOutcome","id":"e"}`+"\n")

			// What a retried download of Coverage.2 may still add is
			// the round's other files' bytes.
			all, err := b.StagedBytes(ctx, "t1", 2, "")
			if err != nil || all != int64(35+37+46) {
				t.Fatalf("staged bytes %d, %v", all, err)
			}
			but, err := b.StagedBytes(ctx, "t1", 2, blobstage.StagedKey("t1", 2, false, "Coverage", 2))
			if err != nil || but != all-37 {
				t.Fatalf("staged bytes but Coverage.2: %d, %v", but, err)
			}

			if sealed, err := b.Sealed(ctx, "t1"); err != nil || sealed {
				t.Fatalf("sealed before delivery: %v, %v", sealed, err)
			}
			for range 2 { // a retry after a crash before the seal copies again
				if n, err := b.Promote(ctx, "t1", 2); err != nil || n != 3 {
					t.Fatalf("promote: %d, %v", n, err)
				}
			}
			for key, want := range map[string]string{
				blobstage.DeliveredKey("t1", false, "Patient", 1):         pat,
				blobstage.DeliveredKey("t1", false, "Coverage", 2):        cov,
				blobstage.DeliveredKey("t1", true, "OperationOutcome", 1): oo,
			} {
				if got, err := b.Digest(ctx, key); err != nil || got != want {
					t.Errorf("%s: digest %s, %v; want %s", key, got, err, want)
				}
			}
			for range 2 {
				if err := b.Seal(ctx, "t1", []byte(`{"receipt_id":"r"}`)); err != nil {
					t.Fatal(err)
				}
			}
			if sealed, err := b.Sealed(ctx, "t1"); err != nil || !sealed {
				t.Fatalf("not sealed: %v, %v", sealed, err)
			}
			want := []string{"t1/Coverage.2.ndjson", "t1/Patient.1.ndjson", "t1/_delivered.json", "t1/error/OperationOutcome.1.ndjson"}
			if got := keys(t, b, "t1/"); !slices.Equal(got, want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
			if got := keys(t, b, blobstage.StagingRoot); len(got) != 0 {
				t.Errorf("left staged: %v", got)
			}
			if existed, err := b.Discard(ctx, "t1"); err != nil || existed {
				t.Errorf("discard after the seal: %v, %v", existed, err)
			}
		})
	}
}

// A download that fails (Abort) or is still being written (neither
// Commit nor Abort yet) leaves nothing under a final key; Discard removes
// every staged object of the transfer, of every round, and nobody else's.
func TestAbortAndDiscard(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			ctx := context.Background()
			b := bk.open(t)
			s, err := b.Stage(ctx, "t1", 1, false)
			if err != nil {
				t.Fatal(err)
			}
			f, err := s.Create("Patient", 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(f, strings.Repeat(`{"resourceType":"Patient","id":"p"}`+"\n", 1000)); err != nil {
				t.Fatal(err)
			}
			if err := f.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := f.Commit(); err != nil { // after Abort: nothing
				t.Fatal(err)
			}
			if got := keys(t, b, blobstage.StagedPrefix("t1")); len(got) != 0 {
				t.Fatalf("an aborted download left %v", got)
			}

			stage(t, b, "t1", 1, false, "Patient", 1, "{}\n")
			stage(t, b, "t1", 2, true, "OperationOutcome", 1, "{}\n")
			stage(t, b, "t2", 1, false, "Patient", 1, "{}\n")
			pending, err := s.Create("Coverage", 1) // a download in flight
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(pending, "{}\n"); err != nil {
				t.Fatal(err)
			}
			for _, k := range keys(t, b, blobstage.StagedPrefix("t1")) {
				if strings.HasSuffix(k, "Coverage.1.ndjson") {
					t.Errorf("a file being written is visible as %s", k)
				}
			}
			_ = pending.Abort()

			existed, err := b.Discard(ctx, "t1")
			if err != nil || !existed {
				t.Fatalf("discard: %v, %v", existed, err)
			}
			if got := keys(t, b, blobstage.StagedPrefix("t1")); len(got) != 0 {
				t.Errorf("left after discard: %v", got)
			}
			if got := keys(t, b, blobstage.StagedPrefix("t2")); len(got) != 1 {
				t.Errorf("another transfer's staged files: %v", got)
			}
			if existed, err := b.Discard(ctx, "t1"); err != nil || existed {
				t.Errorf("discard again: %v, %v", existed, err)
			}
			if d := b.Dir(); d != "" {
				if _, err := os.Stat(filepath.Join(d, ".staging", "t1")); !os.IsNotExist(err) {
					t.Errorf("the staging directory of t1 is left: %v", err)
				}
			}
		})
	}
}

// In a file bucket, the layout is the import directory's of old
// (P2P_IMPORT_DIR/.staging/<transfer>/round-<n>/, P2P_IMPORT_DIR/<transfer>/),
// the files hold PHI and are 0600, the directories 0700, a temporary file
// a killed process left behind is removed by Discard, and no metadata
// files lie beside the data.
func TestFileBucketLayoutAndModes(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "imports")
	b, err := blobstage.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	stage(t, b, "t1", 1, false, "Patient", 1, "{}\n")
	stage(t, b, "t1", 1, true, "OperationOutcome", 1, "{}\n")
	if _, err := b.Promote(ctx, "t1", 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(ctx, "t1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			got = append(got, filepath.ToSlash(rel))
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"t1/Patient.1.ndjson", "t1/_delivered.json", "t1/error/OperationOutcome.1.ndjson"}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, ".staging", "t1")); !os.IsNotExist(err) {
		t.Errorf("staging directory left after the seal: %v", err)
	}

	stage(t, b, "t2", 1, false, "Patient", 1, "{}\n")
	stray := filepath.Join(dir, ".staging", "t2", "round-1", "Coverage.1.ndjson.18c0ffee.tmp")
	if err := os.WriteFile(stray, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := b.StagedBytes(ctx, "t2", 1, ""); err != nil || n != 3 {
		t.Errorf("staged bytes %d, %v: a temporary file is not staged", n, err)
	}
	if _, err := b.Discard(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".staging", "t2")); !os.IsNotExist(err) {
		t.Errorf("discard left %v", err)
	}
}

// What Open refuses, without quoting the URL's options or credentials.
func TestOpenRefuses(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"s3://AKIAEXAMPLE:hunter2@imports?region=us-east-1", "credentials"},
		{"gs://imports", "not s3 or file"},
		{"file://host/dir", "file:///"},
		{"file:///dir?create_dir=1", "file:///"},
		{"s3://imports?region=us-east-1&frobnicate=hunter2", "s3://imports"},
		{"::", "not a URL"},
	} {
		_, err := blobstage.Open(context.Background(), c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.url, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error quotes the URL: %v", c.url, err)
		}
	}
	for _, id := range []string{"", "..", "a/b", strings.Repeat("x", 129)} {
		if blobstage.ValidID(id) {
			t.Errorf("ValidID(%q)", id)
		}
	}
	b, err := blobstage.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stage(context.Background(), "../x", 1, false); err != blobstage.ErrBadID {
		t.Errorf("stage ../x: %v", err)
	}
}

// A file larger than the multipart threshold (16 MiB) goes up to S3 in
// parts, and is copied and read back whole.
func TestLargeFileOnS3(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t, "imports")
	b, err := blobstage.Open(ctx, srv.BucketURL("imports"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	line := `{"resourceType":"Observation","id":"o","valueString":"` + strings.Repeat("x", 1000) + `"}` + "\n"
	want := stage(t, b, "t1", 1, false, "Observation", 1, strings.Repeat(line, 20<<10)) // ~20 MiB
	if srv.Requests("POST") == 0 {
		t.Error("no multipart upload: the file went up in one PUT")
	}
	// Copied by the server, then (past CopyLimit, 5 GiB on S3) read and
	// uploaded again in parts.
	defer func(l int64) { blobstage.CopyLimit = l }(blobstage.CopyLimit)
	for _, limit := range []int64{blobstage.CopyLimit, 1 << 20} {
		blobstage.CopyLimit = limit
		posts := srv.Requests("POST")
		if _, err := b.Promote(ctx, "t1", 1); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Digest(ctx, blobstage.DeliveredKey("t1", false, "Observation", 1)); err != nil || got != want {
			t.Fatalf("copy limit %d: digest %s, %v; want %s", limit, got, err, want)
		}
		streamed := srv.Requests("POST") > posts // a new multipart upload, not a CopyObject (PUT)
		if streamed != (limit == 1<<20) {
			t.Errorf("copy limit %d: streamed %v", limit, streamed)
		}
	}
}
