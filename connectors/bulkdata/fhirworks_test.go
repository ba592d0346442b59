package bulkdata

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

// TestAgainstFHIRWorks runs the client against an independent Bulk Data
// server: FHIR Works on AWS's export routes (npm fhir-works-on-aws-routing
// 6.6.2, unmodified) in testdata/indep/server.js, over in-memory storage
// seeded with testdata/indep/seed.json. Status codes, headers, the
// manifest's shape and the error bodies are that package's; the harness
// only stores jobs and files (see server.js for the exact split).
//
// It needs Node.js and the harness installed (npm ci --prefix
// connectors/bulkdata/testdata/indep, as .ci/run does) and
// P2P_BULK_INDEP_DIR pointing at it; it is skipped only when that is unset.
func TestAgainstFHIRWorks(t *testing.T) {
	dir := os.Getenv("P2P_BULK_INDEP_DIR")
	if dir == "" {
		t.Skip("P2P_BULK_INDEP_DIR is not set: run `npm ci --prefix connectors/bulkdata/testdata/indep` and set it to that directory (.ci/run does)")
	}
	fw := startFHIRWorks(t, dir)
	newClient := func(t *testing.T, token string) *Client {
		t.Helper()
		c, err := New(Config{Partner: "fhirworks", BaseURL: fw.Base, AllowedHosts: []string{fw.Files}, Tokens: StaticToken(token)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient(t, fw.Token)
	ctx := t.Context()

	// The subtests run in order: the server allows one running export per
	// client, so each ends its export before the next kicks off.
	t.Run("group export, every type", func(t *testing.T) {
		start := time.Now()
		statusURL := kickOffFW(t, c, fw, ExportRequest{Level: GroupLevel, GroupID: "g1", Method: http.MethodGet})
		done, progress := pollFW(t, c, statusURL)
		if len(progress) == 0 {
			t.Error("no in-progress answer before the manifest")
		}
		for _, p := range progress {
			if p.XProgress != "in-progress" || p.RetryAfter != "" || p.Throttled {
				t.Errorf("in progress: %+v, want X-Progress in-progress and no Retry-After", p)
			}
		}
		m := done.Manifest
		if m.RequiresAccessToken || len(m.Error) != 0 || len(m.Deleted) != 0 {
			t.Errorf("manifest: requiresAccessToken %v, %d error and %d deleted files", m.RequiresAccessToken, len(m.Error), len(m.Deleted))
		}
		if !strings.HasPrefix(m.Request, fw.Base+"/Group/g1/$export") {
			t.Errorf("manifest request %q", m.Request)
		}
		if m.TransactionTime.Before(start.Add(-time.Second)) || m.TransactionTime.After(time.Now()) {
			t.Errorf("transactionTime %v is not the kick-off's time (%v)", m.TransactionTime, start)
		}
		// Observation has 5 resources, so two files (4 a file): the
		// client numbers them 1 and 2.
		types := make([]string, 0, len(m.Output))
		for _, f := range m.Output {
			types = append(types, f.Type)
		}
		slices.Sort(types)
		if want := []string{"Condition", "Coverage", "ExplanationOfBenefit", "Observation", "Observation", "Patient"}; !slices.Equal(types, want) {
			t.Errorf("output file types %v, want %v", types, want)
		}
		downloadFW(t, c, m, map[string][]string{
			"Patient":              {"pat-1", "pat-2", "pat-3"},
			"Observation":          {"obs-1", "obs-2", "obs-3", "obs-4", "obs-5"},
			"Condition":            {"cond-1", "cond-2", "cond-3"},
			"Coverage":             {"cov-1", "cov-2", "cov-3"},
			"ExplanationOfBenefit": {"eob-1", "eob-2"},
		})

		// FHIR Works on AWS refuses to DELETE a completed export (400,
		// OperationOutcome invalid), where the IG lets a server take it as
		// "the client is done with the files". The client reports the
		// refusal; it does not count it as deleted.
		err := c.Delete(ctx, statusURL)
		wantFault(t, err, fault.Business, ErrTypeRejected)
		if HTTPStatus(err) != http.StatusBadRequest || Outcome(err).Codes() != "invalid" {
			t.Errorf("delete of a completed export: %v", err)
		}
	})

	t.Run("_type and _since", func(t *testing.T) {
		statusURL := kickOffFW(t, c, fw, ExportRequest{Level: GroupLevel, GroupID: "g1", Method: http.MethodGet,
			Types: []string{"Patient", "Observation", "Coverage"}, Since: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
		done, _ := pollFW(t, c, statusURL)
		if !strings.Contains(done.Manifest.Request, "_since=2024-01-01T00%3A00%3A00.000Z") {
			t.Errorf("manifest request %q does not carry our _since", done.Manifest.Request)
		}
		downloadFW(t, c, done.Manifest, map[string][]string{
			"Patient":     {"pat-2"},
			"Observation": {"obs-3", "obs-5"},
			"Coverage":    {"cov-1"},
		})
	})

	t.Run("failed export", func(t *testing.T) {
		// The export job fails (no such Group). FHIR Works on AWS answers
		// the poll 500 with an OperationOutcome whose code is exception,
		// which the IG's IssueType puts among the transient codes ("ask
		// again"): the client reports a retryable error, not a failed
		// export, and the caller's poll budget ends it.
		statusURL := kickOffFW(t, c, fw, ExportRequest{Level: GroupLevel, GroupID: "no-such-group", Method: http.MethodGet})
		var err error
		for attempt := 1; attempt <= 50; attempt++ {
			var st Status
			if st, err = c.Poll(ctx, statusURL); err != nil {
				break
			}
			if st.State != StateInProgress {
				t.Fatalf("poll %d: %+v", attempt, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		wantFault(t, err, fault.Downstream, ErrTypeUnavailable)
		if HTTPStatus(err) != http.StatusInternalServerError || Outcome(err).Codes() != "exception" {
			t.Errorf("failed export: %v", err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// FHIR Works on AWS has no Patient-level export.
		_, err := c.KickOff(ctx, ExportRequest{Level: PatientLevel, Method: http.MethodGet})
		wantFault(t, err, fault.Business, ErrTypeRejected)
		if HTTPStatus(err) != http.StatusBadRequest || Outcome(err).Codes() != "invalid" {
			t.Errorf("Patient/$export: %v", err)
		}
		// A token it does not know: 401, OperationOutcome security.
		_, err = newClient(t, "not-"+fw.Token).KickOff(ctx, ExportRequest{Level: GroupLevel, GroupID: "g1", Method: http.MethodGet})
		wantFault(t, err, fault.Auth, ErrTypeAuth)
		if HTTPStatus(err) != http.StatusUnauthorized || Outcome(err).Codes() != "security" {
			t.Errorf("wrong token: %v", err)
		}
		// A status URL it never handed out: 404, which the client reads
		// as "the export is gone, kick off again".
		_, err = c.Poll(ctx, fw.Base+"/$export/00000000-0000-4000-8000-000000000000")
		wantFault(t, err, fault.Business, ErrTypeExpired)
	})

	t.Run("throttled kick-off, then cancel", func(t *testing.T) {
		statusURL := kickOffFW(t, c, fw, ExportRequest{Level: GroupLevel, GroupID: "g2", Method: http.MethodGet})
		// One running export per client: a second kick-off is 429 with
		// Retry-After 900, which the client hands on to the caller.
		_, err := c.KickOff(ctx, ExportRequest{Level: GroupLevel, GroupID: "g1", Method: http.MethodGet})
		f := faultOf(t, err, fault.Downstream, ErrTypeThrottled)
		if HTTPStatus(err) != http.StatusTooManyRequests || f.RetryAfter != 15*time.Minute {
			t.Errorf("second kick-off: %v, RetryAfter %v", err, f.RetryAfter)
		}
		if err := c.Delete(ctx, statusURL); err != nil {
			t.Fatalf("delete of a running export: %v", err)
		}
		// After a DELETE the IG has the status URL answer 404; FHIR Works
		// on AWS answers 200 with a line of text. The client refuses it as
		// a manifest rather than taking it for a complete export.
		_, err = c.Poll(ctx, statusURL)
		wantFault(t, err, fault.Validation, ErrTypeBadResponse)
	})
}

// fhirWorks is a running testdata/indep/server.js.
type fhirWorks struct {
	Base  string `json:"base"`  // FHIR base URL
	Files string `json:"files"` // host:port of the file store
	Token string `json:"-"`     // the bearer token it requires
}

// startFHIRWorks starts the harness in dir and stops it when t ends. Any
// failure to start fails the test.
func startFHIRWorks(t *testing.T, dir string) *fhirWorks {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("P2P_BULK_INDEP_DIR is set but Node.js is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fhir-works-on-aws-routing", "package.json")); err != nil {
		t.Fatalf("P2P_BULK_INDEP_DIR=%s: the harness is not installed (npm ci --prefix %s): %v", dir, dir, err)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	fw := &fhirWorks{Token: hex.EncodeToString(tok[:])}

	cmd := exec.Command(node, "server.js", "0", "--watch-stdin")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BULK_TOKEN="+fw.Token, "EXPORT_DELAY_MS=700", "FILE_MAX_RESOURCES=4")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe() // closed on cleanup: the server exits with us
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the harness: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("harness stderr (last 4 KiB):\n%s", stderr.Tail(4<<10))
		}
	})
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(stdout).ReadBytes('\n')
		line <- b
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case b := <-line:
		if err := json.Unmarshal(b, fw); err != nil || fw.Base == "" || fw.Files == "" {
			t.Fatalf("harness did not start: first line %q (%v); stderr:\n%s", b, err, stderr.Tail(4<<10))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("harness did not print its address within 30 s; stderr:\n%s", stderr.Tail(4<<10))
	}
	t.Logf("FHIR Works on AWS routing at %s, files at %s", fw.Base, fw.Files)
	return fw
}

// kickOffFW kicks r off and checks where the status URL points.
func kickOffFW(t *testing.T, c *Client, fw *fhirWorks, r ExportRequest) string {
	t.Helper()
	statusURL, err := c.KickOff(t.Context(), r)
	if err != nil {
		t.Fatalf("kick-off: %v", err)
	}
	if !strings.HasPrefix(statusURL, fw.Base+"/$export/") {
		t.Fatalf("status URL %s", statusURL)
	}
	return statusURL
}

// pollFW polls until the export is complete, sleeping NextPollDelay in
// real time (the server sends no Retry-After while in progress, so that is
// the backoff, shortened for a test).
func pollFW(t *testing.T, c *Client, statusURL string) (*Complete, []InProgress) {
	t.Helper()
	policy := PollPolicy{MinDelay: 50 * time.Millisecond, Initial: 200 * time.Millisecond, MaxBackoff: time.Second}
	var seen []InProgress
	for attempt := 1; attempt <= 60; attempt++ {
		st, err := c.Poll(t.Context(), statusURL)
		if err != nil {
			t.Fatalf("poll %d: %v", attempt, err)
		}
		switch st.State {
		case StateComplete:
			return st.Complete, seen
		case StateInProgress:
			seen = append(seen, *st.InProgress)
			time.Sleep(NextPollDelay(st.InProgress.RetryAfter, st.InProgress.ReceivedAt, attempt, policy))
		default:
			t.Fatalf("poll %d: %+v", attempt, st)
		}
	}
	t.Fatal("the export never completed")
	return nil, nil
}

// downloadFW downloads every output file into a directory sink and checks
// that the files hold exactly the resources want lists, by type and id.
func downloadFW(t *testing.T, c *Client, m Manifest, want map[string][]string) {
	t.Helper()
	dir := t.TempDir()
	sink, err := NewNDJSONDirSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	seq := OutputSeq(m.Output)
	counts := map[string]int64{}
	for i, f := range m.Output {
		res, err := c.DownloadTo(t.Context(), f, m.RequiresAccessToken, sink, seq[i])
		if err != nil {
			t.Fatalf("download %s #%d: %v", f.Type, seq[i], err)
		}
		counts[f.Type] += res.Resources
	}
	got := map[string][]string{}
	for typ := range counts {
		for n := 1; ; n++ {
			b, err := os.ReadFile(filepath.Join(dir, FileName(typ, n)))
			if os.IsNotExist(err) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
				var r struct{ ResourceType, ID string }
				if err := json.Unmarshal(line, &r); err != nil || r.ResourceType != typ {
					t.Fatalf("%s: line %q", FileName(typ, n), line)
				}
				got[typ] = append(got[typ], r.ID)
			}
		}
		slices.Sort(got[typ])
		if int64(len(got[typ])) != counts[typ] {
			t.Errorf("%s: the client counted %d resources, the files hold %d", typ, counts[typ], len(got[typ]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("exported types %v, want %v", got, want)
	}
	for typ, ids := range want {
		if !slices.Equal(got[typ], ids) {
			t.Errorf("%s: exported %v, want %v", typ, got[typ], ids)
		}
	}
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Tail returns the last n bytes written.
func (l *lockedBuffer) Tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	return string(b[max(0, len(b)-n):])
}
