package bulkdata

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

func TestAllowList(t *testing.T) {
	base, _ := url.Parse("https://fhir.acme.example/r4")
	a, err := newAllowList(base, []string{"files.acme.example:8443", "*.blob.example", "[::1]:9000", "Other.Example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://fhir.acme.example/r4/bulkstatus/1", true},
		{"https://FHIR.acme.example:443/x", true}, // base host, any port, any case
		{"https://files.acme.example:8443/f", true},
		{"https://files.acme.example/f", false}, // wrong port
		{"https://a.blob.example/f", true},
		{"https://a.b.blob.example/f", true},
		{"https://blob.example/f", false}, // the wildcard is for subdomains
		{"https://evilblob.example/f", false},
		{"https://[::1]:9000/f", true},
		{"https://other.example/f", true},
		{"https://fhir.acme.example.evil.example/f", false},
		{"http://fhir.acme.example/r4/x", false}, // downgrade
		{"https://user:pw@fhir.acme.example/x", false},
		{"/relative", false},
		{"file:///etc/passwd", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if why := a.check(u); (why == "") != tt.ok {
			t.Errorf("%s: allowed %v (%s), want %v", tt.url, why == "", why, tt.ok)
		}
	}
	for _, bad := range []string{"", "host/path", "user@host", "*.", "h?x=1"} {
		if _, err := newAllowList(base, []string{bad}); err == nil {
			t.Errorf("allowed host %q accepted", bad)
		}
	}
	if _, err := New(Config{BaseURL: "ftp://x"}); err == nil {
		t.Error("ftp base URL accepted")
	}
	if _, err := New(Config{BaseURL: "https://u:p@x/fhir"}); err == nil {
		t.Error("base URL with credentials accepted")
	}
}

// Redirects are followed for GETs to allowed hosts only.
func TestDownloadRedirects(t *testing.T) {
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the token went to the storage host")
		}
		_, _ = w.Write([]byte(ndjson("Patient", 2)))
	}))
	defer storage.Close()
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.Token = "tok-123"
	s.RequiresAccessToken = true
	s.Files = []fakeFile{{Type: "Patient", Body: ndjson("Patient", 1)}}
	job := s.Job()
	redirect := injected{Status: http.StatusFound, Header: map[string]string{"Location": storage.URL + "/signed?sig=abc"}}

	// Not allow-listed: refused, nothing is sent to the storage host.
	c := newTestClient(t, s, clock, nil)
	s.Inject("file", redirect)
	_, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(job, 0)}, true, &strings.Builder{})
	wantFault(t, err, fault.Validation, fault.TypeEgressRefused)

	// Allow-listed: followed, without the token.
	c = newTestClient(t, s, clock, func(cfg *Config) { cfg.AllowedHosts = []string{hostOf(t, storage.URL)} })
	s.Inject("file", redirect)
	res, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(job, 0)}, true, &strings.Builder{})
	if err != nil || res.Resources != 2 {
		t.Fatalf("redirect to an allowed host: %+v, %v", res, err)
	}
}

// A download whose body stops flowing is cut after the idle timeout.
func TestDownloadIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", MediaFHIRNDJSON)
		_, _ = w.Write([]byte(ndjson("Patient", 1)))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(Config{BaseURL: srv.URL, DownloadIdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Download(context.Background(), OutputFile{Type: "Patient", URL: srv.URL + "/f"}, false, &strings.Builder{})
	if !errors.Is(err, errIdle) {
		t.Fatalf("stalled download: %v", err)
	}
	wantFault(t, err, fault.Transport, ErrTypeUnreachable)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to notice", d)
	}
}

// A body cut short (fewer bytes than Content-Length) is a transport error,
// never a short file taken as complete.
func TestDownloadCutShort(t *testing.T) {
	body := ndjson("Patient", 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)+100))
		_, _ = w.Write([]byte(body))
		// The handler returns with the body short: the server closes.
	}))
	defer srv.Close()
	c, _ := New(Config{BaseURL: srv.URL})
	_, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: srv.URL + "/f"}, false, &strings.Builder{})
	wantFault(t, err, fault.Transport, ErrTypeUnreachable)
}

// countingTokens hands out tok-1, tok-2, ... and records invalidations.
type countingTokens struct {
	n           atomic.Int64
	invalidated atomic.Int64
	current     atomic.Value
}

func (c *countingTokens) Token(context.Context) (string, error) {
	if v, ok := c.current.Load().(string); ok && v != "" {
		return v, nil
	}
	t := "tok-" + strconv.FormatInt(c.n.Add(1), 10)
	c.current.Store(t)
	return t, nil
}

func (c *countingTokens) Invalidate(string) {
	c.invalidated.Add(1)
	c.current.Store("")
}

// A 401 drops the token and retries once with a fresh one; a second 401
// is an auth error.
func TestRetryOnceWithFreshToken(t *testing.T) {
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.Token = "tok-2"
	tokens := &countingTokens{}
	c := newTestClient(t, s, clock, func(cfg *Config) { cfg.Tokens = tokens })
	if _, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel, Types: []string{"Patient"}}); err != nil {
		t.Fatalf("kick-off with a revoked token: %v", err)
	}
	reqs := s.Requests("/fhir/Patient")
	if len(reqs) != 2 || reqs[0].Auth != "Bearer tok-1" || reqs[1].Auth != "Bearer tok-2" || reqs[0].Body != reqs[1].Body || reqs[1].Body == "" {
		t.Fatalf("requests %+v", reqs)
	}
	s.Token = "never"
	_, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
	wantFault(t, err, fault.Auth, ErrTypeAuth)
	if tokens.invalidated.Load() != 2 {
		t.Errorf("%d invalidations, want 2", tokens.invalidated.Load())
	}
}

func TestDelete(t *testing.T) {
	for _, tt := range []struct {
		answer injected
		class  fault.Class
	}{
		{injected{Status: 202}, ""},
		{injected{Status: 200}, ""},
		{injected{Status: 204}, ""},
		{injected{Status: 404}, ""},
		{injected{Status: 410}, ""},
		{injected{Status: 500}, fault.Downstream},
		{injected{Status: 429, Header: map[string]string{"Retry-After": "5"}}, fault.Downstream},
		{injected{Status: 401}, fault.Auth},
		{injected{Status: 405}, fault.Business},
	} {
		clock := newFakeClock()
		s := newBulkServer(t, clock)
		c := newTestClient(t, s, clock, nil)
		s.Inject("delete", tt.answer)
		err := c.Delete(context.Background(), s.Base()+"/bulkstatus/"+s.Job())
		if got := fault.ClassOf(err); (err == nil) != (tt.class == "") || (err != nil && got != tt.class) {
			t.Errorf("DELETE answered %d: %v, want class %q", tt.answer.Status, err, tt.class)
		}
	}
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	c := newTestClient(t, s, clock, nil)
	err := c.Delete(context.Background(), "https://evil.example/bulkstatus/1")
	wantFault(t, err, fault.Validation, ErrTypeHostNotAllowed)
}

func TestDirSink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	s, err := NewNDJSONDirSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("sink directory: %v %v", fi.Mode(), err)
	}
	f, _ := s.Create("Patient", 1)
	_, _ = f.Write([]byte("a\n"))
	if _, err := os.Stat(filepath.Join(dir, "Patient.1.ndjson")); !os.IsNotExist(err) {
		t.Fatal("file visible before commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Fatal("abort after commit must do nothing")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Patient.1.ndjson")); string(b) != "a\n" {
		t.Fatalf("committed %q", b)
	}
	// A retried download replaces the file; an aborted one leaves nothing.
	f, _ = s.Create("Patient", 1)
	_, _ = f.Write([]byte("b\n"))
	_ = f.Commit()
	g, _ := s.Create("Observation", 2)
	_, _ = g.Write([]byte("half"))
	if err := g.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("x")); err == nil {
		t.Error("write after abort accepted")
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 || names[0].Name() != "Patient.1.ndjson" {
		t.Fatalf("directory holds %v", names)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "Patient.1.ndjson")); string(b) != "b\n" {
		t.Fatalf("replaced file holds %q", b)
	}
	for _, bad := range []struct {
		typ string
		n   int
	}{{"../Patient", 1}, {"Patient/x", 1}, {"", 1}, {"Patient", 0}} {
		if _, err := s.Create(bad.typ, bad.n); err == nil {
			t.Errorf("Create(%q, %d) accepted", bad.typ, bad.n)
		}
	}
}

func TestPrintable(t *testing.T) {
	if got := printable("50%\x00 done\x1b[2J", 100); got != "50% done[2J" {
		t.Errorf("printable: %q", got)
	}
	if got := printable(strings.Repeat("é", 80), 101); got != strings.Repeat("é", 50) {
		t.Errorf("truncation splits a rune: %q", got)
	}
}
