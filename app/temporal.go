package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
)

// TemporalAuth is how the API and the worker authenticate to the Temporal
// frontend. Whoever reaches the frontend can signal, update or terminate
// any transfer's workflow, bypassing the API's authentication and
// authorisation; in production the frontend takes only clients with a
// certificate it trusts (mTLS) or an API key (Temporal Cloud), and is on
// no network a caller of the API can reach. Zero: plain gRPC (p2p dev's
// embedded server on loopback).
type TemporalAuth struct {
	CertFile   string // P2P_TEMPORAL_TLS_CERT_FILE: our client certificate chain, PEM (mTLS)
	KeyFile    string // P2P_TEMPORAL_TLS_KEY_FILE: its private key, PEM
	CAFile     string // P2P_TEMPORAL_TLS_CA_FILE: CAs of the frontend's certificate, PEM; empty: the system's
	ServerName string // P2P_TEMPORAL_TLS_SERVER_NAME: the name the frontend's certificate must carry; empty: the address's host
	// APIKeyFile (P2P_TEMPORAL_API_KEY_FILE) holds an API key, read again
	// whenever the file changes.
	APIKeyFile string
	// APIKey (P2P_TEMPORAL_API_KEY, environment only: never a flag, which
	// the process list would show) is an API key.
	APIKey string
}

// TemporalAPIKeyEnv is the environment variable of TemporalAuth.APIKey.
const TemporalAPIKeyEnv = "P2P_TEMPORAL_API_KEY"

// Enabled reports whether the connection uses TLS: any setting asks for it
// (an API key is never sent in the clear).
func (a TemporalAuth) Enabled() bool {
	return a.CertFile != "" || a.KeyFile != "" || a.CAFile != "" || a.ServerName != "" || a.APIKeyFile != "" || a.APIKey != ""
}

// TLSConfig loads the files of a and returns the connection's TLS
// configuration (TLS 1.2 or later), nil when a is zero. The client
// certificate is read again when its files change, so a renewed one
// needs no restart. Errors name the setting at fault.
func (a TemporalAuth) TLSConfig() (*tls.Config, error) {
	if !a.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: a.ServerName}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("temporal: P2P_TEMPORAL_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("temporal: P2P_TEMPORAL_TLS_CA_FILE %s holds no PEM certificate", a.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case a.CertFile == "" && a.KeyFile == "":
	case a.CertFile == "" || a.KeyFile == "":
		return nil, errors.New("temporal: P2P_TEMPORAL_TLS_CERT_FILE and P2P_TEMPORAL_TLS_KEY_FILE go together: give both for mTLS")
	default:
		c := &clientCert{certFile: a.CertFile, keyFile: a.KeyFile}
		if _, err := c.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.get() }
	}
	return cfg, nil
}

// credentials returns the API key credentials of a; nil without a key.
func (a TemporalAuth) credentials() (client.Credentials, error) {
	switch {
	case a.APIKey != "" && a.APIKeyFile != "":
		return nil, fmt.Errorf("temporal: give %s or P2P_TEMPORAL_API_KEY_FILE, not both", TemporalAPIKeyEnv)
	case a.APIKey != "":
		return client.NewAPIKeyStaticCredentials(a.APIKey), nil
	case a.APIKeyFile != "":
		tok, err := bulkdata.NewFileToken(a.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("temporal: P2P_TEMPORAL_API_KEY_FILE: %w", err)
		}
		return client.NewAPIKeyDynamicCredentials(tok.Token), nil
	}
	return nil, nil
}

// clientCert is a client certificate read from its files, and again when
// either changes; a change that does not load keeps the last good one.
type clientCert struct {
	certFile, keyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	mods [2]time.Time
}

func (c *clientCert) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var mods [2]time.Time
	for i, p := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			if c.cert != nil {
				return c.cert, nil
			}
			return nil, fmt.Errorf("temporal: client certificate: %w", err)
		}
		mods[i] = fi.ModTime()
	}
	if c.cert != nil && mods == c.mods {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil
		}
		return nil, fmt.Errorf("temporal: client certificate %s / key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.mods = &cert, mods
	return c.cert, nil
}

// Dial connects to the Temporal frontend at address, authenticated as
// auth says, every payload and failure message encrypted by codec: it is
// the one place p2p dials Temporal, so that no client or worker can run
// without the codec (a worker without it could not read what the others
// wrote). A bad or missing file fails here, before any network call.
func Dial(ctx context.Context, address, namespace string, auth TemporalAuth, codec *payloadcodec.Codec, logger *zap.Logger) (client.Client, error) {
	if codec == nil {
		return nil, errors.New("temporal: no payload codec: payloads are never sent to Temporal unencrypted")
	}
	tlsConfig, err := auth.TLSConfig()
	if err != nil {
		return nil, err
	}
	creds, err := auth.credentials()
	if err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:          address,
		Namespace:         namespace,
		Logger:            TemporalLogger(logger.Named("temporal")),
		ConnectionOptions: client.ConnectionOptions{TLS: tlsConfig},
		Credentials:       creds,
		DataConverter:     codec.DataConverter(),
		FailureConverter:  codec.FailureConverter(),
	})
	if err != nil {
		return nil, fmt.Errorf("temporal at %s: %w", address, err)
	}
	return c, nil
}
