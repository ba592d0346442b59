// Package egress is the one policy every outbound HTTP call of p2p goes
// through: to partners (push, $member-match, Bulk Data, token endpoints,
// JWKS) and to our own FHIR server. A Policy describes what calls for one
// party may do; NewClient builds the *http.Client that enforces it:
//
//   - the address actually dialled is checked, after name resolution and
//     again in the socket's Control hook, so a name that resolves to a
//     public address when checked and to 127.0.0.1 when dialled (DNS
//     rebinding) is still refused. Loopback, private (10/8, 172.16/12,
//     192.168/16, fc00::/7) and shared (100.64/10) addresses only with
//     AllowPrivate; link-local (169.254/16 and its cloud metadata
//     service, fe80::/10), unspecified, multicast and reserved addresses
//     never; IPv6 forms that embed an IPv4 address (::ffff:a.b.c.d, NAT64,
//     6to4) are judged by that address;
//   - requests go only to the policy's hosts, redirects included;
//   - an Authorization header goes only to the policy's token hosts: a
//     redirect elsewhere drops it, a request elsewhere that carries one is
//     refused;
//   - response bodies are capped (a read past MaxResponseBytes fails with
//     response_too_large) and every phase of a call has a timeout;
//   - no proxy from the environment: the checks must see the address
//     dialled.
//
// Refusals are *fault.Error of class validation and type egress_refused
// (fault.TypeEgressRefused), carrying a *Refusal that names the host, never
// a path or query (they can carry identifiers).
package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

// Defaults of Policy.
const (
	DefaultMaxResponseBytes      = 16 << 20
	DefaultDialTimeout           = 10 * time.Second
	DefaultResponseHeaderTimeout = time.Minute
	// MaxRedirects is how many redirects a client follows, at most.
	MaxRedirects = 5
)

// Resolver resolves host names; *net.Resolver is one. Tests map names to
// the addresses they want refused.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy is what calls for one party (a partner, our FHIR server) may do.
type Policy struct {
	// Name names the party in errors, e.g. a partner id.
	Name string
	// AllowPrivate lets calls reach loopback, private and shared (CGNAT)
	// addresses: a partner explicitly configured on a private network.
	AllowPrivate bool
	// Hosts are where requests may go; empty: any host (the address
	// checks still apply).
	Hosts []Rule
	// TokenHosts are where a request may carry an Authorization header;
	// empty: nowhere.
	TokenHosts []Rule
	// FollowRedirects follows GET and HEAD redirects to Hosts (at most
	// MaxRedirects); otherwise a 3xx is the answer the caller gets.
	FollowRedirects bool
	// MaxResponseBytes caps the bytes read of one response body; 0:
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Timeout bounds a whole call, body included; 0: none (callers set
	// deadlines, downloads use idle timeouts).
	Timeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an answer's headers; 0:
	// DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// TLS configures TLS (client certificates, a partner's CA); nil:
	// system roots.
	TLS *tls.Config
	// Resolver resolves names; nil: net.DefaultResolver.
	Resolver Resolver
}

// Refusal is why a call was refused: the cause of an egress_refused fault.
type Refusal struct {
	Name   string // the party, e.g. a partner id
	Host   string // the host (and port) refused; never a path
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// refuse is the fault of a refused call.
func (p *Policy) refuse(host, reason string) *fault.Error { return Refuse(p.Name, host, reason) }

// Refuse is the fault of a call to host refused for party name: for
// clients that refuse a URL before calling (a status URL, a manifest's file
// URL on a host not allow-listed), so that every refusal reads the same.
func Refuse(name, host, reason string) *fault.Error {
	if len(host) > 100 {
		host = host[:100] + "…"
	}
	r := &Refusal{Name: name, Host: host, Reason: reason}
	return fault.Wrap(fault.Validation, fault.TypeEgressRefused, "partner "+name+": outbound call to "+host+" refused", r)
}

// Refused returns the refusal in err's chain, if a call was refused.
func Refused(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// Fault returns the egress fault in err's chain (a refusal, or an answer
// past its cap), if any. Clients return it as it is instead of wrapping it
// as a transport failure, which would be retried.
func Fault(err error) (*fault.Error, bool) {
	if f, ok := err.(*fault.Error); ok && (f.Type == fault.TypeEgressRefused || f.Type == fault.TypeResponseTooLarge) {
		return f, true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return Fault(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if f, ok := Fault(e); ok {
				return f, true
			}
		}
	}
	return nil, false
}

// NewClient returns a client that enforces p.
func NewClient(p Policy) *http.Client {
	pp := &p
	if pp.MaxResponseBytes <= 0 {
		pp.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if pp.ResponseHeaderTimeout <= 0 {
		pp.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	d := &dialer{policy: pp, net: net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}}
	d.net.Control = d.control
	t := &http.Transport{
		Proxy:                 nil, // the checks must see the address dialled
		DialContext:           d.DialContext,
		TLSClientConfig:       pp.TLS,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: pp.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Timeout:       pp.Timeout,
		Transport:     &guard{policy: pp, base: t},
		CheckRedirect: pp.checkRedirect,
	}
}

// CheckRedirect is p's redirect rule, for a client that sets its own
// CheckRedirect and must keep p's: see NewClient.
func (p *Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	return p.checkRedirect(req, via)
}

func (p *Policy) checkRedirect(req *http.Request, via []*http.Request) error {
	if !p.FollowRedirects {
		return http.ErrUseLastResponse
	}
	switch {
	case len(via) >= MaxRedirects:
		return p.refuse(req.URL.Host, "more than 5 redirects")
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		return p.refuse(req.URL.Host, "a redirect of a "+req.Method)
	case strings.EqualFold(via[0].URL.Scheme, "https") && !strings.EqualFold(req.URL.Scheme, "https"):
		return p.refuse(req.URL.Host, "a redirect from https to http")
	}
	if why := p.checkURL(req.URL); why != "" {
		return p.refuse(req.URL.Host, "redirect "+why)
	}
	if !anyAllows(p.TokenHosts, req.URL) {
		req.Header.Del("Authorization")
	}
	return nil
}

// checkURL returns why a request to u is refused, or "".
func (p *Policy) checkURL(u *url.URL) string {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "is not http(s)"
	case u.User != nil:
		return "carries credentials"
	case len(p.Hosts) > 0 && !anyAllows(p.Hosts, u):
		return "to a host not allow-listed"
	}
	return ""
}

// guard checks every request, redirects included, before it is sent, and
// caps every response body.
type guard struct {
	policy *Policy
	base   http.RoundTripper
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	p := g.policy
	if why := p.checkURL(req.URL); why != "" {
		closeBody(req)
		return nil, p.refuse(req.URL.Host, "request "+why)
	}
	if req.Header.Get("Authorization") != "" && !anyAllows(p.TokenHosts, req.URL) {
		closeBody(req)
		return nil, p.refuse(req.URL.Host, "a token for a host not configured to receive it")
	}
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &capped{r: resp.Body, max: p.MaxResponseBytes, name: p.Name}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (g *guard) CloseIdleConnections() {
	if t, ok := g.base.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// dialer resolves, checks each address, dials the first allowed one that
// answers, and checks again in Control what the socket connects to.
type dialer struct {
	policy *Policy
	net    net.Dialer
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		var r Resolver = net.DefaultResolver
		if d.policy.Resolver != nil {
			r = d.policy.Resolver
		}
		lookup := "ip"
		switch network {
		case "tcp4":
			lookup = "ip4"
		case "tcp6":
			lookup = "ip6"
		}
		if ips, err = r.LookupNetIP(ctx, lookup, host); err != nil {
			return nil, err
		}
	}
	var refused, dialErr error
	for _, ip := range ips {
		if why := Allowed(ip, d.policy.AllowPrivate); why != "" {
			if refused == nil {
				refused = d.policy.refuse(net.JoinHostPort(host, port), host+" is a "+why)
			}
			continue
		}
		conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		if _, ok := Fault(err); ok && refused == nil {
			refused = err
		} else if dialErr == nil {
			dialErr = err
		}
	}
	switch {
	case dialErr != nil:
		return nil, dialErr
	case refused != nil:
		return nil, refused
	}
	return nil, fmt.Errorf("egress: %s has no address", host)
}

// control runs after the address is final and before the socket
// connects: the last word on where it goes.
func (d *dialer) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return d.policy.refuse(address, "an address that is not an IP")
	}
	if why := Allowed(ap.Addr(), d.policy.AllowPrivate); why != "" {
		return d.policy.refuse(address, "a "+why)
	}
	return nil
}

// capped fails a read past max bytes with response_too_large.
type capped struct {
	r    io.ReadCloser
	n    int64
	max  int64
	name string
}

func (c *capped) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, tooLarge(c.name, c.max)
	}
	if room := c.max - c.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n - int(c.n-c.max), tooLarge(c.name, c.max)
	}
	return n, err
}

func (c *capped) Close() error { return c.r.Close() }

func tooLarge(name string, max int64) *fault.Error {
	return fault.New(fault.Validation, fault.TypeResponseTooLarge, fmt.Sprintf("partner %s: answer longer than %d bytes", name, max))
}

// ReadAll reads r to the end, or fails with response_too_large past max
// bytes: unlike io.LimitReader, a cut answer is an error, not a shorter
// answer. name names the party.
func ReadAll(r io.Reader, max int64, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err == nil && int64(len(b)) > max {
		return nil, tooLarge(name, max)
	}
	return b, err
}
