package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fakeFrontend is a Temporal frontend that answers GetSystemInfo (what
// client.Dial calls) to callers with a client certificate of its CA or
// the API key, and refuses anyone else, as a cluster restricted by mTLS
// or Temporal Cloud does.
type fakeFrontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	apiKey string
}

func (f *fakeFrontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			return &workflowservice.GetSystemInfoResponse{}, nil
		}
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if v == "Bearer "+f.apiKey {
				return &workflowservice.GetSystemInfoResponse{}, nil
			}
		}
	}
	return nil, status.Error(codes.Unauthenticated, "no client certificate and no API key")
}

// TestDialTemporal dials an in-process TLS frontend with each way of
// authenticating, and with each mistake an operator could make.
func TestDialTemporal(t *testing.T) {
	ca := newCA(t, "temporal CA")
	server := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "temporal.test"}, DNSNames: []string{"temporal.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{server}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	})))
	workflowservice.RegisterWorkflowServiceServer(srv, &fakeFrontend{apiKey: "key-1"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // ends with Stop
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.cert.Raw)
	certFiles := func(name string, c tls.Certificate) (string, string) {
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certPath, "CERTIFICATE", c.Certificate[0])
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyPath, "PRIVATE KEY", der)
		return certPath, keyPath
	}
	worker, workerKey := certFiles("worker", ca.client(t, "p2p-worker"))
	stranger, strangerKey := certFiles("stranger", newCA(t, "another CA").client(t, "p2p-worker"))
	goodKey := file("api-key", []byte("key-1\n"))
	badKey := file("bad-api-key", []byte("key-2\n"))

	tests := []struct {
		name string
		auth TemporalAuth
		want string // "" dials; else substrings of the error, one of which must appear ("|"-separated)
	}{
		{"mTLS", TemporalAuth{CertFile: worker, KeyFile: workerKey, CAFile: caFile, ServerName: "temporal.test"}, ""},
		{"API key from a file", TemporalAuth{APIKeyFile: goodKey, CAFile: caFile, ServerName: "temporal.test"}, ""},
		{"API key from the environment", TemporalAuth{APIKey: "key-1", CAFile: caFile, ServerName: "temporal.test"}, ""},
		{"TLS without credentials", TemporalAuth{CAFile: caFile, ServerName: "temporal.test"}, "no client certificate and no API key"},
		{"a wrong API key", TemporalAuth{APIKeyFile: badKey, CAFile: caFile, ServerName: "temporal.test"}, "no client certificate and no API key"},
		// Under TLS 1.3 the server refuses the client's certificate after
		// the client's side of the handshake is done: the client reads the
		// alert, or finds the connection already closed.
		{"a certificate of another CA", TemporalAuth{CertFile: stranger, KeyFile: strangerKey, CAFile: caFile, ServerName: "temporal.test"}, "tls: unknown certificate authority|broken pipe|connection reset by peer"},
		{"a server name the certificate lacks", TemporalAuth{CertFile: worker, KeyFile: workerKey, CAFile: caFile, ServerName: "other.test"}, "not other.test"},
		{"the system's CAs", TemporalAuth{CertFile: worker, KeyFile: workerKey, ServerName: "temporal.test"}, "certificate signed by unknown authority"},
		{"plain gRPC", TemporalAuth{}, "failed reaching server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c, err := Dial(ctx, ln.Addr().String(), "default", tt.auth, testCodec(t), zap.NewNop())
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dialled")
			}
			if !slices.ContainsFunc(strings.Split(tt.want, "|"), func(w string) bool { return strings.Contains(err.Error(), w) }) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestTemporalTLSConfig: the settings → tls.Config path, and errors that
// name the setting at fault before any network call.
func TestTemporalTLSConfig(t *testing.T) {
	ca := newCA(t, "temporal CA")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.cert.Raw)
	c := ca.client(t, "p2p")
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePEM(t, certFile, "CERTIFICATE", c.Certificate[0])
	der, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	writePEM(t, keyFile, "PRIVATE KEY", der)
	notPEM := filepath.Join(dir, "junk")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name       string
		auth       TemporalAuth
		tls        bool
		clientCert bool
		wantErr    string
	}{
		{"zero: plain gRPC", TemporalAuth{}, false, false, ""},
		{"API key alone turns TLS on", TemporalAuth{APIKey: "k"}, true, false, ""},
		{"server name alone", TemporalAuth{ServerName: "t"}, true, false, ""},
		{"mTLS", TemporalAuth{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}, true, true, ""},
		{"missing CA file", TemporalAuth{CAFile: missing}, false, false, "P2P_TEMPORAL_TLS_CA_FILE: open " + missing},
		{"CA file without PEM", TemporalAuth{CAFile: notPEM}, false, false, "holds no PEM certificate"},
		{"key without certificate", TemporalAuth{KeyFile: keyFile}, false, false, "go together"},
		{"missing certificate", TemporalAuth{CertFile: missing, KeyFile: keyFile}, false, false, "client certificate: stat " + missing},
		{"certificate that is no certificate", TemporalAuth{CertFile: notPEM, KeyFile: keyFile}, false, false, "client certificate " + notPEM},
		{"certificate with another's key", TemporalAuth{CertFile: certFile, KeyFile: caFile}, false, false, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.auth.TLSConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg != nil) != tt.tls {
				t.Fatalf("TLS %v, want %v", cfg != nil, tt.tls)
			}
			if cfg == nil {
				return
			}
			if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != tt.auth.ServerName || (cfg.RootCAs != nil) != (tt.auth.CAFile != "") {
				t.Fatalf("config %+v", cfg)
			}
			if (cfg.GetClientCertificate != nil) != tt.clientCert {
				t.Fatalf("client certificate %v, want %v", cfg.GetClientCertificate != nil, tt.clientCert)
			}
			if tt.clientCert {
				got, err := cfg.GetClientCertificate(nil)
				if err != nil || got.Leaf == nil && len(got.Certificate) == 0 {
					t.Fatalf("client certificate: %v", err)
				}
			}
		})
	}
}

// TestClientCertReload: a renewed client certificate is used without a
// restart; a renewal caught half written keeps the last good one.
func TestClientCertReload(t *testing.T) {
	ca := newCA(t, "temporal CA")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	write := func(c tls.Certificate, mod time.Time) {
		writePEM(t, certFile, "CERTIFICATE", c.Certificate[0])
		der, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		writePEM(t, keyFile, "PRIVATE KEY", der)
		for _, p := range []string{certFile, keyFile} {
			if err := os.Chtimes(p, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, second := ca.client(t, "one"), ca.client(t, "two")
	t0 := time.Now().Add(-time.Hour)
	write(first, t0)
	cfg, err := TemporalAuth{CertFile: certFile, KeyFile: keyFile}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		c, err := cfg.GetClientCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "one" {
		t.Fatalf("first: %s", got)
	}
	write(second, t0.Add(time.Minute))
	if got := cn(); got != "two" {
		t.Fatalf("after renewal: %s", got)
	}
	if err := os.WriteFile(certFile, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got != "two" {
		t.Fatalf("after a broken renewal: %s", got)
	}
}
