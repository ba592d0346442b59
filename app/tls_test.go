package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// issue signs a leaf certificate for tmpl's names and usage.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) client(t *testing.T, dnsName string) tls.Certificate {
	return ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serverTLSFiles writes a server certificate for 127.0.0.1 issued by ca,
// its key and clientCA as the files ServerTLS reads.
func serverTLSFiles(t *testing.T, ca, clientCA *testCA) ServerTLS {
	t.Helper()
	dir := t.TempDir()
	c := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "p2p.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	s := ServerTLS{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"), ClientCAFile: filepath.Join(dir, "client-ca.pem")}
	writePEM(t, s.CertFile, "CERTIFICATE", c.Certificate[0])
	writePEM(t, s.KeyFile, "PRIVATE KEY", keyDER)
	writePEM(t, s.ClientCAFile, "CERTIFICATE", clientCA.cert.Raw)
	return s
}

// memberMatchRequest is the HRex example $member-match request for the
// demo member Alice Nguyen, with a consent in force today.
func memberMatchRequest(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../pdex/testdata/hrex/member-match-in.json")
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	res := func(i int) map[string]any {
		return p["parameter"].([]any)[i].(map[string]any)["resource"].(map[string]any)
	}
	patient := res(0)
	patient["name"] = []any{map[string]any{"use": "official", "family": "Nguyen", "given": []any{"Alice"}}}
	patient["birthDate"], patient["gender"] = "1985-04-12", "female"
	res(1)["identifier"].([]any)[0].(map[string]any)["value"] = "M100001"
	now := time.Now().UTC()
	res(3)["provision"].(map[string]any)["period"] = map[string]any{
		"start": now.AddDate(0, -1, 0).Format(time.DateOnly), "end": now.AddDate(0, 6, 0).Format(time.DateOnly),
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMutualTLS serves the API over TLS with client certificates from one
// CA and shows that /fhir knows mtls requesters by their certificates
// alone, while the REST API stays open to callers without one.
func TestMutualTLS(t *testing.T) {
	ctx := context.Background()
	partnerCA, serverCA, otherCA := newCA(t, "partners"), newCA(t, "server"), newCA(t, "other")
	acme := partnerCA.client(t, "p2p.acme.example")       // registered by name
	zeta := partnerCA.client(t, "p2p.zeta.example")       // registered by key pin
	stranger := partnerCA.client(t, "p2p.nobody.example") // CA-signed, not registered
	forged := otherCA.client(t, "p2p.acme.example")       // acme's name from another CA
	pin := sha256.Sum256(zeta.Leaf.RawSubjectPublicKeyInfo)

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := st.UpsertMembers(ctx, []member.Record{{ID: "M100001", Given: "Alice", Family: "Nguyen", BirthDate: "1985-04-12", Sex: "F",
		Street: "12 Oak Street", City: "Springfield", State: "IL", PostalCode: "62701", Phone: "217-555-0101"}}); err != nil {
		t.Fatal(err)
	}
	// The HRex example consent names the new payer by NPI 0123456789 and
	// us, the old payer, by 9876543210.
	npi := []connectors.Identifier{{System: fhir.SystemNPI, Value: "0123456789"}}
	partners, err := connectors.NewRegistry(
		connectors.Partner{ID: "acme", Roles: []connectors.Role{connectors.RoleRequester}, Identifiers: npi,
			Auth: connectors.Auth{Type: connectors.AuthMTLS, ClientCertSubject: "p2p.acme.example"}},
		connectors.Partner{ID: "zeta", Roles: []connectors.Role{connectors.RoleRequester}, Identifiers: npi,
			Auth: connectors.Auth{Type: connectors.AuthMTLS, ClientCertSHA256: hex.EncodeToString(pin[:])}},
	)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Built as p2p api builds it; the Temporal client never dials, as no
	// request here starts a workflow.
	temporal, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(temporal.Close)
	a, err := NewAPI(ctx, Config{
		TLS: serverTLSFiles(t, serverCA, partnerCA), FHIRTrustHeader: "X-P2P-Partner", Addr: "127.0.0.1:0",
		PayerIdentifier: fhir.SystemNPI + "|9876543210",
	}, Deps{Store: st, Temporal: temporal, Signer: signer, Partners: partners})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	base := "https://" + ln.Addr().String()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	do := func(cert *tls.Certificate, method, path string, body []byte, header ...string) (int, []byte, error) {
		tc := &tls.Config{RootCAs: roots}
		if cert != nil {
			// Send the certificate whatever CAs the server names: a Go
			// client given Certificates sends none the server's CAs did not
			// issue, and the server must refuse what other clients send.
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
		defer c.CloseIdleConnections()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, b, err
	}
	match := memberMatchRequest(t)
	const mm = "/fhir/Patient/$member-match"
	// grant is the Seq of partner's match grant of the member (0: none):
	// who the handler took the caller for.
	grant := func(partner string) int64 {
		t.Helper()
		g, err := st.MatchGrants(ctx, partner)
		if err != nil || len(g) > 1 {
			t.Fatalf("%s's grants: %+v %v", partner, g, err)
		}
		if len(g) == 0 {
			return 0
		}
		return g[0].Seq
	}

	t.Run("registered by name", func(t *testing.T) {
		code, body, err := do(&acme, http.MethodPost, mm, match)
		if err != nil || code != http.StatusOK || !bytes.Contains(body, []byte(`"M100001"`)) {
			t.Fatalf("%d %v: %s", code, err, body)
		}
		if grant("acme") == 0 || grant("zeta") != 0 {
			t.Errorf("grants: acme %d, zeta %d; want acme's only", grant("acme"), grant("zeta"))
		}
	})
	t.Run("registered by key pin", func(t *testing.T) {
		code, body, err := do(&zeta, http.MethodPost, mm, match)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%d %v: %s", code, err, body)
		}
		if grant("zeta") == 0 {
			t.Error("zeta has no match grant")
		}
	})
	t.Run("certificate wins over the trust header", func(t *testing.T) {
		acmeBefore, zetaBefore := grant("acme"), grant("zeta")
		code, body, err := do(&acme, http.MethodPost, mm, match, "X-P2P-Partner", "zeta")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%d %v: %s", code, err, body)
		}
		if grant("acme") <= acmeBefore || grant("zeta") != zetaBefore {
			t.Errorf("acme's grant %d → %d, zeta's %d → %d; want acme's renewed", acmeBefore, grant("acme"), zetaBefore, grant("zeta"))
		}
	})
	t.Run("CA-signed but unregistered", func(t *testing.T) {
		if code, body, err := do(&stranger, http.MethodPost, mm, match); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("%d %v: %s", code, err, body)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		if code, body, err := do(nil, http.MethodPost, mm, match); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("/fhir: %d %v: %s", code, err, body)
		}
		if code, body, err := do(nil, http.MethodGet, "/healthz", nil); err != nil || code != http.StatusOK {
			t.Fatalf("/healthz: %d %v: %s", code, err, body)
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		code, body, err := do(&forged, http.MethodGet, "/healthz", nil)
		if err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("handshake accepted: %d %v: %s", code, err, body)
		}
	})
	t.Run("weak protocol versions and suites", func(t *testing.T) {
		for name, tc := range map[string]*tls.Config{
			"TLS 1.1": {MaxVersion: tls.VersionTLS11},
			"TLS 1.2 CBC": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		} {
			tc.RootCAs = roots
			conn, err := tls.Dial("tcp", ln.Addr().String(), tc)
			if err == nil {
				t.Errorf("%s: handshake accepted", name)
				if err := conn.Close(); err != nil {
					t.Error(err)
				}
			}
		}
		tc := &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}
		conn, err := tls.Dial("tcp", ln.Addr().String(), tc)
		if err != nil {
			t.Fatalf("TLS 1.2 with its default suites: %v", err)
		}
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
}

func TestServerTLSConfig(t *testing.T) {
	ca := newCA(t, "ca")
	good := serverTLSFiles(t, ca, ca)
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		in        ServerTLS
		wantErr   string
		wantNil   bool
		clientCAs bool
	}{
		{"unset", ServerTLS{}, "", true, false},
		{"server only", ServerTLS{CertFile: good.CertFile, KeyFile: good.KeyFile}, "", false, false},
		{"with client CAs", good, "", false, true},
		{"cert without key", ServerTLS{CertFile: good.CertFile}, "both required", false, false},
		{"client CAs alone", ServerTLS{ClientCAFile: good.ClientCAFile}, "both required", false, false},
		{"key mismatch", ServerTLS{CertFile: good.CertFile, KeyFile: serverTLSFiles(t, ca, ca).KeyFile}, "server certificate", false, false},
		{"missing file", ServerTLS{CertFile: good.CertFile + ".gone", KeyFile: good.KeyFile}, "server certificate", false, false},
		{"client CA file without PEM", ServerTLS{CertFile: good.CertFile, KeyFile: good.KeyFile, ClientCAFile: empty}, "no PEM certificate", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.in.Config()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg == nil) != tt.wantNil {
				t.Fatalf("config %v, want nil %v", cfg, tt.wantNil)
			}
			if cfg == nil {
				return
			}
			if cfg.MinVersion != tls.VersionTLS12 || (cfg.ClientCAs != nil) != tt.clientCAs {
				t.Errorf("MinVersion %x, client CAs %v", cfg.MinVersion, cfg.ClientCAs != nil)
			}
			if want := map[bool]tls.ClientAuthType{true: tls.VerifyClientCertIfGiven, false: tls.RequestClientCert}[tt.clientCAs]; cfg.ClientAuth != want {
				t.Errorf("ClientAuth = %v, want %v", cfg.ClientAuth, want)
			}
		})
	}
}
