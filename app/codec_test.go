package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// testCodec is a payload codec with a fresh key.
func testCodec(t *testing.T) *payloadcodec.Codec {
	t.Helper()
	ks, err := payloadcodec.NewKeySet()
	if err != nil {
		t.Fatal(err)
	}
	c, err := payloadcodec.New(ks)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDialNeedsCodec: no codec, no client, before any network call.
func TestDialNeedsCodec(t *testing.T) {
	_, err := Dial(context.Background(), "127.0.0.1:1", "default", TemporalAuth{}, nil, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "never sent to Temporal unencrypted") {
		t.Fatalf("Dial without a codec: %v", err)
	}
}

// TestPayloadCodecKeys: where the payload keys come from, and the errors
// that say how to make them. There is no unencrypted fallback.
func TestPayloadCodecKeys(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if _, err := payloadcodec.CreateKeySet(keys); err != nil {
		t.Fatal(err)
	}
	ks, err := payloadcodec.LoadKeySet(filepath.Join(keys, payloadcodec.KeySetFile))
	if err != nil {
		t.Fatal(err)
	}
	envSet, err := payloadcodec.NewKeySet()
	if err != nil {
		t.Fatal(err)
	}
	envJSON, err := envSet.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	open := filepath.Join(t.TempDir(), "keys")
	if _, err := payloadcodec.CreateKeySet(open); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(open, payloadcodec.KeySetFile), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == payloadcodec.KeyEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name     string
		keys     Keys
		getenv   func(string) string
		dataDirs []string
		wantKID  string
		wantErr  string
	}{
		{"the keys directory", Keys{Dir: keys}, env(""), nil, ks.Active.ID, ""},
		{"the environment wins", Keys{Dir: keys}, env(string(envJSON)), nil, envSet.Active.ID, ""},
		{"nothing", Keys{}, env(""), nil, "", "set P2P_KEYS_DIR"},
		{"a directory without the payload key", Keys{Dir: empty}, env(""), nil, "", "p2p keys generate --keys-dir " + empty},
		{"a key file others may read", Keys{Dir: open}, env(""), nil, "", "chmod 600"},
		{"keys inside the data", Keys{Dir: keys}, env(""), []string{dir}, "", "lies in the data directory"},
		{"a malformed environment key", Keys{}, env("not json"), nil, "", payloadcodec.KeyEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.keys.PayloadCodec(tt.getenv, tt.dataDirs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ActiveKeyID() != tt.wantKID {
				t.Errorf("active key %s, want %s", c.ActiveKeyID(), tt.wantKID)
			}
		})
	}
}

// TestDevPayloadCodec: p2p dev makes its payload key once and keeps it.
func TestDevPayloadCodec(t *testing.T) {
	dir := t.TempDir()
	a, err := DevPayloadCodec(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DevPayloadCodec(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.ActiveKeyID() != b.ActiveKeyID() {
		t.Errorf("a second start made another key: %s, then %s", a.ActiveKeyID(), b.ActiveKeyID())
	}
	fi, err := os.Stat(filepath.Join(dir, DevKeysDir, payloadcodec.KeySetFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestCodecRoute: the API serves the codec server at /codec to callers
// with payloads:read, and not on the partner-facing address; a bad
// origin setting stops the start.
func TestCodecRoute(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	temporal, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(temporal.Close)
	signer, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{Store: st, Temporal: temporal, Signer: signer, Codec: testCodec(t)}
	if _, err := NewAPI(ctx, Config{Addr: "127.0.0.1:0", CodecOrigins: "https://ui.example/path"}, d); err == nil || !strings.Contains(err.Error(), "P2P_CODEC_CORS_ORIGINS") {
		t.Fatalf("a bad origin: %v", err)
	}
	a, err := NewAPI(ctx, Config{Addr: "127.0.0.1:0", FHIRAddr: "127.0.0.1:0", CodecOrigins: "https://ui.example"}, d)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"payloads":[]}`
	for _, tt := range []struct {
		name    string
		handler http.Handler
		want    int
	}{
		{"the API's address, no credentials", a.Handler(), http.StatusUnauthorized},
		{"the partner-facing address", a.PartnerHandler(), http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		tt.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/codec/decode", strings.NewReader(body)))
		if rec.Code != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.want)
		}
	}
	// A Web UI's preflight from the configured origin.
	req := httptest.NewRequest(http.MethodOptions, "/codec/decode", nil)
	req.Header.Set("Origin", "https://ui.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://ui.example" {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
}
