package bulkdata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

func newTestClient(t testing.TB, s *bulkServer, clock *fakeClock, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Partner: "oldpayer", BaseURL: s.Base(), Now: clock.Now}
	if s.Token != "" {
		cfg.Tokens = StaticToken(s.Token)
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pollUntilDone is the workflow's loop: poll once, sleep NextPollDelay on
// the fake clock, again, until the export is complete.
func pollUntilDone(t *testing.T, c *Client, clock *fakeClock, statusURL string) (*Complete, []InProgress) {
	t.Helper()
	var seen []InProgress
	for attempt := 1; attempt < 50; attempt++ {
		st, err := c.Poll(context.Background(), statusURL)
		if err != nil {
			t.Fatalf("poll %d: %v", attempt, err)
		}
		switch st.State {
		case StateComplete:
			return st.Complete, seen
		case StateFailed:
			t.Fatalf("poll %d: export failed: %+v", attempt, st.Failed)
		case StateInProgress:
			seen = append(seen, *st.InProgress)
			clock.Advance(NextPollDelay(st.InProgress.RetryAfter, st.InProgress.ReceivedAt, attempt, PollPolicy{}))
		default:
			t.Fatalf("poll %d: state %q", attempt, st.State)
		}
	}
	t.Fatal("export never completed")
	return nil, nil
}

// wantFault fails t unless err is classified as class and typ.
func wantFault(t *testing.T, err error, class fault.Class, typ string) {
	t.Helper()
	f, ok := fault.As(err)
	if !ok {
		t.Fatalf("error %v is not classified", err)
	}
	if f.Class != class || f.Type != typ {
		t.Fatalf("error %v: class/type %s/%s, want %s/%s", err, f.Class, f.Type, class, typ)
	}
}

// faultOf is wantFault for a test that goes on to look at the fault.
func faultOf(t *testing.T, err error, class fault.Class, typ string) *fault.Error {
	t.Helper()
	wantFault(t, err, class, typ)
	f, _ := fault.As(err)
	return f
}

func TestExportEndToEnd(t *testing.T) {
	tests := []struct {
		name     string
		req      ExportRequest
		absolute bool
		wantPath string
	}{
		{"PDex POST", ExportRequest{Level: DaVinciLevel, GroupID: "g-17", Types: []string{"Patient", "Observation"}, Since: t0.Add(-5 * 365 * 24 * time.Hour), ExportType: "hl7.fhir.us.davinci-pdex#payertopayer", Patients: []string{"Patient/p1"}},
			false, "/fhir/Group/g-17/$davinci-data-export"},
		{"group GET", ExportRequest{Level: GroupLevel, GroupID: "g-17", Method: http.MethodGet, Types: []string{"Patient", "Observation"}, Since: t0.Add(-time.Hour)},
			true, "/fhir/Group/g-17/$export"},
		{"patient GET", ExportRequest{Level: PatientLevel, Method: http.MethodGet},
			false, "/fhir/Patient/$export"},
		{"patient POST", ExportRequest{Level: PatientLevel, Types: []string{"Patient"}},
			true, "/fhir/Patient/$export"},
		{"one patient POST", ExportRequest{Level: PatientLevel, Types: []string{"Patient", "Coverage"}, Since: t0.Add(-time.Hour), Patients: []string{"Patient/p9"}},
			false, "/fhir/Patient/$export"},
		{"POST without parameters", ExportRequest{Level: GroupLevel, GroupID: "g-1"},
			false, "/fhir/Group/g-1/$export"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newBulkServer(t, clock)
			s.Token = "tok-123"
			s.RequiresAccessToken = true
			s.AbsoluteLocation = tt.absolute
			s.PollsBeforeDone = 4
			s.RetryAfter = func(poll int, now time.Time) string {
				switch poll {
				case 1:
					return "3"
				case 2:
					return now.Add(7 * time.Second).Format(http.TimeFormat)
				case 3:
					return "" // no advice: backoff
				}
				return "120"
			}
			s.Files = []fakeFile{
				{Type: "Patient", Count: count(3), Body: ndjson("Patient", 3)},
				{Type: "Observation", Count: count(5), Body: ndjson("Observation", 5)},
				{Type: "Observation", Body: ndjson("Observation", 2) + "\n"}, // no count; a trailing blank line
				{Type: "OperationOutcome", ErrorFile: true, Body: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing"}]}` + "\n"},
			}
			c := newTestClient(t, s, clock, nil)

			statusURL, err := c.KickOff(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if want := s.Base() + "/bulkstatus/job1"; statusURL != want {
				t.Errorf("status URL %s, want %s", statusURL, want)
			}
			checkKickOff(t, s.Requests("/fhir/")[0], tt.req, tt.wantPath)

			done, progress := pollUntilDone(t, c, clock, statusURL)
			if v := s.Violations(); len(v) > 0 {
				t.Fatalf("polled earlier than Retry-After asked: %v", v)
			}
			if len(progress) != 4 {
				t.Fatalf("%d in-progress answers, want 4", len(progress))
			}
			if progress[0].XProgress != "20% done" || progress[0].RetryAfter != "3" {
				t.Errorf("first in-progress %+v: want X-Progress 20%% done, Retry-After 3", progress[0])
			}
			// The polls were spaced as the server asked: 3 s, then 7 s,
			// then backoff (attempt 3: 5 s·1.5² ±20 %), then 120 s.
			polls := s.Requests("/fhir/bulkstatus/")
			gaps := []time.Duration{}
			for i := 1; i < len(polls); i++ {
				gaps = append(gaps, polls[i].At.Sub(polls[i-1].At))
			}
			if len(gaps) != 4 || gaps[0] != 3*time.Second || gaps[1] != 7*time.Second ||
				gaps[2] < 9*time.Second || gaps[2] > 13500*time.Millisecond || gaps[3] != 120*time.Second {
				t.Errorf("gaps between polls %v", gaps)
			}

			m := done.Manifest
			if !m.RequiresAccessToken || len(m.Output) != 3 || len(m.Error) != 1 || !m.TransactionTime.Equal(t0) {
				t.Fatalf("manifest %+v", m)
			}
			if want := clock.Now().Add(time.Hour).Truncate(time.Second); !done.Expires.Equal(want) {
				t.Errorf("Expires %v, want %v", done.Expires, want)
			}

			dir := t.TempDir()
			sink, err := NewNDJSONDirSink(dir)
			if err != nil {
				t.Fatal(err)
			}
			files := append(slices.Clone(m.Output), m.Error...)
			seq := OutputSeq(files)
			for i, f := range files {
				res, err := c.DownloadTo(context.Background(), f, m.RequiresAccessToken, sink, seq[i])
				if err != nil {
					t.Fatalf("download %s #%d: %v", f.Type, seq[i], err)
				}
				want := s.Files[i].Body
				got, err := os.ReadFile(filepath.Join(dir, FileName(f.Type, seq[i])))
				if err != nil || string(got) != want {
					t.Fatalf("%s #%d: file differs from what the server sent (%v)", f.Type, seq[i], err)
				}
				sum := sha256.Sum256([]byte(want))
				if res.SHA256 != hex.EncodeToString(sum[:]) || res.Bytes != int64(len(want)) {
					t.Errorf("%s #%d: result %+v", f.Type, seq[i], res)
				}
				if wantN := int64(strings.Count(strings.TrimSpace(want), "\n") + 1); res.Resources != wantN {
					t.Errorf("%s #%d: %d resources, want %d", f.Type, seq[i], res.Resources, wantN)
				}
			}
			names, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(names) != 4 {
				t.Errorf("sink holds %v, want 4 files and no temporaries", names)
			}
			for _, r := range s.Requests("/files/") {
				if r.Auth != "Bearer tok-123" || r.Accept != MediaFHIRNDJSON {
					t.Errorf("file request %s: Authorization %q, Accept %q", r.Path, r.Auth, r.Accept)
				}
			}

			if err := c.Delete(context.Background(), statusURL); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if err := c.Delete(context.Background(), statusURL); err != nil {
				t.Fatalf("second delete (404) is not a failure: %v", err)
			}
		})
	}
}

// The kick-off's wire form: no _outputFormat (NDJSON is the IG's default,
// and FHIR Works on AWS refuses the full media type), and no empty or null
// parameter array in a POST body (FHIR JSON has no empty arrays).
func TestKickOffWireForm(t *testing.T) {
	since := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		req  ExportRequest
		want string // the GET query, or the POST body
	}{
		{"GET, no parameters", ExportRequest{Level: PatientLevel, Method: http.MethodGet}, ""},
		{"GET", ExportRequest{Level: PatientLevel, Method: http.MethodGet, Types: []string{"Patient", "Coverage"}, Since: since},
			"_since=2024-01-02T03%3A04%3A05.000Z&_type=Patient%2CCoverage"},
		{"POST, no parameters", ExportRequest{Level: PatientLevel}, `{"resourceType":"Parameters"}`},
		{"POST", ExportRequest{Level: PatientLevel, Types: []string{"Patient"}, Patients: []string{"Patient/p1"}},
			`{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient"},{"name":"patient","valueReference":{"reference":"Patient/p1"}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					got = r.URL.RawQuery
				} else {
					b, _ := io.ReadAll(r.Body)
					got = string(b)
				}
				w.Header().Set("Content-Location", "/status/1")
				w.WriteHeader(http.StatusAccepted)
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.KickOff(context.Background(), tt.req); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("sent %s\nwant %s", got, tt.want)
			}
		})
	}
}

// checkKickOff compares the kick-off the server received with r.
func checkKickOff(t *testing.T, got seen, r ExportRequest, path string) {
	t.Helper()
	if got.Path != path || got.Method != r.method() {
		t.Fatalf("kick-off %s %s, want %s %s", got.Method, got.Path, r.method(), path)
	}
	if got.Accept != MediaFHIRJSON || got.Prefer != "respond-async" || got.Auth != "Bearer tok-123" {
		t.Errorf("kick-off headers Accept %q Prefer %q Authorization %q", got.Accept, got.Prefer, got.Auth)
	}
	params := map[string][]string{}
	if r.method() == http.MethodGet {
		q, _ := url.ParseQuery(got.Query)
		params = q
	} else {
		if got.ContentType != MediaFHIRJSON {
			t.Errorf("POST Content-Type %q", got.ContentType)
		}
		var p Parameters
		if err := json.Unmarshal([]byte(got.Body), &p); err != nil || p.ResourceType != "Parameters" {
			t.Fatalf("POST body is not Parameters: %v %s", err, got.Body)
		}
		for _, pp := range p.Parameter {
			v := pp.ValueString + pp.ValueInstant + pp.ValueCanonical
			if pp.ValueReference != nil {
				v = pp.ValueReference.Reference
			}
			params[pp.Name] = append(params[pp.Name], v)
		}
	}
	want := map[string][]string{} // no _outputFormat: NDJSON is the default
	if len(r.Types) > 0 {
		if r.method() == http.MethodGet {
			want["_type"] = []string{strings.Join(r.Types, ",")}
		} else {
			want["_type"] = r.Types
		}
	}
	if !r.Since.IsZero() {
		want["_since"] = []string{r.Since.UTC().Format("2006-01-02T15:04:05.000Z")}
	}
	if r.ExportType != "" {
		want["exportType"] = []string{r.ExportType}
	}
	if len(r.Patients) > 0 {
		want["patient"] = r.Patients
	}
	if len(params) != len(want) {
		t.Errorf("kick-off parameters %v, want %v", params, want)
	}
	for k, v := range want {
		if !slices.Equal(params[k], v) {
			t.Errorf("kick-off parameter %s = %v, want %v", k, params[k], v)
		}
	}
}

// The detector behind "never polled earlier than asked" works: a client
// that ignores Retry-After is caught.
func TestServerCatchesEarlyPolls(t *testing.T) {
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.PollsBeforeDone = 3
	s.RetryAfter = func(int, time.Time) string { return "10" }
	c := newTestClient(t, s, clock, nil)
	statusURL, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Poll(context.Background(), statusURL); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Second) // one second short
	st, err := c.Poll(context.Background(), statusURL)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Violations()) != 1 || st.State != StateInProgress || !st.InProgress.Throttled || st.InProgress.RetryAfter != "1" {
		t.Fatalf("early poll: violations %v, status %+v", s.Violations(), st.InProgress)
	}
}

// 410 on a file after the export expired, then a fresh kick-off succeeds.
func TestExpiredFileThenReKickOff(t *testing.T) {
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.PollsBeforeDone = 1
	s.RetryAfter = func(int, time.Time) string { return "2" }
	s.Files = []fakeFile{{Type: "Patient", Count: count(2), Body: ndjson("Patient", 2)}}
	c := newTestClient(t, s, clock, nil)
	req := ExportRequest{Level: DaVinciLevel, GroupID: "g1", Types: []string{"Patient"}}

	statusURL, err := c.KickOff(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	done, _ := pollUntilDone(t, c, clock, statusURL)
	s.ExpireAll()
	sink, _ := NewNDJSONDirSink(t.TempDir())
	_, err = c.DownloadTo(context.Background(), done.Manifest.Output[0], false, sink, 1)
	if !errors.Is(err, ErrExpired) || HTTPStatus(err) != http.StatusGone || Outcome(err).Codes() != "expired" {
		t.Fatalf("download of an expired file: %v (status %d)", err, HTTPStatus(err))
	}
	wantFault(t, err, fault.Business, ErrTypeExpired)
	if names, _ := filepath.Glob(filepath.Join(sink.Dir, "*")); len(names) != 0 {
		t.Fatalf("failed download left %v", names)
	}
	// The status URL of the expired job is gone too.
	if _, err := c.Poll(context.Background(), statusURL); !errors.Is(err, ErrExpired) {
		t.Fatalf("poll of an expired job: %v", err)
	}

	statusURL2, err := c.KickOff(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if statusURL2 == statusURL {
		t.Fatal("re-kick-off returned the old job")
	}
	done, _ = pollUntilDone(t, c, clock, statusURL2)
	res, err := c.DownloadTo(context.Background(), done.Manifest.Output[0], false, sink, 1)
	if err != nil || res.Resources != 2 {
		t.Fatalf("download after re-kick-off: %+v, %v", res, err)
	}
}

func outcomeBody(code string) string {
	b, _ := json.Marshal(OperationOutcome{ResourceType: "OperationOutcome", Issue: []Issue{{Severity: "error", Code: code, Diagnostics: "Jane Doe, born 1970-01-01"}}})
	return string(b)
}

var (
	fhirJSON = map[string]string{"Content-Type": MediaFHIRJSON}
	jsonCT   = map[string]string{"Content-Type": "application/json"}
)

func TestKickOffAnswers(t *testing.T) {
	tests := []struct {
		name       string
		answer     injected
		class      fault.Class
		typ        string
		status     int
		codes      string
		retryAfter time.Duration
	}{
		{"429 with Retry-After", injected{Status: 429, Header: map[string]string{"Retry-After": "30", "Content-Type": MediaFHIRJSON}, Body: outcomeBody("throttled")},
			fault.Downstream, ErrTypeThrottled, 429, "throttled", 30 * time.Second},
		{"503 with Retry-After date", injected{Status: 503, Header: map[string]string{"Retry-After": t0.Add(time.Minute).Format(http.TimeFormat)}},
			fault.Downstream, ErrTypeThrottled, 503, "", time.Minute},
		{"500 with a transient OperationOutcome", injected{Status: 500, Header: fhirJSON, Body: outcomeBody("exception")},
			fault.Downstream, ErrTypeUnavailable, 500, "exception", 0},
		// The same reading as a status poll's: the server failed it for
		// good, so it is not retried for a day.
		{"500 with a non-transient OperationOutcome", injected{Status: 500, Header: fhirJSON, Body: outcomeBody("processing")},
			fault.Business, ErrTypeRejected, 500, "processing", 0},
		{"501 too-costly", injected{Status: 501, Header: fhirJSON, Body: outcomeBody("too-costly")},
			fault.Business, ErrTypeRejected, 501, "too-costly", 0},
		{"500 without an OperationOutcome", injected{Status: 500, Header: map[string]string{"Content-Type": "text/plain"}, Body: "oops"},
			fault.Downstream, ErrTypeUnavailable, 500, "", 0},
		{"502 HTML from a proxy", injected{Status: 502, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html>bad gateway</html>"},
			fault.Downstream, ErrTypeUnavailable, 502, "", 0},
		{"401", injected{Status: 401, Header: fhirJSON, Body: outcomeBody("login")},
			fault.Auth, ErrTypeAuth, 401, "login", 0},
		{"403", injected{Status: 403, Header: fhirJSON, Body: outcomeBody("forbidden")},
			fault.Auth, ErrTypeAuth, 403, "forbidden", 0},
		{"400 unsupported _type", injected{Status: 400, Header: fhirJSON, Body: outcomeBody("not-supported")},
			fault.Business, ErrTypeRejected, 400, "not-supported", 0},
		{"422 consent", injected{Status: 422, Header: fhirJSON, Body: outcomeBody("business-rule")},
			fault.Business, ErrTypeRejected, 422, "business-rule", 0},
		{"200: not async", injected{Status: 200, Header: fhirJSON, Body: "{}"},
			fault.Validation, ErrTypeBadResponse, 200, "", 0},
		{"202 without Content-Location", injected{Status: 202},
			fault.Validation, ErrTypeBadResponse, 0, "", 0},
		{"202 to another host", injected{Status: 202, Header: map[string]string{"Content-Location": "https://evil.example/status/1"}},
			fault.Validation, ErrTypeHostNotAllowed, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newBulkServer(t, clock)
			s.Inject("kickoff", tt.answer)
			c := newTestClient(t, s, clock, nil)
			_, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
			f := faultOf(t, err, tt.class, tt.typ)
			if HTTPStatus(err) != tt.status || Outcome(err).Codes() != tt.codes || f.RetryAfter != tt.retryAfter {
				t.Errorf("status %d, outcome %q, Retry-After %v; want %d, %q, %v", HTTPStatus(err), Outcome(err).Codes(), f.RetryAfter, tt.status, tt.codes, tt.retryAfter)
			}
			if strings.Contains(err.Error(), "Jane") {
				t.Errorf("error message carries the diagnostics: %v", err)
			}
		})
	}
}

func TestKickOffRefusesBadRequests(t *testing.T) {
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	c := newTestClient(t, s, clock, nil)
	for _, r := range []ExportRequest{
		{Level: "system"},
		{Level: GroupLevel},
		{Level: GroupLevel, GroupID: "../Patient"},
		{Level: PatientLevel, Types: []string{"patient"}},
		{Level: PatientLevel, Types: []string{"Patient,Observation"}},
		{Level: GroupLevel, GroupID: "g", ExportType: "x"},
		{Level: DaVinciLevel, GroupID: "g", Method: http.MethodGet, Patients: []string{"Patient/1"}},
		{Level: DaVinciLevel, GroupID: "g", Patients: []string{"Observation/1"}},
		{Level: PatientLevel, Method: http.MethodPut},
		{Level: PatientLevel, Method: http.MethodGet, Patients: []string{"Patient/1"}},
	} {
		_, err := c.KickOff(context.Background(), r)
		wantFault(t, err, fault.Validation, ErrTypeBadRequest)
	}
	if n := len(s.Requests("/")); n != 0 {
		t.Errorf("%d requests sent for invalid kick-offs", n)
	}
}

func TestPollAnswers(t *testing.T) {
	manifestOn := func(host string) string {
		return `{"transactionTime":"2026-12-01T10:00:00Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":"http://` + host + `/f/1"}],"error":[]}`
	}
	tests := []struct {
		name   string
		answer injected
		state  State       // want a status, or
		class  fault.Class // want an error
		typ    string
		status int
	}{
		{"202 without headers", injected{Status: 202}, StateInProgress, "", "", 0},
		{"429", injected{Status: 429, Header: map[string]string{"Retry-After": "60"}}, StateInProgress, "", "", 0},
		{"400 failed export", injected{Status: 400, Header: fhirJSON, Body: outcomeBody("too-costly")}, StateFailed, "", "", 400},
		{"422 without OperationOutcome", injected{Status: 422}, StateFailed, "", "", 422},
		{"500 not transient", injected{Status: 500, Header: fhirJSON, Body: outcomeBody("processing")}, StateFailed, "", "", 500},
		{"500 transient", injected{Status: 500, Header: fhirJSON, Body: outcomeBody("transient")}, "", fault.Downstream, ErrTypeUnavailable, 500},
		{"500 without OperationOutcome", injected{Status: 500, Body: "oops"}, "", fault.Downstream, ErrTypeUnavailable, 500},
		{"503 not transient: a gateway", injected{Status: 503, Header: fhirJSON, Body: outcomeBody("processing")}, "", fault.Downstream, ErrTypeUnavailable, 503},
		{"504", injected{Status: 504}, "", fault.Downstream, ErrTypeUnavailable, 504},
		{"408", injected{Status: 408}, "", fault.Downstream, ErrTypeUnavailable, 408},
		{"401", injected{Status: 401}, "", fault.Auth, ErrTypeAuth, 401},
		{"404 job gone", injected{Status: 404, Header: fhirJSON, Body: outcomeBody("not-found")}, "", fault.Business, ErrTypeExpired, 404},
		{"410 job expired", injected{Status: 410}, "", fault.Business, ErrTypeExpired, 410},
		// A redirect off the allow-list is refused before anything goes there.
		{"302 to another host", injected{Status: 302, Header: map[string]string{"Location": "https://evil.example/"}}, "", fault.Validation, fault.TypeEgressRefused, 0},
		{"302 to the metadata service", injected{Status: 302, Header: map[string]string{"Location": "http://169.254.169.254/latest/meta-data/"}}, "", fault.Validation, fault.TypeEgressRefused, 0},
		{"200 not JSON", injected{Status: 200, Body: "<html>"}, "", fault.Validation, ErrTypeBadResponse, 0},
		{"200 HTML", injected{Status: 200, Header: map[string]string{"Content-Type": "text/html"}, Body: "{}"}, "", fault.Validation, ErrTypeBadResponse, 0},
		{"200 manifest missing error[]", injected{Status: 200, Header: jsonCT, Body: `{"transactionTime":"2026-12-01T10:00:00Z","request":"x","requiresAccessToken":true,"output":[]}`}, "", fault.Validation, ErrTypeBadResponse, 0},
		{"200 manifest file on another host", injected{Status: 200, Header: jsonCT, Body: manifestOn("files.evil.example")}, "", fault.Validation, ErrTypeHostNotAllowed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newBulkServer(t, clock)
			c := newTestClient(t, s, clock, nil)
			statusURL, err := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
			if err != nil {
				t.Fatal(err)
			}
			s.Inject("status", tt.answer)
			st, err := c.Poll(context.Background(), statusURL)
			if tt.state != "" {
				if err != nil || st.State != tt.state {
					t.Fatalf("got %+v, %v; want state %s", st, err, tt.state)
				}
				if st.State == StateFailed && st.Failed.StatusCode != tt.status {
					t.Errorf("failed with status %d, want %d", st.Failed.StatusCode, tt.status)
				}
				if tt.answer.Status == 429 && (!st.InProgress.Throttled || st.InProgress.RetryAfter != "60") {
					t.Errorf("429: %+v", st.InProgress)
				}
				return
			}
			wantFault(t, err, tt.class, tt.typ)
			if HTTPStatus(err) != tt.status {
				t.Errorf("status %d, want %d", HTTPStatus(err), tt.status)
			}
		})
	}
	// And a manifest whose files are on an allow-listed host is fine.
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	c := newTestClient(t, s, clock, func(cfg *Config) { cfg.AllowedHosts = []string{"*.storage.example"} })
	statusURL, _ := c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
	s.Inject("status", injected{Status: 200, Header: jsonCT, Body: manifestOn("bucket.storage.example")})
	if st, err := c.Poll(context.Background(), statusURL); err != nil || st.State != StateComplete {
		t.Fatalf("allow-listed file host: %+v, %v", st, err)
	}
}

func TestDownloadAnswers(t *testing.T) {
	tests := []struct {
		name       string
		answer     injected
		class      fault.Class
		typ        string
		retryAfter time.Duration
	}{
		{"410", injected{Status: 410}, fault.Business, ErrTypeExpired, 0},
		{"404", injected{Status: 404}, fault.Business, ErrTypeExpired, 0},
		{"429", injected{Status: 429, Header: map[string]string{"Retry-After": "12"}}, fault.Downstream, ErrTypeThrottled, 12 * time.Second},
		{"503 with Retry-After", injected{Status: 503, Header: map[string]string{"Retry-After": "7"}}, fault.Downstream, ErrTypeThrottled, 7 * time.Second},
		{"503", injected{Status: 503}, fault.Downstream, ErrTypeUnavailable, 0},
		{"500", injected{Status: 500}, fault.Downstream, ErrTypeUnavailable, 0},
		{"401", injected{Status: 401}, fault.Auth, ErrTypeAuth, 0},
		{"403", injected{Status: 403}, fault.Auth, ErrTypeAuth, 0},
		{"400", injected{Status: 400}, fault.Validation, ErrTypeBadResponse, 0},
		{"HTML page", injected{Status: 200, Header: map[string]string{"Content-Type": "text/html; charset=utf-8"}, Body: "<html></html>"}, fault.Validation, ErrTypeBadResponse, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newBulkServer(t, clock)
			s.Files = []fakeFile{{Type: "Patient", Body: ndjson("Patient", 1)}}
			c := newTestClient(t, s, clock, nil)
			s.Inject("file", tt.answer)
			_, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(s.Job(), 0)}, false, &strings.Builder{})
			f := faultOf(t, err, tt.class, tt.typ)
			if f.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter %v, want %v", f.RetryAfter, tt.retryAfter)
			}
			if f.Class.Retryable() != (tt.class == fault.Downstream) {
				t.Errorf("retryable %v", f.Class.Retryable())
			}
		})
	}
}

func TestDownloadChecksContent(t *testing.T) {
	long := `{"resourceType":"Patient","text":"` + strings.Repeat("x", 3<<20) + `"}` + "\n"
	tests := []struct {
		name    string
		body    string
		count   *int64
		maxLine int
		wantErr string // "" for success
		wantN   int64
	}{
		{"ok", ndjson("Patient", 3), count(3), 0, "", 3},
		{"CRLF and no final newline", "{\"resourceType\":\"Patient\"}\r\n{\"resourceType\":\"Patient\"}", nil, 0, "", 2},
		{"blank lines are not resources", "\n" + ndjson("Patient", 2) + "\n  \n", count(2), 0, "", 2},
		{"empty file", "", count(0), 0, "", 0},
		{"a 3 MiB line (longer than the read buffer)", long + ndjson("Patient", 1), count(2), 0, "", 2},
		{"line above the limit", ndjson("Patient", 1) + long, nil, 1 << 20, "line 2 is longer than 1048576 bytes", 0},
		{"count mismatch", ndjson("Patient", 3), count(4), 0, "has 3 resources, the manifest says 4", 0},
		{"wrong type", ndjson("Patient", 1) + ndjson("Observation", 1), nil, 0, `line 2 is a "Observation", not a Patient`, 0},
		{"invalid JSON", ndjson("Patient", 1) + `{"resourceType":"Patient",` + "\n", nil, 0, "line 2 is not valid JSON", 0},
		{"array", "[1,2]\n", nil, 0, "line 1 is not a JSON object", 0},
		{"string", "\"Patient\"\n", nil, 0, "line 1 is not a JSON object", 0},
		{"no resourceType", `{"id":"1"}` + "\n", nil, 0, "line 1 has no resourceType", 0},
		{"resourceType in other case", `{"resourcetype":"Patient"}` + "\n", nil, 0, "line 1 has no resourceType", 0},
		{"bad escape", `{"resourceType":"Patient","x":"\q"}` + "\n", nil, 0, "line 1 is not valid JSON", 0},
		{"control character in a string", "{\"resourceType\":\"Patient\",\"x\":\"a\tb\"}\n", nil, 0, "line 1 is not valid JSON", 0},
		{"not UTF-8", "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}\n", nil, 0, "line 1 is not UTF-8", 0},
		{"resourceType not a string", `{"resourceType":7}` + "\n", nil, 0, "line 1 has no resourceType", 0},
		{"two resources on a line", `{"resourceType":"Patient"}{"resourceType":"Patient"}` + "\n", nil, 0, "line 1 is not valid JSON", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newBulkServer(t, clock)
			s.Files = []fakeFile{{Type: "Patient", Body: tt.body}}
			c := newTestClient(t, s, clock, func(cfg *Config) { cfg.MaxLineBytes = tt.maxLine })
			var out strings.Builder
			res, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(s.Job(), 0), Count: tt.count}, false, &out)
			if tt.wantErr != "" {
				f := faultOf(t, err, fault.Validation, ErrTypeBadFile)
				if !strings.Contains(f.Msg, tt.wantErr) {
					t.Fatalf("error %q, want it to say %q", f.Msg, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(tt.body))
			if out.String() != tt.body || res.Resources != tt.wantN || res.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("result %+v, %d bytes written", res, out.Len())
			}
		})
	}
}

func TestDownloadTokenOnlyWhenRequired(t *testing.T) {
	for _, requires := range []bool{true, false} {
		clock := newFakeClock()
		s := newBulkServer(t, clock)
		s.Token = "tok-123"
		s.RequiresAccessToken = requires
		s.Files = []fakeFile{{Type: "Patient", Body: ndjson("Patient", 1)}}
		c := newTestClient(t, s, clock, nil)
		if _, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(s.Job(), 0)}, requires, &strings.Builder{}); err != nil {
			t.Fatalf("requiresAccessToken %v: %v", requires, err)
		}
		got := s.Requests("/files/")[0].Auth
		if (got != "") != requires {
			t.Errorf("requiresAccessToken %v: Authorization %q", requires, got)
		}
	}
	// A server that requires the token refuses a client without one.
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.Token = "tok-123"
	s.RequiresAccessToken = true
	s.Files = []fakeFile{{Type: "Patient", Body: ndjson("Patient", 1)}}
	c := newTestClient(t, s, clock, func(cfg *Config) { cfg.Tokens = nil })
	_, err := c.Download(context.Background(), OutputFile{Type: "Patient", URL: s.FileURL(s.Job(), 0)}, true, &strings.Builder{})
	wantFault(t, err, fault.Auth, ErrTypeAuth)
	_, err = c.KickOff(context.Background(), ExportRequest{Level: PatientLevel})
	wantFault(t, err, fault.Auth, ErrTypeAuth)
}

// A run the way the workflow will drive it, through a 429 on the kick-off,
// a 503 and a 500 on status polls and a 500 on a download: every wait is
// at least what the server asked, and the data arrives whole.
func TestExportSurvivesThrottlingAndServerErrors(t *testing.T) {
	clock := newFakeClock()
	s := newBulkServer(t, clock)
	s.PollsBeforeDone = 2
	s.RetryAfter = func(int, time.Time) string { return "5" }
	s.Files = []fakeFile{{Type: "Patient", Count: count(3), Body: ndjson("Patient", 3)}}
	c := newTestClient(t, s, clock, nil)
	ctx := context.Background()
	req := ExportRequest{Level: DaVinciLevel, GroupID: "g1", Types: []string{"Patient"}}

	// retry runs op again after the fault's Retry-After (or 1 s) while it
	// fails with a retryable fault, as the activity's retry policy does.
	retry := func(op func() error) {
		t.Helper()
		for range 5 {
			err := op()
			f, ok := fault.As(err)
			if err == nil || !ok || !f.Class.Retryable() {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			clock.Advance(max(f.RetryAfter, time.Second))
		}
		t.Fatal("still failing after 5 tries")
	}

	s.Inject("kickoff", injected{Status: 429, Header: map[string]string{"Retry-After": "30"}})
	var statusURL string
	retry(func() (err error) { statusURL, err = c.KickOff(ctx, req); return err })
	if k := s.Requests("/fhir/Group/"); len(k) != 2 || k[1].At.Sub(k[0].At) < 30*time.Second {
		t.Fatalf("kick-offs %+v: the second must come 30 s after the first", k)
	}

	s.Inject("status", injected{Status: 503}, injected{Status: 500, Header: fhirJSON, Body: outcomeBody("transient")})
	var done *Complete
	for attempt := 1; done == nil; attempt++ {
		var st Status
		retry(func() (err error) { st, err = c.Poll(ctx, statusURL); return err })
		switch st.State {
		case StateComplete:
			done = st.Complete
		case StateInProgress:
			clock.Advance(NextPollDelay(st.InProgress.RetryAfter, st.InProgress.ReceivedAt, attempt, PollPolicy{}))
		default:
			t.Fatalf("state %+v", st)
		}
	}
	if v := s.Violations(); len(v) > 0 {
		t.Fatalf("polled earlier than asked: %v", v)
	}

	s.Inject("file", injected{Status: 500})
	sink, _ := NewNDJSONDirSink(t.TempDir())
	var res FileResult
	retry(func() (err error) { res, err = c.DownloadTo(ctx, done.Manifest.Output[0], false, sink, 1); return err })
	if res.Resources != 3 || len(s.Requests("/files/")) != 2 {
		t.Fatalf("download %+v after %d requests", res, len(s.Requests("/files/")))
	}
}
