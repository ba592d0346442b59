package app

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
)

// CodecPath is where the API serves the codec server (POST
// /codec/decode, /codec/encode) for Temporal's Web UI and CLI, on the
// API's own address: never on the partner-facing one.
const CodecPath = "/codec"

// PayloadCodec loads the payload keys that encrypt what p2p keeps in
// Temporal: PayloadKeyEnv's key set when set, else the keys directory's
// payload-keys.json (made by `p2p keys generate`). There is no
// unencrypted mode: without keys it fails, saying how to make them. The
// directory must lie outside dataDirs, as for the signing keys.
func (k Keys) PayloadCodec(getenv func(string) string, dataDirs []string) (*payloadcodec.Codec, error) {
	var ks *payloadcodec.KeySet
	var err error
	switch {
	case getenv(payloadcodec.KeyEnv) != "":
		if ks, err = payloadcodec.ParseKeySet([]byte(getenv(payloadcodec.KeyEnv))); err != nil {
			return nil, fmt.Errorf("%s: %w", payloadcodec.KeyEnv, err)
		}
	case k.Dir == "":
		return nil, fmt.Errorf("no payload key, and Temporal payloads are never sent unencrypted: set P2P_KEYS_DIR (create the keys with `p2p keys generate --keys-dir DIR`) or %s", payloadcodec.KeyEnv)
	default:
		if err := outside(k.Dir, dataDirs); err != nil {
			return nil, err
		}
		ks, err = payloadcodec.LoadKeySet(filepath.Join(k.Dir, payloadcodec.KeySetFile))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no payload key in %s, and Temporal payloads are never sent unencrypted: create it with `p2p keys generate --keys-dir %s` (it keeps the existing keys)", k.Dir, k.Dir)
		}
		if err != nil {
			return nil, fmt.Errorf("payload keys: %w", err)
		}
	}
	return payloadcodec.New(ks)
}

// DevPayloadCodec returns the payload codec of `p2p dev`, creating its
// key set in dataDir/keys on first use (dev only: production keeps keys
// outside the data).
func DevPayloadCodec(dataDir string, log *zap.Logger) (*payloadcodec.Codec, error) {
	dir := filepath.Join(dataDir, DevKeysDir)
	created, err := payloadcodec.CreateKeySet(dir)
	if err != nil {
		return nil, err
	}
	if created && log != nil {
		log.Info("payload key created", zap.String("keys_dir", dir))
	}
	return Keys{Dir: dir}.PayloadCodec(func(string) string { return "" }, nil)
}

// ParseOrigins reads a comma-separated list of web origins
// (scheme://host[:port], as a browser sends them in Origin), the
// P2P_CODEC_CORS_ORIGINS setting.
func ParseOrigins(s string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("P2P_CODEC_CORS_ORIGINS: %q is not an origin (scheme://host[:port], no path)", o)
		}
		out = append(out, o)
	}
	return out, nil
}

// codecServer is the API's codec server: d.Codec, for callers the /v1
// authenticator names and who hold payloads:read, admitted at the /v1
// per-client rate per remote address.
func codecServer(cfg Config, d Deps, v1 V1Auth, log *zap.Logger) (*payloadcodec.Server, error) {
	origins, err := ParseOrigins(cfg.CodecOrigins)
	if err != nil {
		return nil, err
	}
	return &payloadcodec.Server{
		Codec: d.Codec, Auth: v1.Authenticator, Scope: caller.PayloadsRead, Origins: origins,
		Limiter: cfg.Limits.client().New(), Logger: log.Named("codec"),
	}, nil
}
