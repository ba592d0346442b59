package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// SavedCheckpoint is a checkpoint as it is kept outside the database: the
// JSON that GET /v1/audit/checkpoint answers, what a witness directory
// holds one file of per checkpoint and what a witness URL is POSTed. Only
// its JWS is trusted, once its signature verifies; the other fields are
// for people.
type SavedCheckpoint struct {
	Size int64     `json:"size"`
	Root []byte    `json:"root"` // base64 in JSON
	Time time.Time `json:"time"`
	KID  string    `json:"kid"`
	JWS  string    `json:"jws"`
}

// Saved is c as it is kept outside the database.
func Saved(c store.Checkpoint) SavedCheckpoint {
	return SavedCheckpoint{Size: c.Size, Root: c.Root[:], Time: c.At.UTC(), KID: c.KID, JWS: c.JWS}
}

// ParseSavedCheckpoint returns the JWS of a saved checkpoint: a
// SavedCheckpoint's JSON, or the compact JWS alone.
func ParseSavedCheckpoint(b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var sc SavedCheckpoint
		if err := json.Unmarshal(b, &sc); err != nil {
			return "", fmt.Errorf("not a saved checkpoint: %w", err)
		}
		b = []byte(sc.JWS)
	}
	if jws := string(b); strings.Count(jws, ".") == 2 && !strings.ContainsAny(jws, " \n\t") {
		return jws, nil
	}
	return "", errors.New("not a saved checkpoint: neither its JSON nor a compact JWS")
}

// Trusted is a checkpoint kept outside the database (a file given to
// `p2p audit verify --trusted-checkpoint`, a witness directory's file): a
// database-level attacker cannot delete it, so the log must still reach
// and agree with it.
type Trusted struct {
	Name string // where it came from, for reports
	JWS  string
}

// Witness receives a copy of every checkpoint signed, outside the
// database.
type Witness interface {
	// Publish hands c to the witness.
	Publish(ctx context.Context, c store.Checkpoint) error
	// String says where the witness is, for logs.
	String() string
}

// NewWitness returns the witness of a setting (P2P_AUDIT_WITNESS): nil for
// "", a URLWitness for an http(s) URL, else a DirWitness of that
// directory.
func NewWitness(spec string) Witness {
	switch {
	case spec == "":
		return nil
	case strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://"):
		return &URLWitness{URL: spec}
	}
	return DirWitness{Dir: spec}
}

// DirWitness keeps one file per checkpoint in a directory that the
// database's users cannot write: "<size, 20 digits>-<time>.json", a
// SavedCheckpoint. Names sort by size, then time.
type DirWitness struct{ Dir string }

// String is the directory.
func (d DirWitness) String() string { return d.Dir }

// fileTime is the time in a witness file's name: sortable, no colons.
const fileTime = "20060102T150405.000000Z"

// Publish writes c's file atomically: a temporary file in the directory,
// synced, then renamed, so that a reader never sees half a checkpoint.
func (d DirWitness) Publish(_ context.Context, c store.Checkpoint) error {
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(Saved(c), "", "  ")
	if err != nil {
		return err
	}
	name := filepath.Join(d.Dir, fmt.Sprintf("%020d-%s.json", c.Size, c.At.UTC().Format(fileTime)))
	tmp, err := os.CreateTemp(d.Dir, ".checkpoint-*.tmp")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename: nothing to remove
	if _, err = tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("audit witness %s: %w", d.Dir, err)
	}
	if dir, err := os.Open(d.Dir); err == nil { // make the rename durable
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// Files lists the directory's checkpoint files, oldest (smallest) first;
// none when the directory does not exist yet.
func (d DirWitness) Files() ([]string, error) {
	entries, err := os.ReadDir(d.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			out = append(out, filepath.Join(d.Dir, n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadTrusted reads a saved checkpoint file.
func ReadTrusted(path string) (Trusted, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Trusted{}, err
	}
	jws, err := ParseSavedCheckpoint(b)
	if err != nil {
		return Trusted{}, fmt.Errorf("%s: %w", path, err)
	}
	return Trusted{Name: path, JWS: jws}, nil
}

// URLWitness POSTs every checkpoint, as a SavedCheckpoint's JSON, to a
// URL: a service that another team or organisation runs. It cannot be
// read back, so it vouches for the log only to whoever reads it.
type URLWitness struct {
	URL    string
	Client *http.Client // nil: one with a 10 s timeout, no redirects
	// Attempts is how many times a failed POST is tried; 0: 3. Backoff
	// is the wait before the second, doubling after; 0: 500 ms.
	Attempts int
	Backoff  time.Duration
}

// String is the URL.
func (u *URLWitness) String() string { return u.URL }

var witnessClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Publish POSTs c, retrying network errors, 429 and 5xx answers; any 2xx
// is success.
func (u *URLWitness) Publish(ctx context.Context, c store.Checkpoint) error {
	body, err := json.Marshal(Saved(c))
	if err != nil {
		return err
	}
	client, attempts, wait := u.Client, u.Attempts, u.Backoff
	if client == nil {
		client = witnessClient
	}
	if attempts <= 0 {
		attempts = 3
	}
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	for i := 1; ; i++ {
		retry, err := u.post(ctx, client, body)
		if err == nil || !retry || i == attempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// post makes one attempt and says whether a failure is worth retrying.
func (u *URLWitness) post(ctx context.Context, client *http.Client, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("audit witness: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return false, nil
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return true, fmt.Errorf("audit witness %s: %s", u.URL, res.Status)
	}
	return false, fmt.Errorf("audit witness %s: %s", u.URL, res.Status)
}
