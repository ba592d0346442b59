package bulkdata

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestAgainstBulkDataServer runs kick-off → poll (sleeping NextPollDelay)
// → download of every file → delete against an independent Bulk Data
// server, e.g. the SMART reference server. It is skipped only when
// P2P_BULK_SERVER_URL is unset:
//
//	P2P_BULK_SERVER_URL   FHIR base URL (required)
//	P2P_BULK_GROUP_ID     export this Group ([base]/Group/[id]/$export); else Patient/$export
//	P2P_BULK_DAVINCI      "1": $davinci-data-export on the Group
//	P2P_BULK_TYPES        _type, comma-separated (default: all)
//	P2P_BULK_METHOD       GET (default) or POST
//	P2P_BULK_ALLOWED_HOSTS  extra hosts files may be on, comma-separated
//	P2P_BULK_CLIENT_ID    SMART Backend Services client id (no token without it)
//	P2P_BULK_PRIVATE_KEY  its private key: a file holding a JWK or a PEM key (RSA or EC P-384)
//	P2P_BULK_KEY_ID       the key's kid (default: the JWK's kid, or its thumbprint)
//	P2P_BULK_TOKEN_URL    token endpoint (default: .well-known/smart-configuration)
//	P2P_BULK_SCOPE        scope (default system/*.read)
//	P2P_BULK_TIMEOUT      overall limit (default 10m)
func TestAgainstBulkDataServer(t *testing.T) {
	base := os.Getenv("P2P_BULK_SERVER_URL")
	if base == "" {
		t.Skip("P2P_BULK_SERVER_URL is not set: no independent Bulk Data server to run against")
	}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	list := func(k string) []string {
		var out []string
		for _, s := range strings.Split(os.Getenv(k), ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	timeout, err := time.ParseDuration(env("P2P_BULK_TIMEOUT", "10m"))
	if err != nil {
		t.Fatalf("P2P_BULK_TIMEOUT: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	cfg := Config{Partner: "external", BaseURL: base, AllowedHosts: list("P2P_BULK_ALLOWED_HOSTS")}
	if id := os.Getenv("P2P_BULK_CLIENT_ID"); id != "" {
		key, kid, err := loadPrivateKey(os.Getenv("P2P_BULK_PRIVATE_KEY"))
		if err != nil {
			t.Fatalf("P2P_BULK_PRIVATE_KEY: %v", err)
		}
		tokens, err := NewBackendServices(BackendServicesConfig{
			Partner: "external", ClientID: id, Key: key, KeyID: env("P2P_BULK_KEY_ID", kid),
			Scope: env("P2P_BULK_SCOPE", "system/*.read"), TokenURL: os.Getenv("P2P_BULK_TOKEN_URL"),
			FHIRBaseURL: base, AllowedHosts: cfg.AllowedHosts,
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = tokens
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	req := ExportRequest{Level: PatientLevel, Method: env("P2P_BULK_METHOD", http.MethodGet), Types: list("P2P_BULK_TYPES")}
	if g := os.Getenv("P2P_BULK_GROUP_ID"); g != "" {
		req.Level, req.GroupID = GroupLevel, g
		if os.Getenv("P2P_BULK_DAVINCI") == "1" {
			req.Level = DaVinciLevel
		}
	}
	start := time.Now()
	statusURL, err := c.KickOff(ctx, req)
	if err != nil {
		t.Fatalf("kick-off: %v", err)
	}
	t.Logf("kicked off; status URL %s", statusURL)
	defer func() {
		if err := c.Delete(context.WithoutCancel(ctx), statusURL); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()

	var done *Complete
	for attempt := 1; done == nil; attempt++ {
		st, err := c.Poll(ctx, statusURL)
		var d time.Duration
		switch {
		case err != nil && fault429or5xx(err):
			d = NextPollDelay(statusRetryAfter(err), time.Now(), attempt, PollPolicy{})
			t.Logf("poll %d: %v; again in %v", attempt, err, d)
		case err != nil:
			t.Fatalf("poll %d: %v", attempt, err)
		case st.State == StateFailed:
			t.Fatalf("export failed: %d %s", st.Failed.StatusCode, st.Failed.Outcome.Codes())
		case st.State == StateComplete:
			done = st.Complete
			continue
		default:
			d = NextPollDelay(st.InProgress.RetryAfter, st.InProgress.ReceivedAt, attempt, PollPolicy{})
			t.Logf("poll %d: in progress (X-Progress %q, Retry-After %q); next poll in %v", attempt, st.InProgress.XProgress, st.InProgress.RetryAfter, d)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %v", ctx.Err())
		}
	}
	m := done.Manifest
	t.Logf("complete after %v: transactionTime %s, requiresAccessToken %v, %d output, %d error, %d deleted files, Expires %v",
		time.Since(start).Round(time.Second), m.TransactionTime.Format(time.RFC3339), m.RequiresAccessToken, len(m.Output), len(m.Error), len(m.Deleted), done.Expires)

	sink, err := NewNDJSONDirSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := slices.Concat(m.Output, m.Error, m.Deleted)
	seq := OutputSeq(files)
	var resources, bytes int64
	for i, f := range files {
		res, err := c.DownloadTo(ctx, f, m.RequiresAccessToken, sink, seq[i])
		if err != nil {
			t.Fatalf("download %s #%d: %v", f.Type, seq[i], err)
		}
		resources += res.Resources
		bytes += res.Bytes
		t.Logf("%s #%d: %d resources, %d bytes, sha256 %s", f.Type, seq[i], res.Resources, res.Bytes, res.SHA256[:16])
	}
	t.Logf("downloaded %d files: %d resources, %d bytes", len(files), resources, bytes)
	if len(m.Output) == 0 {
		t.Error("the export has no output files")
	}
}

// The test above works against a conforming server: ours, in real time.
func TestAgainstBulkDataServerHarness(t *testing.T) {
	if os.Getenv("P2P_BULK_SERVER_URL") != "" {
		t.Skip("running against the real server instead")
	}
	s := newBulkServer(t, &fakeClock{real: true})
	s.PollsBeforeDone = 1
	s.RetryAfter = func(int, time.Time) string { return "1" }
	s.Files = []fakeFile{
		{Type: "Patient", Count: count(2), Body: ndjson("Patient", 2)},
		{Type: "OperationOutcome", ErrorFile: true, Body: `{"resourceType":"OperationOutcome","issue":[]}` + "\n"},
	}
	t.Setenv("P2P_BULK_SERVER_URL", s.Base())
	t.Setenv("P2P_BULK_GROUP_ID", "g1")
	t.Setenv("P2P_BULK_TYPES", "Patient")
	TestAgainstBulkDataServer(t)
	if v := s.Violations(); len(v) > 0 {
		t.Errorf("polled early: %v", v)
	}
	if len(s.Requests("/files/")) != 2 || len(s.Requests("/fhir/bulkstatus/")) != 3 { // 2 polls and the DELETE
		t.Errorf("requests: %+v", s.Requests("/"))
	}
}

func fault429or5xx(err error) bool {
	s := HTTPStatus(err)
	return s == http.StatusTooManyRequests || s >= 500
}

func statusRetryAfter(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return ""
}

// loadPrivateKey reads a private JWK (as the SMART reference server's
// "Generate Keys" gives) or a PEM private key.
func loadPrivateKey(path string) (crypto.Signer, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		for _, parse := range []func([]byte) (any, error){
			x509.ParsePKCS8PrivateKey,
			func(d []byte) (any, error) { return x509.ParsePKCS1PrivateKey(d) },
			func(d []byte) (any, error) { return x509.ParseECPrivateKey(d) },
		} {
			if k, err := parse(blk.Bytes); err == nil {
				if s, ok := k.(crypto.Signer); ok {
					return s, "", nil
				}
			}
		}
		return nil, "", errors.New("PEM block is not an RSA or EC private key")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, "", fmt.Errorf("neither PEM nor JWK: %w", err)
	}
	s, ok := jwk.Key.(crypto.Signer)
	if !ok || jwk.IsPublic() {
		return nil, "", errors.New("the JWK is not a private RSA or EC key")
	}
	return s, jwk.KeyID, nil
}
