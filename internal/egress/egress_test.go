package egress

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/p2p-payer/p2p/fault"
)

func TestClass(t *testing.T) {
	for _, tc := range []struct {
		ip      string
		class   string
		private bool // reachable with AllowPrivate
	}{
		{"93.184.215.14", ClassPublic, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", ClassPublic, true},
		{"127.0.0.1", ClassLoopback, true},
		{"127.9.9.9", ClassLoopback, true},
		{"::1", ClassLoopback, true},
		{"::ffff:127.0.0.1", ClassLoopback, true},
		{"10.0.0.1", ClassPrivate, true},
		{"10.255.255.255", ClassPrivate, true},
		{"172.16.0.1", ClassPrivate, true},
		{"172.31.255.255", ClassPrivate, true},
		{"172.32.0.1", ClassPublic, true},
		{"192.168.1.1", ClassPrivate, true},
		{"::ffff:10.1.2.3", ClassPrivate, true},
		{"::ffff:a01:203", ClassPrivate, true}, // 10.1.2.3 in hex
		{"fc00::1", ClassPrivate, true},
		{"fd12:3456::1", ClassPrivate, true},
		{"100.64.0.1", ClassSharedNAT, true},
		{"100.127.255.255", ClassSharedNAT, true},
		{"100.128.0.1", ClassPublic, true},
		{"169.254.169.254", ClassLinkLocal, false},
		{"::ffff:169.254.169.254", ClassLinkLocal, false},
		{"fe80::1", ClassLinkLocal, false},
		{"64:ff9b::a9fe:a9fe", ClassLinkLocal, false}, // NAT64 of 169.254.169.254
		{"64:ff9b::7f00:1", ClassLoopback, true},      // NAT64 of 127.0.0.1
		{"2002:a00:1::1", ClassPrivate, true},         // 6to4 of 10.0.0.1
		{"::a00:1", ClassPrivate, true},               // IPv4-compatible 10.0.0.1
		{"0.0.0.0", ClassUnspecified, false},
		{"::", ClassUnspecified, false},
		{"0.1.2.3", ClassReserved, false},
		{"224.0.0.1", ClassMulticast, false},
		{"ff02::1", ClassMulticast, false},
		{"255.255.255.255", ClassReserved, false},
		{"198.18.0.1", ClassReserved, false},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			if got := Class(ip); got != tc.class {
				t.Errorf("Class = %q, want %q", got, tc.class)
			}
			if got := Allowed(ip, false) == ""; got != (tc.class == ClassPublic) {
				t.Errorf("allowed without AllowPrivate = %v", got)
			}
			if got := Allowed(ip, true) == ""; got != tc.private {
				t.Errorf("allowed with AllowPrivate = %v, want %v", got, tc.private)
			}
		})
	}
}

// mapResolver resolves test names to fixed addresses.
type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ss, ok := m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// recorder is a test server that remembers what reached it.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	hits  int
	auths []string // Authorization headers received, "" for none
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.hits++
		r.auths = append(r.auths, req.Header.Get("Authorization"))
		r.mu.Unlock()
		if h != nil {
			h(w, req)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) port() string { u, _ := url.Parse(r.URL); return u.Port() }

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.hits }

// TestDial: the address a name resolves to is checked when dialled.
func TestDial(t *testing.T) {
	srv := newRecorder(t, nil)
	res := mapResolver{
		"partner.test":  {"127.0.0.1"},
		"rebind.test":   {"10.0.0.7"},
		"meta.test":     {"169.254.169.254"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"twofaced.test": {"169.254.169.254", "127.0.0.1"},
	}
	for _, tc := range []struct {
		name         string
		host         string // host (no port: the test server's is added)
		allowPrivate bool
		resolver     Resolver // nil: res
		wantRefused  bool
	}{
		{"loopback name refused", "partner.test", false, nil, true},
		{"loopback name allowed for a private partner", "partner.test", true, nil, false},
		{"real resolver: localhost refused", "localhost", false, net.DefaultResolver, true},
		{"literal loopback refused", "127.0.0.1", false, nil, true},
		{"literal metadata refused", "169.254.169.254", false, nil, true},
		{"metadata refused even for a private partner", "meta.test", true, nil, true},
		{"private network refused", "rebind.test", false, nil, true},
		{"literal 10/8 refused", "10.1.2.3", false, nil, true},
		{"IPv4-mapped loopback refused", "mapped.test", false, nil, true},
		{"IPv6 literal mapped loopback refused", "[::ffff:127.0.0.1]", false, nil, true},
		{"a refused address is skipped for an allowed one", "twofaced.test", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.resolver
			if r == nil {
				r = res
			}
			c := NewClient(Policy{Name: "acme", AllowPrivate: tc.allowPrivate, Resolver: r})
			before := srv.count()
			resp, err := c.Get("http://" + tc.host + ":" + srv.port() + "/x")
			if resp != nil {
				resp.Body.Close()
			}
			_, refused := Refused(err)
			if refused != tc.wantRefused {
				t.Fatalf("err = %v, want refused %v", err, tc.wantRefused)
			}
			if tc.wantRefused {
				if f, ok := Fault(err); !ok || f.Class != fault.Validation || f.Type != fault.TypeEgressRefused {
					t.Errorf("fault = %+v, want validation/egress_refused", f)
				}
				if srv.count() != before {
					t.Errorf("the refused call reached the server")
				}
			}
		})
	}
}

// TestControl: the socket's last check, whatever resolved the name.
func TestControl(t *testing.T) {
	for _, tc := range []struct {
		addr         string
		allowPrivate bool
		ok           bool
	}{
		{"93.184.215.14:443", false, true},
		{"127.0.0.1:443", false, false},
		{"127.0.0.1:443", true, true},
		{"[::1]:443", false, false},
		{"[::ffff:10.0.0.1]:443", false, false},
		{"169.254.169.254:80", true, false},
		{"not-an-ip:80", true, false},
	} {
		d := &dialer{policy: &Policy{Name: "acme", AllowPrivate: tc.allowPrivate}}
		err := d.control("tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("control(%s, private %v) = %v, want ok %v", tc.addr, tc.allowPrivate, err, tc.ok)
		}
	}
}

// TestGuard: hosts and tokens, before anything is sent.
func TestGuard(t *testing.T) {
	srv := newRecorder(t, nil)
	res := mapResolver{"fhir.test": {"127.0.0.1"}, "files.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}}
	p := Policy{Name: "acme", AllowPrivate: true, Resolver: res,
		Hosts: MustRules("fhir.test", "files.test"), TokenHosts: MustRules("fhir.test:" + srv.port())}
	for _, tc := range []struct {
		name, host  string
		token       bool
		wantRefused bool
	}{
		{"allowed host, token", "fhir.test", true, false},
		{"allowed host, no token", "files.test", false, false},
		{"token to a host not configured for it", "files.test", true, true},
		{"host not allow-listed", "other.test", false, true},
		{"host not allow-listed, token", "other.test", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(p)
			req, _ := http.NewRequest(http.MethodGet, "http://"+tc.host+":"+srv.port()+"/x", nil)
			if tc.token {
				req.Header.Set("Authorization", "Bearer secret")
			}
			before := srv.count()
			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if _, refused := Refused(err); refused != tc.wantRefused {
				t.Fatalf("err = %v, want refused %v", err, tc.wantRefused)
			}
			if tc.wantRefused && srv.count() != before {
				t.Errorf("the refused call reached the server")
			}
		})
	}
}

// TestRedirect: redirects stay on allowed hosts and lose the token off
// the token hosts.
func TestRedirect(t *testing.T) {
	target := newRecorder(t, nil)
	res := mapResolver{"fhir.test": {"127.0.0.1"}, "files.test": {"127.0.0.1"}, "evil.test": {"127.0.0.1"}, "meta.test": {"169.254.169.254"}}
	for _, tc := range []struct {
		name        string
		location    string
		method      string
		follow      bool
		wantRefused bool
		wantStatus  int
		wantToken   bool // the target got the token
	}{
		{"to an allowed host without the token", "http://files.test:" + target.port() + "/f", http.MethodGet, true, false, 200, false},
		{"to a token host with the token", "http://fhir.test:" + target.port() + "/f", http.MethodGet, true, false, 200, true},
		{"to another host", "http://evil.test:" + target.port() + "/f", http.MethodGet, true, true, 0, false},
		{"to loopback by address", "http://127.0.0.1:" + target.port() + "/f", http.MethodGet, true, true, 0, false},
		{"to the metadata service", "http://169.254.169.254/latest/meta-data/", http.MethodGet, true, true, 0, false},
		{"to an allowed name on the metadata address", "http://meta.test/latest/", http.MethodGet, true, true, 0, false},
		{"not followed", "http://files.test:" + target.port() + "/f", http.MethodGet, false, false, http.StatusFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, tc.location, http.StatusFound)
			})
			hosts := MustRules("fhir.test", "files.test", "meta.test")
			p := Policy{Name: "acme", AllowPrivate: true, Resolver: res, Hosts: hosts, FollowRedirects: tc.follow,
				TokenHosts: MustRules("fhir.test:"+from.port(), "fhir.test:"+target.port())}
			c := NewClient(p)
			before := target.count()
			req, _ := http.NewRequest(tc.method, "http://fhir.test:"+from.port()+"/start", nil)
			req.Header.Set("Authorization", "Bearer secret")
			resp, err := c.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if _, refused := Refused(err); refused != tc.wantRefused {
				t.Fatalf("err = %v, want refused %v", err, tc.wantRefused)
			}
			if tc.wantRefused {
				if target.count() != before {
					t.Error("the refused redirect reached the target")
				}
				return
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := target.count() > before && target.auths[len(target.auths)-1] != ""; got != tc.wantToken {
				t.Errorf("target got the token: %v, want %v", got, tc.wantToken)
			}
		})
	}
}

func TestRedirectRules(t *testing.T) {
	p := &Policy{Name: "acme", FollowRedirects: true, Hosts: MustRules("a.test")}
	mk := func(method, u string) *http.Request {
		r, _ := http.NewRequest(method, u, nil)
		return r
	}
	via := []*http.Request{mk(http.MethodGet, "https://a.test/x")}
	for _, tc := range []struct {
		name string
		req  *http.Request
		via  []*http.Request
		ok   bool
	}{
		{"same host", mk(http.MethodGet, "https://a.test/y"), via, true},
		{"downgrade to http", mk(http.MethodGet, "http://a.test/y"), via, false},
		{"a POST", mk(http.MethodPost, "https://a.test/y"), via, false},
		{"too many", mk(http.MethodGet, "https://a.test/y"), []*http.Request{via[0], via[0], via[0], via[0], via[0]}, false},
		{"credentials in the URL", mk(http.MethodGet, "https://u:p@a.test/y"), via, false},
	} {
		err := p.CheckRedirect(tc.req, tc.via)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestResponseCap(t *testing.T) {
	body := strings.Repeat("x", 1000)
	srv := newRecorder(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	for _, tc := range []struct {
		max     int64
		wantErr bool
	}{{1000, false}, {999, true}, {10, true}} {
		c := NewClient(Policy{Name: "acme", AllowPrivate: true, MaxResponseBytes: tc.max})
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		f, isCap := Fault(err)
		if isCap != tc.wantErr || (tc.wantErr && f.Type != fault.TypeResponseTooLarge) {
			t.Errorf("max %d: err %v, want too large %v", tc.max, err, tc.wantErr)
		}
		if int64(len(b)) > tc.max {
			t.Errorf("max %d: read %d bytes", tc.max, len(b))
		}
	}
}

func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		n, max  int
		wantErr bool
	}{{0, 10, false}, {10, 10, false}, {11, 10, true}} {
		b, err := ReadAll(strings.NewReader(strings.Repeat("x", tc.n)), int64(tc.max), "acme")
		if (err != nil) != tc.wantErr || (!tc.wantErr && len(b) != tc.n) {
			t.Errorf("%d of %d: %d bytes, %v", tc.n, tc.max, len(b), err)
		}
		if tc.wantErr && fault.TypeOf(err) != fault.TypeResponseTooLarge {
			t.Errorf("type %s", fault.TypeOf(err))
		}
	}
}

func TestRules(t *testing.T) {
	u := func(s string) *url.URL { x, _ := url.Parse(s); return x }
	for _, tc := range []struct {
		rule, url string
		ok        bool
	}{
		{"a.test", "https://a.test/x", true},
		{"a.test", "https://A.TEST:8443/x", true},
		{"a.test:443", "https://a.test/x", true},
		{"a.test:443", "http://a.test/x", false},
		{"a.test:8443", "https://a.test:8443/x", true},
		{"*.a.test", "https://b.a.test/x", true},
		{"*.a.test", "https://a.test/x", false},
		{"*.a.test", "https://ba.test/x", false},
		{"[::1]:8080", "http://[::1]:8080/", true},
	} {
		r, err := ParseRule(tc.rule)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Allows(u(tc.url)); got != tc.ok {
			t.Errorf("%s allows %s = %v", tc.rule, tc.url, got)
		}
		if r2, _ := ParseRule(r.String()); r2 != r {
			t.Errorf("%s: String %q does not parse back", tc.rule, r.String())
		}
	}
	for _, bad := range []string{"", "a.test/x", "u@a.test", "a.test?x"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("ParseRule(%q) accepted", bad)
		}
	}
}
