package bulkdata

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// hostsResolver resolves every test name to loopback.
type hostsResolver struct{}

func (hostsResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".test") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// tokenRecorder serves NDJSON files (or a redirect) and records the
// Authorization header of every request.
type tokenRecorder struct {
	*httptest.Server
	mu       sync.Mutex
	auths    []string
	redirect string
}

func newTokenRecorder(t *testing.T) *tokenRecorder {
	r := &tokenRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		redirect := r.redirect
		r.mu.Unlock()
		if redirect != "" && !strings.Contains(req.URL.Path, "landed") {
			http.Redirect(w, req, redirect, http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(ndjson("Patient", 1)))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *tokenRecorder) got() (requests int, tokens int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.auths {
		if a != "" {
			tokens++
		}
	}
	return len(r.auths), tokens
}

func (r *tokenRecorder) port() string { u, _ := url.Parse(r.URL); return u.Port() }

// TestTokenNeverLeaves: the bearer token goes to the partner's FHIR origin
// only: not to a file host, whatever the manifest's requiresAccessToken,
// not on a redirect, and a call that would carry it elsewhere is refused
// before it is sent.
func TestTokenNeverLeaves(t *testing.T) {
	for _, tc := range []struct {
		name                string
		requiresAccessToken bool
		fileOn              string // "fhir", "files"
		redirectTo          string // "", "files", "evil"
		wantRefused         bool
		wantFHIR, wantFiles [2]int // requests, tokens received
	}{
		{"file on the FHIR host with the token", true, "fhir", "", false, [2]int{1, 1}, [2]int{0, 0}},
		{"file on another host, requiresAccessToken", true, "files", "", true, [2]int{0, 0}, [2]int{0, 0}},
		{"file on another host, no token required", false, "files", "", false, [2]int{0, 0}, [2]int{1, 0}},
		{"redirect to an allowed host drops the token", true, "fhir", "files", false, [2]int{1, 1}, [2]int{1, 0}},
		{"redirect to another host is refused", true, "fhir", "evil", true, [2]int{1, 1}, [2]int{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fhir, files, evil := newTokenRecorder(t), newTokenRecorder(t), newTokenRecorder(t)
			fhirBase := "http://fhir.test:" + fhir.port() + "/fhir"
			switch tc.redirectTo {
			case "files":
				fhir.redirect = "http://files.test:" + files.port() + "/landed"
			case "evil":
				fhir.redirect = "http://evil.test:" + evil.port() + "/landed"
			}
			pol := egress.Policy{Name: "acme", AllowPrivate: true, Resolver: hostsResolver{}, FollowRedirects: true,
				Hosts: egress.MustRules("fhir.test", "files.test"), TokenHosts: egress.MustRules("fhir.test:" + fhir.port())}
			c, err := New(Config{Partner: "acme", BaseURL: fhirBase, AllowedHosts: []string{"files.test"},
				Tokens: StaticToken("secret"), HTTPClient: egress.NewClient(pol)})
			if err != nil {
				t.Fatal(err)
			}
			fileURL := fhirBase + "/bulkfiles/1"
			if tc.fileOn == "files" {
				fileURL = "http://files.test:" + files.port() + "/f/1"
			}
			_, err = c.Download(context.Background(), OutputFile{Type: "Patient", URL: fileURL}, tc.requiresAccessToken, &strings.Builder{})
			if _, refused := egress.Refused(err); refused != tc.wantRefused {
				t.Fatalf("err = %v, want refused %v", err, tc.wantRefused)
			}
			if tc.wantRefused {
				wantFault(t, err, fault.Validation, fault.TypeEgressRefused)
			}
			if n, tok := fhir.got(); [2]int{n, tok} != tc.wantFHIR {
				t.Errorf("FHIR host: %d requests, %d with the token; want %v", n, tok, tc.wantFHIR)
			}
			if n, tok := files.got(); [2]int{n, tok} != tc.wantFiles {
				t.Errorf("file host: %d requests, %d with the token; want %v", n, tok, tc.wantFiles)
			}
			if n, _ := evil.got(); n != 0 {
				t.Errorf("another host got %d requests", n)
			}
		})
	}
}
