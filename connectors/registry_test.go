package connectors

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/internal/egress"
)

func TestParseRegistry(t *testing.T) {
	const good = `
partners:
  - id: zeta
    name: Zeta Health
    push_url: https://p2p.zeta.example/exports
  - id: acme
    name: Acme Health
    push_url: http://127.0.0.1:9000/exports
    jwks_url: http://127.0.0.1:9000/.well-known/jwks.json
    timeout: 45s
    allow_private_network: true
`
	tests := []struct {
		name    string
		yaml    string
		wantIDs []string
		wantErr string
	}{
		{"valid", good, []string{"acme", "zeta"}, ""},
		{"empty document", "", nil, ""},
		{"empty list", "partners: []\n", nil, ""},
		{"duplicate id", "partners:\n- {id: a, push_url: 'https://a.example/x'}\n- {id: a, push_url: 'https://b.example/x'}\n", nil, "listed twice"},
		{"relative url", "partners:\n- {id: a, push_url: /exports}\n", nil, "absolute http"},
		{"ftp url", "partners:\n- {id: a, push_url: 'ftp://a.example/x'}\n", nil, "absolute http"},
		{"credentials in url", "partners:\n- {id: a, push_url: 'https://u:pw@a.example/x'}\n", nil, "credentials"},
		{"no role", "partners:\n- {id: a}\n", nil, "roles"},
		{"push role without push url", "partners:\n- {id: a, roles: [push]}\n", nil, "push_url: is required"},
		{"unknown role", "partners:\n- {id: a, roles: [sink], push_url: 'https://a.example/x'}\n", nil, "role"},
		{"pull role without fhir url", "partners:\n- {id: a, roles: [pull]}\n", nil, "fhir_base_url: is required"},
		{"pull without auth off loopback", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir'}\n", nil, "only for partners on loopback"},
		{"pull without auth on loopback", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'http://127.0.0.1:8081/fhir', allow_private_network: true}\n", []string{"a"}, ""},
		{"loopback without allow_private_network", "partners:\n- {id: a, push_url: 'http://127.0.0.1:9000/x'}\n", nil, "push_url is on a loopback address: set allow_private_network"},
		{"localhost without allow_private_network", "partners:\n- {id: a, push_url: 'http://localhost:9000/x'}\n", nil, "push_url is on a loopback address"},
		{"private FHIR base without allow_private_network", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://10.1.2.3/fhir', auth: {type: smart-backend, client_id: c, key_file: k}}\n", nil, "fhir_base_url is on a private address"},
		{"IPv4-mapped loopback JWKS", "partners:\n- {id: a, push_url: 'https://a.example/x', jwks_url: 'http://[::ffff:127.0.0.1]/jwks'}\n", nil, "jwks_url is on a loopback address"},
		{"metadata address even with allow_private_network", "partners:\n- {id: a, push_url: 'http://169.254.169.254/x', allow_private_network: true}\n", nil, "push_url is on a link-local address, which no partner may be on"},
		{"token URL on a private address", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', auth: {type: smart-backend, client_id: c, key_file: k, token_url: 'https://192.168.0.9/token'}}\n", nil, "auth.token_url is on a private address"},
		{"private with allow_private_network", "partners:\n- {id: a, push_url: 'https://10.1.2.3/x', allow_private_network: true}\n", []string{"a"}, ""},
		{"token hosts", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', token_hosts: ['files.a.example:443'], auth: {type: smart-backend, client_id: c, key_file: k}}\n", []string{"a"}, ""},
		{"bad token host", "partners:\n- {id: a, push_url: 'https://a.example/x', token_hosts: ['files.a.example/x']}\n", nil, "token_hosts"},
		{"pull with smart", "partners:\n- {id: a, roles: [pull, push], push_url: 'https://a.example/x', fhir_base_url: 'https://a.example/fhir', auth: {type: smart-backend, client_id: us, key_file: k.jwk, alg: ES384}}\n", []string{"a"}, ""},
		{"smart without client id", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', auth: {type: smart-backend, key_file: k.jwk}}\n", nil, "client_id"},
		{"smart with bad alg", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', auth: {type: smart-backend, client_id: us, key_file: k, alg: HS256}}\n", nil, "alg"},
		{"smart requester without jwks", "partners:\n- {id: a, roles: [requester], fhir_base_url: 'https://a.example/fhir', auth: {type: smart-backend, client_id: them}}\n", nil, "jwks_url"},
		{"mtls without cert", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', auth: {type: mtls, key_file: k.pem}}\n", nil, "cert_file"},
		{"mtls requester by subject", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_subject: p2p.a.example}}\n", []string{"a"}, ""},
		{"mtls requester by pin", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_sha256: '" + strings.Repeat("ab:", 31) + "ab'}}\n", []string{"a"}, ""},
		{"mtls requester by both", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_subject: A.example, client_cert_sha256: '" + strings.Repeat("0f", 32) + "'}}\n", []string{"a"}, ""},
		{"mtls requester without identity", "partners:\n- {id: a, roles: [requester], auth: {type: mtls}}\n", nil, "client_cert_subject or client_cert_sha256"},
		{"mtls requester with only our cert", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, cert_file: c.pem, key_file: k.pem}}\n", nil, "client_cert_subject or client_cert_sha256"},
		{"mtls requester subject not a name", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_subject: 'CN=a,O=b'}}\n", nil, "client_cert_subject"},
		{"mtls requester wildcard subject", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_subject: '*.a.example'}}\n", nil, "client_cert_subject"},
		{"mtls requester short pin", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_sha256: abcd}}\n", nil, "client_cert_sha256"},
		{"mtls requester pin not hex", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_sha256: '" + strings.Repeat("zz", 32) + "'}}\n", nil, "client_cert_sha256"},
		{"mtls pull and requester", "partners:\n- {id: a, roles: [pull, requester], fhir_base_url: 'https://a.example/fhir', auth: {type: mtls, cert_file: c.pem, key_file: k.pem, client_cert_subject: a.example}}\n", []string{"a"}, ""},
		{"mtls pull and requester without our cert", "partners:\n- {id: a, roles: [pull, requester], fhir_base_url: 'https://a.example/fhir', auth: {type: mtls, client_cert_subject: a.example}}\n", nil, "cert_file"},
		{"mtls pull with requester identity", "partners:\n- {id: a, roles: [pull], fhir_base_url: 'https://a.example/fhir', auth: {type: mtls, cert_file: c.pem, key_file: k.pem, client_cert_subject: a.example}}\n", nil, "for role requester"},
		{"mtls requesters with one cert", "partners:\n- {id: a, roles: [requester], auth: {type: mtls, client_cert_subject: x.example}}\n- {id: b, roles: [requester], auth: {type: mtls, client_cert_subject: X.example}}\n", nil, "same client certificate"},
		{"unknown auth", "partners:\n- {id: a, push_url: 'https://a.example/x', auth: {type: basic}}\n", nil, "type"},
		{"allowed host with scheme", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: ['https://cdn.example']}\n", nil, "allowed_hosts"},
		{"allowed host with path", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: ['cdn.example/x']}\n", nil, "allowed_hosts"},
		{"allowed host with credentials", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: ['u@cdn.example']}\n", nil, "allowed_hosts"},
		{"allowed host with a bad port", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: ['cdn.example:http']}\n", nil, "allowed_hosts"},
		{"allowed host empty", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: ['']}\n", nil, "allowed_hosts"},
		{"allowed hosts as bulkdata takes them", "partners:\n- {id: a, push_url: 'https://a.example/x', allowed_hosts: [cdn.example, 'cdn.example:8443', '*.blob.example', '[::1]:8080']}\n", []string{"a"}, ""},
		{"retry max below initial", "partners:\n- {id: a, push_url: 'https://a.example/x', retry: {initial_interval: 1m, maximum_interval: 1s}}\n", nil, "maximum_interval"},
		{"bad jwks url", "partners:\n- {id: a, push_url: 'https://a.example/x', jwks_url: 'nope'}\n", nil, "jwks_url"},
		{"bad id", "partners:\n- {id: 'a b', push_url: 'https://a.example/x'}\n", nil, "partner id"},
		{"negative timeout", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: -1s}\n", nil, "timeout"},
		{"huge timeout", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: 24h}\n", nil, "timeout"},
		{"timeout without unit", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: 30}\n", nil, "parse registry"},
		{"negative rate limit", "partners:\n- {id: a, push_url: 'https://a.example/x', rate_limit: -1}\n", nil, "rate_limit"},
		{"huge rate limit", "partners:\n- {id: a, push_url: 'https://a.example/x', rate_limit: 1e9}\n", nil, "rate_limit"},
		{"negative concurrency", "partners:\n- {id: a, push_url: 'https://a.example/x', concurrency: -2}\n", nil, "concurrency"},
		{"huge concurrency", "partners:\n- {id: a, push_url: 'https://a.example/x', concurrency: 5000}\n", nil, "concurrency"},
		{"negative download concurrency", "partners:\n- {id: a, push_url: 'https://a.example/x', download_concurrency: -1}\n", nil, "download_concurrency"},
		{"unknown key", "partners:\n- {id: a, pushurl: 'https://a.example/x'}\n", nil, "parse registry"},
		{"identifiers", "partners:\n- {id: a, push_url: 'https://a.example/x', identifiers: [{system: 'http://hl7.org/fhir/sid/us-npi', value: '0123456789'}]}\n", []string{"a"}, ""},
		{"identifier without value", "partners:\n- {id: a, push_url: 'https://a.example/x', identifiers: [{system: 'http://hl7.org/fhir/sid/us-npi'}]}\n", nil, "identifiers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRegistry([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.IDs(), tt.wantIDs) {
				t.Fatalf("ids %v, want %v", r.IDs(), tt.wantIDs)
			}
			if tt.name == "identifiers" {
				p, _ := r.Get("a")
				if want := []Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "0123456789"}}; !slices.Equal(p.Identifiers, want) {
					t.Errorf("identifiers %v, want %v", p.Identifiers, want)
				}
			}
		})
	}
}

func TestRegistryDefaultsAndLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partners.yaml")
	if err := os.WriteFile(path, []byte("partners:\n- {id: b, name: B, push_url: 'https://b.example/x'}\n- {id: a, push_url: 'https://a.example/x', timeout: 5s, rate_limit: 2.5, concurrency: 3, download_concurrency: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := r.Get("b")
	if !ok || b.Name != "B" || b.Timeout != DefaultTimeout || b.RateLimit != DefaultRateLimit || b.Concurrency != DefaultConcurrency ||
		b.DownloadConcurrency != DefaultDownloadConcurrency {
		t.Fatalf("b = %+v, %v", b, ok)
	}
	if a, _ := r.Get("a"); a.Timeout != 5*time.Second || a.RateLimit != 2.5 || a.Concurrency != 3 || a.DownloadConcurrency != 1 {
		t.Fatalf("a = %+v", a)
	}
	if _, ok := r.Get("c"); ok {
		t.Fatal("unknown partner found")
	}
	ids := r.IDs()
	ids[0] = "mutated"
	if r.IDs()[0] != "a" {
		t.Fatal("IDs exposes the registry's slice")
	}

	// Adding the dev sandbox to a registry read from a file.
	r2, err := NewRegistry(append(r.Partners(), Partner{ID: "sandbox", PushURL: "http://127.0.0.1:1/exports", AllowPrivateNetwork: true})...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r2.IDs(), []string{"a", "b", "sandbox"}) {
		t.Fatalf("ids %v", r2.IDs())
	}

	if _, err := LoadRegistry(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file: want an error")
	}
	var nilReg *Registry
	if _, ok := nilReg.Get("a"); ok || nilReg.IDs() != nil {
		t.Fatal("nil registry should be empty")
	}
}

func TestPartnerAllowsURL(t *testing.T) {
	p := Partner{ID: "a", FHIRBaseURL: "https://fhir.a.example/r4", PushURL: "https://push.a.example/x",
		AllowedHosts: []string{"files.a-cdn.example", "dl.a.example:8443", "*.blob.a.example", "[::1]:8080"}}
	tests := []struct {
		url  string
		want bool
	}{
		{"https://dl.a.example:8443/f", true},
		{"https://dl.a.example/f", false},
		{"https://dl.a.example:9443/f", false},
		{"https://files.a-cdn.example:9443/f", true},
		{"https://x.blob.a.example/f", true},
		{"https://blob.a.example/f", false},
		{"http://[::1]:8080/f", true},
		{"http://[::1]:8081/f", false},
		{"https://fhir.a.example/r4/bulkstatus/1", true},
		{"https://FHIR.A.EXAMPLE:8443/x", true},
		{"https://push.a.example/other", true},
		{"https://files.a-cdn.example/out/Patient.ndjson", true},
		{"https://evil.example/out/Patient.ndjson", false},
		{"https://fhir.a.example.evil.example/x", false},
		{"ftp://fhir.a.example/x", false},
		{"https://user:pw@fhir.a.example/x", false},
		{"::not a url", false},
	}
	for _, tt := range tests {
		if got := p.AllowsURL(tt.url); got != tt.want {
			t.Errorf("AllowsURL(%q) = %v, want %v", tt.url, got, tt.want)
		}
	}
}

func TestRolesDefaultToPush(t *testing.T) {
	r, err := ParseRegistry([]byte("partners:\n- {id: a, push_url: 'https://a.example/x'}\n- {id: b, roles: [requester], fhir_base_url: 'http://127.0.0.1:1/fhir', allow_private_network: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := r.Get("a")
	b, _ := r.Get("b")
	if !a.HasRole(RolePush) || a.HasRole(RolePull) || !b.HasRole(RoleRequester) || b.HasRole(RolePush) {
		t.Fatalf("roles: a %v, b %v", a.Roles, b.Roles)
	}
}

func TestLiveReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partners.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("partners:\n- {id: a, push_url: 'https://a.example/x'}\n")
	l, err := OpenLive(path, Partner{ID: "sandbox", PushURL: "http://127.0.0.1:1/exports", AllowPrivateNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Registry().IDs(), []string{"a", "sandbox"}) || !l.CanPush("a") {
		t.Fatalf("ids %v", l.Registry().IDs())
	}
	write("partners:\n- {id: a, push_url: 'https://a.example/x'}\n- {id: b, roles: [requester], fhir_base_url: 'http://127.0.0.1:2/fhir', allow_private_network: true}\n- {id: old, roles: [pull], fhir_base_url: 'http://127.0.0.1:3/fhir', allow_private_network: true}\n")
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if !l.CanPull("old") || l.CanPull("a") || l.CanPull("b") || l.CanPush("old") {
		t.Fatalf("after reload: pull roles wrong")
	}
	if !l.Has("b") || l.CanPush("b") || !l.Has("sandbox") {
		t.Fatalf("after reload: ids %v", l.Registry().IDs())
	}
	// A bad file is refused and the registry stays as it was.
	write("partners:\n- {id: c, push_url: 'ftp://c.example/x'}\n")
	if err := l.Reload(); err == nil {
		t.Fatal("a bad registry was accepted")
	}
	if !l.Has("b") || l.Has("c") {
		t.Fatalf("after a refused reload: ids %v", l.Registry().IDs())
	}
	// The file may not take the extra partners' ids.
	write("partners:\n- {id: sandbox, push_url: 'https://s.example/x'}\n")
	if err := l.Reload(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate of an extra partner: err = %v", err)
	}
}

// The example registry shipped in deploy/ must stay valid.
func TestDeployRegistryIsValid(t *testing.T) {
	r, err := LoadRegistry("../deploy/partners.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IDs()) == 0 {
		t.Fatal("deploy/partners.yaml lists no partner")
	}
}

// TestDeployRegistry keeps the sample registry the README points to valid.
func TestDeployRegistry(t *testing.T) {
	r, err := LoadRegistry("../deploy/partners.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := r.Get("new-payer"); !ok || !p.HasRole(RoleRequester) || p.Auth.Type != AuthMTLS {
		t.Errorf("new-payer = %+v, %v", p, ok)
	}
}

func TestPartnerEgress(t *testing.T) {
	p := Partner{ID: "a", PushURL: "https://push.a.example/x", FHIRBaseURL: "https://fhir.a.example/r4", JWKSURL: "https://keys.a.example/jwks",
		AllowedHosts: []string{"files.a.example"}, TokenHosts: []string{"tok.a.example:8443"},
		Auth: Auth{Type: AuthSMARTBackend, TokenURL: "https://auth.a.example/token"}}
	pol := p.Egress()
	if pol.Name != "a" || pol.AllowPrivate {
		t.Fatalf("policy %+v", pol)
	}
	has := func(rules []egress.Rule, raw string) bool {
		u, _ := url.Parse(raw)
		return slices.ContainsFunc(rules, func(r egress.Rule) bool { return r.Allows(u) })
	}
	for _, tc := range []struct {
		url         string
		host, token bool
	}{
		{"https://push.a.example/x", true, false},
		{"https://fhir.a.example/r4/Patient/$export", true, true},
		{"https://fhir.a.example:8443/r4/status", true, false}, // another port: no token
		{"https://keys.a.example/jwks", true, false},
		{"https://auth.a.example/token", true, false}, // a client assertion, not a bearer token
		{"https://files.a.example/f/1", true, false},
		{"https://tok.a.example:8443/f/1", true, true},
		{"https://tok.a.example/f/1", false, false},
		{"https://evil.example/", false, false},
	} {
		if got := has(pol.Hosts, tc.url); got != tc.host {
			t.Errorf("%s: host allowed %v, want %v", tc.url, got, tc.host)
		}
		if got := has(pol.TokenHosts, tc.url); got != tc.token {
			t.Errorf("%s: token host %v, want %v", tc.url, got, tc.token)
		}
	}
	if !(Partner{ID: "s", AllowPrivateNetwork: true}).Egress().AllowPrivate {
		t.Error("allow_private_network does not reach the policy")
	}
}

func TestJWKSEgress(t *testing.T) {
	list := func() []Partner {
		return []Partner{{ID: "dev", JWKSURL: "http://127.0.0.1:9/jwks", AllowPrivateNetwork: true}, {ID: "pub", JWKSURL: "https://k.example/jwks"}}
	}
	f := JWKSEgress(list)
	for _, tc := range []struct {
		url, name string
		private   bool
	}{
		{"http://127.0.0.1:9/jwks", "dev", true},
		{"https://k.example/jwks", "pub", false},
		{"http://127.0.0.1:9/other", "127.0.0.1", false}, // no partner publishes it
	} {
		if pol := f(tc.url); pol.Name != tc.name || pol.AllowPrivate != tc.private {
			t.Errorf("%s: policy %s private %v, want %s %v", tc.url, pol.Name, pol.AllowPrivate, tc.name, tc.private)
		}
	}
}
