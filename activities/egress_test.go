package activities

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/connectors/pdexclient"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

// names resolves test host names to the addresses a test wants refused.
type names map[string]string

func (n names) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := n[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

func portOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestSSRF: a partner URL, a Content-Location, a manifest's file URL or a
// redirect pointing at loopback, the metadata service, a private network
// or another host is refused before anything is sent there, the refusal
// is final (validation, egress_refused) and the transfer's timeline
// records it with the host only.
func TestSSRF(t *testing.T) {
	var evilHits atomic.Int32 // another host's server: must never be reached
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { evilHits.Add(1) }))
	defer evil.Close()
	evilPort := portOf(t, evil.URL)

	type setup struct {
		fhirHost     string // the partner's FHIR base host; "" the old payer's 127.0.0.1
		allowPrivate bool
		allowedHosts []string
		fileBase     func(srvPort string) string // manifest file URLs' base; nil the FHIR base
		mtls         bool                        // auth mtls: a partner off loopback cannot have auth none
	}
	cases := []struct {
		name  string
		setup setup
		names names
		// steps runs the import until the refused call, returning its error.
		step     string // "match", "kickoff", "poll", "download"
		inject   func(f *importFixture, srvPort string)
		wantHost string // host recorded; "" any
	}{
		{name: "partner URL: a name resolving to loopback",
			setup: setup{fhirHost: "fhir.test", mtls: true}, names: names{"fhir.test": "127.0.0.1"}, step: "match", wantHost: "fhir.test"},
		{name: "partner URL: a name resolving to the metadata service, even for a private partner",
			setup: setup{fhirHost: "fhir.test", allowPrivate: true, mtls: true}, names: names{"fhir.test": "169.254.169.254"}, step: "match", wantHost: "fhir.test"},
		{name: "partner URL: a name resolving to 10/8",
			setup: setup{fhirHost: "fhir.test", mtls: true}, names: names{"fhir.test": "10.0.0.1"}, step: "match", wantHost: "fhir.test"},
		{name: "Content-Location at another port of 127.0.0.1",
			setup: setup{allowPrivate: true}, step: "kickoff",
			inject: func(f *importFixture, _ string) {
				f.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 202, Header: map[string]string{"Content-Location": "http://127.0.0.1:" + evilPort + "/fhir/status/1"}})
			}, wantHost: "127.0.0.1:" + evilPort},
		{name: "Content-Location at the metadata service",
			setup: setup{allowPrivate: true}, step: "kickoff",
			inject: func(f *importFixture, _ string) {
				f.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 202, Header: map[string]string{"Content-Location": "http://169.254.169.254/latest/meta-data/"}})
			}, wantHost: "169.254.169.254"},
		{name: "Content-Location on another host",
			setup: setup{allowPrivate: true}, names: names{"evil.test": "127.0.0.1"}, step: "kickoff",
			inject: func(f *importFixture, _ string) {
				f.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 202, Header: map[string]string{"Content-Location": "http://evil.test:" + evilPort + "/status/1"}})
			}, wantHost: "evil.test"},
		{name: "manifest file URL at the metadata service",
			setup: setup{allowPrivate: true, fileBase: func(string) string { return "http://169.254.169.254/latest" }}, step: "poll", wantHost: "169.254.169.254"},
		{name: "manifest file URL on an allowed name resolving to the metadata service",
			setup: setup{allowPrivate: true, allowedHosts: []string{"files.test"}, fileBase: func(string) string { return "http://files.test/fhir" }},
			names: names{"files.test": "169.254.169.254"}, step: "download", wantHost: "files.test"},
		{name: "a file redirected to another host",
			setup: setup{allowPrivate: true}, names: names{"evil.test": "127.0.0.1"}, step: "download",
			inject: func(f *importFixture, _ string) {
				f.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 302, Header: map[string]string{"Location": "http://evil.test:" + evilPort + "/steal"}})
			}, wantHost: "evil.test"},
		{name: "a file redirected to 169.254.169.254",
			setup: setup{allowPrivate: true}, step: "download",
			inject: func(f *importFixture, _ string) {
				f.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 307, Header: map[string]string{"Location": "http://169.254.169.254/latest/meta-data/iam"}})
			}, wantHost: "169.254.169.254"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, st)
			var srvPort string
			f := newImportFixtureWith(t, st, func(srvURL string, p *connectors.Partner, d *pdexclient.Dialer) {
				srvPort = portOf(t, srvURL)
				if tc.setup.fhirHost != "" {
					p.FHIRBaseURL = "http://" + tc.setup.fhirHost + ":" + srvPort + "/fhir"
				}
				p.AllowPrivateNetwork = tc.setup.allowPrivate
				if tc.setup.mtls {
					cert, key := clientCert(t)
					p.Auth = connectors.Auth{Type: connectors.AuthMTLS, CertFile: cert, KeyFile: key}
				}
				p.AllowedHosts = tc.setup.allowedHosts
				d.Resolver = tc.names
			})
			if tc.setup.fileBase != nil {
				f.bulk.FileBaseURL = tc.setup.fileBase(srvPort)
			}
			if err := f.bulk.Add("pt-M1", json.RawMessage(`{"resourceType":"Patient","id":"p1"}`)); err != nil {
				t.Fatal(err)
			}
			f.create(t, "t1", "OLD-1", t0)
			before := len(f.bulk.Requests(bulktest.RouteKickOff)) + len(f.bulk.Requests(bulktest.RouteStatus)) + len(f.bulk.Requests(bulktest.RouteFile))
			if tc.inject != nil {
				tc.inject(f, srvPort)
			}
			err = runUntil(ctx, t, f, tc.step)
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != fault.TypeEgressRefused || !ae.NonRetryable() {
				t.Fatalf("err = %v, want a final egress_refused", err)
			}
			if evilHits.Load() != 0 {
				t.Fatal("a refused call reached another host")
			}
			if tc.step == "match" {
				if n := len(f.bulk.Requests(bulktest.RouteKickOff)) + len(f.bulk.Requests(bulktest.RouteStatus)) + len(f.bulk.Requests(bulktest.RouteFile)); n != before {
					t.Fatalf("the old payer got %d requests", n-before)
				}
			}
			tl, err := st.Timeline(ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, ev := range tl {
				if ev.Type != transfer.EventEgressRefused {
					continue
				}
				found = true
				host, _ := ev.Detail["host"].(string)
				if !strings.HasPrefix(host, tc.wantHost) || ev.Detail["partner_id"] != "oldco" || ev.Detail["reason"] == "" {
					t.Errorf("egress_refused detail %v, want host %s", ev.Detail, tc.wantHost)
				}
				if strings.Contains(host, "/") {
					t.Errorf("the host %q carries a path", host)
				}
			}
			if !found {
				t.Fatal("the refusal is not on the timeline")
			}
		})
	}
}

// runUntil runs the import's steps up to step and returns that step's
// error (failing the test if an earlier step fails).
func runUntil(ctx context.Context, t *testing.T, f *importFixture, step string) error {
	t.Helper()
	in := ImportInput{TransferID: "t1", PartnerID: "oldco"}
	m, err := f.acts.MatchAtPartner(ctx, in)
	if step == "match" {
		return err
	}
	if err != nil {
		t.Fatalf("match: %v", err)
	}
	k, err := f.acts.KickOffImport(ctx, KickOffInput{TransferID: "t1", PartnerID: "oldco", PatientID: m.PatientID, Types: []string{"Patient"}, Round: 1})
	if step == "kickoff" {
		return err
	}
	if err != nil {
		t.Fatalf("kick-off: %v", err)
	}
	p, err := f.acts.PollImport(ctx, PollInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL})
	if step == "poll" {
		return err
	}
	if err != nil || p.Status.State != bulkdata.StateComplete {
		t.Fatalf("poll: %+v, %v", p, err)
	}
	man := p.Status.Complete.Manifest
	_, err = f.acts.DownloadImportFile(ctx, DownloadInput{TransferID: "t1", PartnerID: "oldco", Round: 1, File: man.Output[0], N: 1,
		RequiresAccessToken: man.RequiresAccessToken})
	return err
}

// clientCert writes a self-signed client certificate and its key (PEM)
// and returns their paths: an mtls partner's files.
func clientCert(t *testing.T) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "p2p.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, keyFile
}

// TestImportLimits: each cap stops the import with its own final fault
// and an import_limit_exceeded event, before the data reaches the sink.
func TestImportLimits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limits   ImportLimits
		step     string // where it stops: "poll", "download" (the first file), "download2" (the second), "deliver"
		wantType string
	}{
		{"too many files", ImportLimits{Files: 1}, "poll", fault.TypeImportTooManyFiles},
		{"a file too large", ImportLimits{FileBytes: 20}, "download", fault.TypeImportFileTooLarge},
		{"the files together too large", ImportLimits{TransferBytes: 120}, "download2", fault.TypeImportTooLarge},
		{"within every cap", ImportLimits{Files: 2, FileBytes: 1000, TransferBytes: 2000}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newImportFixture(t)
			f.acts.Limits = tc.limits
			for _, raw := range []string{`{"resourceType":"Patient","id":"p1","name":[{"family":"Lovelace"}]}`,
				`{"resourceType":"Coverage","id":"c1","status":"active","subscriberId":"OLD-1"}`} {
				if err := f.bulk.Add("pt-M1", json.RawMessage(raw)); err != nil {
					t.Fatal(err)
				}
			}
			f.create(t, "t1", "OLD-1", t0)
			in := ImportInput{TransferID: "t1", PartnerID: "oldco"}
			m, err := f.acts.MatchAtPartner(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			k, err := f.acts.KickOffImport(ctx, KickOffInput{TransferID: "t1", PartnerID: "oldco", PatientID: m.PatientID, Types: []string{"Patient", "Coverage"}, Round: 1})
			if err != nil {
				t.Fatal(err)
			}
			stopped := func(step string, err error) bool {
				t.Helper()
				if tc.step != step {
					if err != nil {
						t.Fatalf("%s: %v", step, err)
					}
					return false
				}
				var ae *temporal.ApplicationError
				if !errors.As(err, &ae) || ae.Type() != tc.wantType || !ae.NonRetryable() {
					t.Fatalf("%s: %v, want a final %s", step, err, tc.wantType)
				}
				tl, err := f.st.Timeline(ctx, "t1")
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range tl {
					if ev.Type == transfer.EventImportLimit && ev.Detail["limit"] == tc.wantType {
						return true
					}
				}
				t.Fatalf("no import_limit_exceeded event for %s", tc.wantType)
				return true
			}
			p, err := f.acts.PollImport(ctx, PollInput{TransferID: "t1", PartnerID: "oldco", StatusURL: k.StatusURL})
			if stopped("poll", err) {
				return
			}
			var files []transfer.ExportFile
			for i, n := range bulkdata.OutputSeq(p.Status.Complete.Manifest.Output) {
				ef, err := f.acts.DownloadImportFile(ctx, DownloadInput{TransferID: "t1", PartnerID: "oldco", Round: 1, File: p.Status.Complete.Manifest.Output[i], N: n})
				if stopped([]string{"download", "download2"}[i], err) {
					if left, _ := f.acts.Bucket.StagedBytes(ctx, "t1", 1, ""); left > tc.limits.TransferBytes && tc.limits.TransferBytes > 0 {
						t.Errorf("%d bytes staged past the cap", left)
					}
					return
				}
				files = append(files, ef)
			}
			// The strict gate: the same files, delivered under a smaller
			// cap, are refused.
			if _, err := f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 1, Files: files}); err != nil {
				t.Fatal(err)
			}
			f.acts.Limits.TransferBytes = files[0].Bytes
			tc.step, tc.wantType = "deliver", fault.TypeImportTooLarge
			_, err = f.acts.DeliverImport(ctx, DeliverInput{TransferID: "t1", Round: 2, Files: files})
			stopped("deliver", err)
		})
	}
}
