// Package bulktest is a FHIR Bulk Data server (IG v2) for tests of code
// that pulls a member's data: Patient-level $export of chosen patients
// (the patient parameter, POST or GET), _type and _since honoured, an
// unsupported _typeFilter refused; async kick-off with a relative
// Content-Location, X-Progress and Retry-After while in progress, a
// manifest with output[] and error[] and Expires, NDJSON files, DELETE;
// canned answers injected per route (429, 500, 410 ...). It records every
// request, every kick-off's parameters, every DELETE, and every poll that
// came earlier than its Retry-After asked.
//
// Mount Handler at the FHIR base of a server (it serves the paths below
// it) and set BaseURL to that base before the first kick-off.
package bulktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Answer is a canned answer given before the server's own logic.
type Answer struct {
	Status int
	Header map[string]string
	Body   string
}

// Routes that Inject takes.
const (
	RouteKickOff = "kickoff"
	RouteStatus  = "status"
	RouteFile    = "file"
	RouteDelete  = "delete"
)

// Request is one request the server received.
type Request struct {
	Route  string
	Method string
	Path   string
	At     time.Time
	Auth   string
}

// KickOff is what one accepted kick-off asked for.
type KickOff struct {
	Job      string
	Patients []string // patient ids
	Types    []string
	Since    time.Time
}

// Server is the test server. Set the exported fields before use.
type Server struct {
	// BaseURL is the FHIR base the handler is mounted at, e.g.
	// srv.URL + "/fhir": manifests name files under it.
	BaseURL string
	// FileBaseURL is where manifests say the files are, in place of
	// BaseURL: tests point it at another host. "": BaseURL.
	FileBaseURL string
	// Token, if set, is the bearer token every call must carry.
	Token string
	// PollsBeforeDone is how many polls answer 202 before the manifest.
	PollsBeforeDone int
	// RetryAfter is the Retry-After of each 202 ("" none).
	RetryAfter string
	// ErrorLines are OperationOutcome lines listed in the manifest's
	// error[] (one file), for partial exports.
	ErrorLines []string
	// TransactionTime is the manifest's transactionTime; zero: the
	// kick-off's time.
	TransactionTime time.Time
	// Now is the clock; nil: time.Now.
	Now func() time.Time

	mu         sync.Mutex
	data       map[string][]resource // patient id → resources
	jobs       map[string]*job
	next       int
	inject     map[string][]Answer
	requests   []Request
	kickoffs   []KickOff
	deleted    []string
	violations []string
	notBefore  time.Time // of the last status answer's Retry-After
}

type resource struct {
	typ     string
	updated time.Time
	line    []byte
}

type job struct {
	KickOff
	at      time.Time
	polls   int
	deleted bool
	files   []file
}

// notBefore is when a Retry-After of delay-seconds sent at now points to
// (zero for anything else).
func notBefore(retryAfter string, now time.Time) time.Time {
	if n, err := strconv.Atoi(retryAfter); err == nil && n > 0 {
		return now.Add(time.Duration(n) * time.Second)
	}
	return time.Time{}
}

type file struct {
	typ   string
	lines [][]byte
	error bool
}

// New returns an empty server.
func New() *Server {
	return &Server{data: map[string][]resource{}, jobs: map[string]*job{}, inject: map[string][]Answer{}}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Add adds resources (FHIR JSON objects) to the data of patient id. Each
// needs a resourceType; meta.lastUpdated, if present, is what _since
// compares.
func (s *Server) Add(patientID string, resources ...json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range resources {
		var head struct {
			ResourceType string `json:"resourceType"`
			Meta         struct {
				LastUpdated time.Time `json:"lastUpdated"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(r, &head); err != nil || head.ResourceType == "" {
			return fmt.Errorf("bulktest: not a resource: %v", err)
		}
		line, err := json.Marshal(r) // compacted: one line
		if err != nil {
			return fmt.Errorf("bulktest: %w", err)
		}
		s.data[patientID] = append(s.data[patientID], resource{typ: head.ResourceType, updated: head.Meta.LastUpdated, line: line})
	}
	return nil
}

// Counts returns how many resources of each type patient id has.
func (s *Server) Counts(patientID string) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, r := range s.data[patientID] {
		out[r.typ]++
	}
	return out
}

// Inject queues answers for route (Route*), given before the server's own.
func (s *Server) Inject(route string, answers ...Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[route] = append(s.inject[route], answers...)
}

// Requests returns the requests received on route ("" every route).
func (s *Server) Requests(route string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if route == "" || r.Route == route {
			out = append(out, r)
		}
	}
	return out
}

// KickOffs returns the accepted kick-offs in order.
func (s *Server) KickOffs() []KickOff {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.kickoffs)
}

// Deleted returns the jobs deleted, in order.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// Violations lists the polls that came before their Retry-After.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations)
}

// Handler serves the Bulk Data routes below the FHIR base.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/Patient/$export", s.kickoff)
	mux.HandleFunc("GET /bulkstatus/{job}", s.status)
	mux.HandleFunc("DELETE /bulkstatus/{job}", s.delete)
	mux.HandleFunc("GET /bulkfiles/{job}/{n}", s.file)
	return mux
}

// begin records r and gives the first injected answer of route, if any.
// A status request before the last status answer's Retry-After is a
// violation, whoever gave that answer.
func (s *Server) begin(route string, w http.ResponseWriter, r *http.Request) bool {
	now := s.now()
	s.mu.Lock()
	s.requests = append(s.requests, Request{Route: route, Method: r.Method, Path: r.URL.Path, At: now, Auth: r.Header.Get("Authorization")})
	if route == RouteStatus && now.Before(s.notBefore) {
		s.violations = append(s.violations, fmt.Sprintf("status polled %v before its Retry-After", s.notBefore.Sub(now)))
	}
	var in *Answer
	if q := s.inject[route]; len(q) > 0 {
		in = &q[0]
		s.inject[route] = q[1:]
		if route == RouteStatus {
			s.notBefore = notBefore(in.Header["Retry-After"], now)
		}
	}
	s.mu.Unlock()
	if in == nil {
		if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
			outcome(w, http.StatusUnauthorized, "login", "bearer token required")
			return true
		}
		return false
	}
	for k, v := range in.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(in.Status)
	_, _ = io.WriteString(w, in.Body)
	return true
}

func outcome(w http.ResponseWriter, status int, code, diag string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]string{{"severity": "error", "code": code, "diagnostics": diag}}})
}

// params reads the kick-off parameters: the query of a GET, the
// Parameters body of a POST.
func params(r *http.Request) (url.Values, error) {
	if r.Method == http.MethodGet {
		return r.URL.Query(), nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string `json:"name"`
			ValueString    string `json:"valueString"`
			ValueInstant   string `json:"valueInstant"`
			ValueCanonical string `json:"valueCanonical"`
			ValueReference *struct {
				Reference string `json:"reference"`
			} `json:"valueReference"`
		} `json:"parameter"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil || p.ResourceType != "Parameters" {
		return nil, fmt.Errorf("the body is not a Parameters resource")
	}
	v := url.Values{}
	for _, prm := range p.Parameter {
		switch {
		case prm.ValueReference != nil:
			v.Add(prm.Name, prm.ValueReference.Reference)
		case prm.ValueInstant != "":
			v.Add(prm.Name, prm.ValueInstant)
		case prm.ValueCanonical != "":
			v.Add(prm.Name, prm.ValueCanonical)
		default:
			v.Add(prm.Name, prm.ValueString)
		}
	}
	return v, nil
}

func (s *Server) kickoff(w http.ResponseWriter, r *http.Request) {
	if s.begin(RouteKickOff, w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		outcome(w, http.StatusMethodNotAllowed, "not-supported", "GET or POST")
		return
	}
	if r.Header.Get("Prefer") != "respond-async" {
		outcome(w, http.StatusBadRequest, "invalid", "Prefer: respond-async is required")
		return
	}
	v, err := params(r)
	if err != nil {
		outcome(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if v.Has("_typeFilter") {
		outcome(w, http.StatusBadRequest, "not-supported", "_typeFilter is not supported")
		return
	}
	k := KickOff{}
	for _, t := range v["_type"] {
		k.Types = append(k.Types, strings.Split(t, ",")...)
	}
	for _, p := range v["patient"] {
		id, ok := strings.CutPrefix(p, "Patient/")
		if !ok || id == "" {
			outcome(w, http.StatusBadRequest, "invalid", "patient: want Patient/[id]")
			return
		}
		k.Patients = append(k.Patients, id)
	}
	if since := v.Get("_since"); since != "" {
		if k.Since, err = time.Parse(time.RFC3339Nano, since); err != nil {
			outcome(w, http.StatusBadRequest, "invalid", "_since is not an instant")
			return
		}
	}
	s.mu.Lock()
	s.next++
	k.Job = "job" + strconv.Itoa(s.next)
	j := &job{KickOff: k, at: s.now()}
	j.files = s.filesOf(k)
	s.jobs[k.Job] = j
	s.kickoffs = append(s.kickoffs, k)
	s.mu.Unlock()
	w.Header().Set("Content-Location", "bulkstatus/"+k.Job)
	w.WriteHeader(http.StatusAccepted)
}

// filesOf selects the data of a kick-off: one file per type, in the order
// types first appear. Called with s.mu held.
func (s *Server) filesOf(k KickOff) []file {
	var files []file
	idx := map[string]int{}
	for _, p := range k.Patients {
		for _, r := range s.data[p] {
			if len(k.Types) > 0 && !slices.Contains(k.Types, r.typ) {
				continue
			}
			if !k.Since.IsZero() && !r.updated.IsZero() && r.updated.Before(k.Since) {
				continue
			}
			i, ok := idx[r.typ]
			if !ok {
				i = len(files)
				idx[r.typ] = i
				files = append(files, file{typ: r.typ})
			}
			files[i].lines = append(files[i].lines, r.line)
		}
	}
	if len(s.ErrorLines) > 0 {
		f := file{typ: "OperationOutcome", error: true}
		for _, l := range s.ErrorLines {
			f.lines = append(f.lines, []byte(l))
		}
		files = append(files, f)
	}
	return files
}

func (s *Server) job(r *http.Request) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[r.PathValue("job")]
	if j == nil || j.deleted {
		return nil
	}
	return j
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if s.begin(RouteStatus, w, r) {
		return
	}
	j := s.job(r)
	if j == nil {
		outcome(w, http.StatusNotFound, "not-found", "no such job")
		return
	}
	now := s.now()
	s.mu.Lock()
	j.polls++
	poll := j.polls
	s.notBefore = time.Time{}
	if poll <= s.PollsBeforeDone {
		s.notBefore = notBefore(s.RetryAfter, now)
	}
	s.mu.Unlock()
	if poll <= s.PollsBeforeDone {
		if s.RetryAfter != "" {
			w.Header().Set("Retry-After", s.RetryAfter)
		}
		w.Header().Set("X-Progress", fmt.Sprintf("%d%% done", 100*poll/(s.PollsBeforeDone+1)))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	tt := s.TransactionTime
	if tt.IsZero() {
		tt = j.at
	}
	output, errs := []map[string]any{}, []map[string]any{}
	files := s.BaseURL
	if s.FileBaseURL != "" {
		files = s.FileBaseURL
	}
	for i, f := range j.files {
		e := map[string]any{"type": f.typ, "url": fmt.Sprintf("%s/bulkfiles/%s/%d", files, j.Job, i), "count": len(f.lines)}
		if f.error {
			errs = append(errs, e)
		} else {
			output = append(output, e)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Expires", now.Add(time.Hour).UTC().Format(http.TimeFormat))
	_ = json.NewEncoder(w).Encode(map[string]any{
		"transactionTime": tt.UTC().Format(time.RFC3339Nano), "request": s.BaseURL + "/Patient/$export",
		"requiresAccessToken": s.Token != "", "output": output, "error": errs,
	})
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	if s.begin(RouteDelete, w, r) {
		return
	}
	j := s.job(r)
	if j == nil {
		outcome(w, http.StatusNotFound, "not-found", "no such job")
		return
	}
	s.mu.Lock()
	j.deleted = true
	s.deleted = append(s.deleted, j.Job)
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	if s.begin(RouteFile, w, r) {
		return
	}
	j := s.job(r)
	n, err := strconv.Atoi(r.PathValue("n"))
	if j == nil {
		outcome(w, http.StatusGone, "expired", "the export is gone")
		return
	}
	if err != nil || n < 0 || n >= len(j.files) {
		outcome(w, http.StatusNotFound, "not-found", "no such file")
		return
	}
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	for _, l := range j.files[n].lines {
		_, _ = w.Write(l)
		_, _ = w.Write([]byte{'\n'})
	}
}
