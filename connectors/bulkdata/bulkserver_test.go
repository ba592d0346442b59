package bulkdata

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the one clock of a test's client, server and polling loop:
// the loop advances it by NextPollDelay instead of sleeping.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	real bool // time.Now, for tests that really sleep
}

func newFakeClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	if c.real {
		return time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeFile is one file of the exports a bulkServer makes.
type fakeFile struct {
	Type      string
	Count     *int64                  // put in the manifest as is
	Body      string                  // the file's content, or
	Stream    func(w io.Writer) error // a generator (benchmarks)
	ErrorFile bool                    // listed under error[] rather than output[]
}

// injected is a canned answer the server gives before its own logic.
type injected struct {
	Status int
	Header map[string]string
	Body   string
}

// seen is one request the server received.
type seen struct {
	Method, Path, Query string
	Auth                string
	Accept, Prefer      string
	ContentType         string
	Body                string
	At                  time.Time // fake clock
}

type bulkJob struct {
	id        string
	polls     int
	notBefore time.Time
	expired   bool
	deleted   bool
}

// bulkServer is a Bulk Data server (IG v2) for tests: async kick-off with
// a relative or absolute Content-Location, X-Progress and Retry-After
// while in progress, a manifest with Expires, files that can expire (410),
// DELETE, bearer tokens (requiresAccessToken enforced on files), and
// canned failures per route. It records every request and every poll that
// came earlier than its Retry-After asked.
type bulkServer struct {
	t     testing.TB
	clock *fakeClock
	srv   *httptest.Server

	// Set before use.
	Token               string // bearer token required on every call ("" none)
	RequiresAccessToken bool   // files require the token too
	PollsBeforeDone     int
	RetryAfter          func(poll int, now time.Time) string // header of the poll-th 202; nil: none
	AbsoluteLocation    bool
	Files               []fakeFile
	FileHost            string // host:port of file URLs ("" the server's own)

	mu         sync.Mutex
	jobs       map[string]*bulkJob
	nextID     int
	inject     map[string][]injected // route → answers to give first
	requests   []seen
	violations []string
}

func newBulkServer(t testing.TB, clock *fakeClock) *bulkServer {
	s := &bulkServer{t: t, clock: clock, jobs: map[string]*bulkJob{}, inject: map[string][]injected{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/fhir/Patient/{op}", s.kickoff)
	mux.HandleFunc("/fhir/Group/{id}/{op}", s.kickoff)
	mux.HandleFunc("GET /fhir/bulkstatus/{job}", s.status)
	mux.HandleFunc("DELETE /fhir/bulkstatus/{job}", s.delete)
	mux.HandleFunc("GET /files/{job}/{n}", s.file)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// Base is the FHIR base URL.
func (s *bulkServer) Base() string { return s.srv.URL + "/fhir" }

// Inject queues answers for route: "kickoff", "status", "file", "delete".
func (s *bulkServer) Inject(route string, answers ...injected) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[route] = append(s.inject[route], answers...)
}

// Job creates a finished job and returns its id, for tests that start at
// the download.
func (s *bulkServer) Job() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := "job" + strconv.Itoa(s.nextID)
	s.jobs[id] = &bulkJob{id: id}
	return id
}

// FileURL is the URL of file n of job.
func (s *bulkServer) FileURL(job string, n int) string {
	return fmt.Sprintf("%s/files/%s/%d", s.srv.URL, job, n)
}

// ExpireAll makes every job and its files gone: 404 on status, 410 on files.
func (s *bulkServer) ExpireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		j.expired = true
	}
}

func (s *bulkServer) Requests(pathPrefix string) []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []seen
	for _, r := range s.requests {
		if strings.HasPrefix(r.Path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

func (s *bulkServer) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// begin records r and answers it from the injected queue of route, if any.
func (s *bulkServer) begin(route string, w http.ResponseWriter, r *http.Request) (handled bool) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.requests = append(s.requests, seen{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
		Accept: r.Header.Get("Accept"), Prefer: r.Header.Get("Prefer"), ContentType: r.Header.Get("Content-Type"),
		Body: string(body), At: s.clock.Now(),
	})
	q := s.inject[route]
	var in *injected
	if len(q) > 0 {
		in = &q[0]
		s.inject[route] = q[1:]
	}
	s.mu.Unlock()
	if in == nil {
		return false
	}
	for k, v := range in.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(in.Status)
	_, _ = io.WriteString(w, in.Body)
	return true
}

func (s *bulkServer) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Token == "" || r.Header.Get("Authorization") == "Bearer "+s.Token {
		return true
	}
	writeOutcome(w, http.StatusUnauthorized, "login", "bearer token required")
	return false
}

func writeOutcome(w http.ResponseWriter, status int, code, diag string) {
	w.Header().Set("Content-Type", MediaFHIRJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(OperationOutcome{ResourceType: "OperationOutcome", Issue: []Issue{{Severity: "error", Code: code, Diagnostics: diag}}})
}

func (s *bulkServer) kickoff(w http.ResponseWriter, r *http.Request) {
	if s.begin("kickoff", w, r) || !s.authorized(w, r) {
		return
	}
	op := r.PathValue("op")
	if op != "$export" && op != "$davinci-data-export" || (op == "$davinci-data-export" && r.PathValue("id") == "") {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such operation")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeOutcome(w, http.StatusMethodNotAllowed, "not-supported", "GET or POST")
		return
	}
	if r.Header.Get("Prefer") != "respond-async" || r.Header.Get("Accept") != MediaFHIRJSON {
		writeOutcome(w, http.StatusBadRequest, "invalid", "Prefer: respond-async and Accept: application/fhir+json are required")
		return
	}
	s.mu.Lock()
	s.nextID++
	id := "job" + strconv.Itoa(s.nextID)
	s.jobs[id] = &bulkJob{id: id}
	s.mu.Unlock()
	loc := "bulkstatus/" + id // relative to the FHIR base
	if s.AbsoluteLocation {
		loc = s.Base() + "/bulkstatus/" + id
	}
	w.Header().Set("Content-Location", loc)
	w.WriteHeader(http.StatusAccepted)
}

func (s *bulkServer) job(w http.ResponseWriter, r *http.Request) *bulkJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[r.PathValue("job")]
	if j == nil || j.expired || j.deleted {
		return nil
	}
	return j
}

func (s *bulkServer) status(w http.ResponseWriter, r *http.Request) {
	if s.begin("status", w, r) || !s.authorized(w, r) {
		return
	}
	j := s.job(w, r)
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such job")
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	if now.Before(j.notBefore) {
		s.violations = append(s.violations, fmt.Sprintf("%s polled at t0+%v, asked not before t0+%v", j.id, now.Sub(t0), j.notBefore.Sub(t0)))
		s.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		writeOutcome(w, http.StatusTooManyRequests, "throttled", "too early")
		return
	}
	j.polls++
	poll := j.polls
	s.mu.Unlock()
	if poll <= s.PollsBeforeDone {
		ra := ""
		if s.RetryAfter != nil {
			ra = s.RetryAfter(poll, now)
		}
		if ra != "" {
			w.Header().Set("Retry-After", ra)
			s.mu.Lock()
			j.notBefore = notBefore(ra, now)
			s.mu.Unlock()
		}
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% done", 100*poll/(s.PollsBeforeDone+1)))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	fileBase := s.srv.URL
	if s.FileHost != "" {
		fileBase = "http://" + s.FileHost
	}
	m := map[string]any{
		"transactionTime":     t0.Format(time.RFC3339),
		"request":             s.Base() + "/Patient/$export",
		"requiresAccessToken": s.RequiresAccessToken,
	}
	var output, errs []map[string]any
	for i, f := range s.Files {
		e := map[string]any{"type": f.Type, "url": fmt.Sprintf("%s/files/%s/%d", fileBase, j.id, i)}
		if f.Count != nil {
			e["count"] = *f.Count
		}
		if f.ErrorFile {
			errs = append(errs, e)
		} else {
			output = append(output, e)
		}
	}
	m["output"], m["error"] = orEmpty(output), orEmpty(errs)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Expires", now.Add(time.Hour).Format(http.TimeFormat))
	_ = json.NewEncoder(w).Encode(m)
}

func orEmpty(l []map[string]any) []map[string]any {
	if l == nil {
		return []map[string]any{}
	}
	return l
}

// notBefore is the moment a Retry-After value sent at now points to.
func notBefore(ra string, now time.Time) time.Time {
	if n, err := strconv.Atoi(ra); err == nil {
		return now.Add(time.Duration(n) * time.Second)
	}
	if t, err := http.ParseTime(ra); err == nil {
		return t
	}
	return now
}

func (s *bulkServer) delete(w http.ResponseWriter, r *http.Request) {
	if s.begin("delete", w, r) || !s.authorized(w, r) {
		return
	}
	j := s.job(w, r)
	if j == nil {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such job")
		return
	}
	s.mu.Lock()
	j.deleted = true
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *bulkServer) file(w http.ResponseWriter, r *http.Request) {
	if s.begin("file", w, r) {
		return
	}
	if s.RequiresAccessToken && !s.authorized(w, r) {
		return
	}
	s.mu.Lock()
	j := s.jobs[r.PathValue("job")]
	s.mu.Unlock()
	n, err := strconv.Atoi(r.PathValue("n"))
	if j == nil || err != nil || n < 0 || n >= len(s.Files) {
		writeOutcome(w, http.StatusNotFound, "not-found", "no such file")
		return
	}
	if j.expired || j.deleted {
		writeOutcome(w, http.StatusGone, "expired", "the export has expired")
		return
	}
	f := s.Files[n]
	w.Header().Set("Content-Type", MediaFHIRNDJSON)
	if f.Stream != nil {
		if err := f.Stream(w); err != nil {
			s.t.Errorf("streaming file %d: %v", n, err)
		}
		return
	}
	_, _ = io.WriteString(w, f.Body)
}

// ndjson builds n resources of type typ, one per line.
func ndjson(typ string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"resourceType":%q,"id":"%s-%d","meta":{"lastUpdated":"2026-11-30T10:00:00Z"}}`+"\n", typ, strings.ToLower(typ), i)
	}
	return b.String()
}

func count(n int64) *int64 { return &n }

// hostOf returns the host:port of a URL.
func hostOf(t testing.TB, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
