package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/connectors/pdexclient"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
)

// Dial connects to the Temporal frontend at address.
func Dial(ctx context.Context, address, namespace string, logger *zap.Logger) (client.Client, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  address,
		Namespace: namespace,
		Logger:    TemporalLogger(logger.Named("temporal")),
	})
	if err != nil {
		return nil, fmt.Errorf("temporal at %s: %w", address, err)
	}
	return c, nil
}

// Serve serves h on ln until ctx is done, then drains in-flight requests
// for up to timeout.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ActivityDeps are what the worker's activities need beyond the store.
type ActivityDeps struct {
	Store    store.Store
	Partners activities.Partners // a *connectors.Registry or *connectors.Live
	Signer   *signing.Signer
	Source   export.Source // nil: SourceFHIR, or the synthetic source
	// SourceFHIR, when its URL is set, is the FHIR server exports read
	// member data from (connectors/fhirrest.Source).
	SourceFHIR FHIRServer
	// ImportFHIR, when its URL is set, is the FHIR server imports write
	// to after the NDJSON directory (connectors/fhirrest.Sink).
	ImportFHIR FHIRServer
	Logger     *zap.Logger
	// PHIRetention is how long PurgePHI keeps ended transfers' export
	// payloads; 0: activities.DefaultPHIRetention.
	PHIRetention time.Duration
	// Transmitter is us as the Provenance of served exports names us
	// (our payer identifier); zero: export.DefaultPayerName by display.
	Transmitter fhir.Reference
	// ImportDir is the NDJSON sink of imports (P2P_IMPORT_DIR).
	ImportDir string
	// Payer is us as the consents and coverages of our imports name us.
	Payer activities.Payer
	// TrustHeader is sent, with the partner's auth.client_id, to pull
	// partners with auth none (loopback dev stacks).
	TrustHeader string
	// Throttle counts the failed matches of $bulk-member-match members per
	// partner: the one of the FHIR handler when it runs in this process
	// (FHIRDeps.Throttle); nil: one counting them in Store, which the FHIR
	// handler of any process reads too.
	Throttle *pdex.Throttle
}

var _ activities.PullClients = (*pdexclient.Dialer)(nil)

// NewActivities assembles the activities with their dependencies and loads
// the identity index, so that the first transfer does not wait for it.
func NewActivities(ctx context.Context, d ActivityDeps) (*activities.Activities, error) {
	src := d.Source
	if src == nil && d.SourceFHIR.URL != "" {
		sys := d.SourceFHIR.MemberIDSystem
		if sys == "" {
			sys = d.Payer.MemberIDSystem
		}
		cfg, err := d.SourceFHIR.config()
		if err != nil {
			return nil, fmt.Errorf("source FHIR server: %w", err)
		}
		if src, err = fhirrest.NewSource(fhirrest.SourceConfig{Config: cfg, MemberIDSystem: sys}); err != nil {
			return nil, fmt.Errorf("source FHIR server: %w", err)
		}
	}
	if src == nil {
		src = export.SyntheticSource{}
	}
	var sink activities.ImportLoader
	if d.ImportFHIR.URL != "" {
		cfg, err := d.ImportFHIR.config()
		if err != nil {
			return nil, fmt.Errorf("import FHIR server: %w", err)
		}
		if sink, err = fhirrest.NewSink(fhirrest.SinkConfig{Config: cfg}); err != nil {
			return nil, fmt.Errorf("import FHIR server: %w", err)
		}
	}
	matcher, err := newMatcher(d.Store, d.Logger)
	if err != nil {
		return nil, err
	}
	if err := matcher.Warm(ctx); err != nil {
		return nil, fmt.Errorf("loading the identity index: %w", err)
	}
	throttle := d.Throttle
	if throttle == nil {
		throttle = pdex.NewSharedThrottle(0, 0, 0, 0, d.Store)
	}
	return &activities.Activities{
		Store:    d.Store,
		Matcher:  matcher,
		Partners: d.Partners,
		Pusher:   connectors.NewHTTPPusher(connectors.NewHTTPClient()),
		Signer:   d.Signer,
		Source:   src,
		Logger:   d.Logger,

		PHIRetention: d.PHIRetention,
		Transmitter:  d.Transmitter,
		Pull:         &pdexclient.Dialer{TrustHeader: d.TrustHeader},
		Payer:        d.Payer,
		ImportDir:    d.ImportDir,
		ImportFHIR:   sink,
		// $bulk-member-match members are decided as $member-match decides
		// (pdex.Matching), with the same matcher; MatchBulkMember records a
		// match's grant with its outcome.
		BulkMatch: &pdex.Matching{
			Matcher: matcher, Parties: func(id string) (pdex.Party, bool) { return PartyOf(d.Partners, id) },
			Holder:   pdex.Party{Identifiers: d.Payer.Identifiers},
			Throttle: throttle,
		},
	}, nil
}

// config is the server's client configuration; its token file, if any,
// is read now (a missing or empty one is an error) and again whenever it
// changes, so a renewed token needs no restart.
func (s FHIRServer) config() (fhirrest.Config, error) {
	cfg := fhirrest.Config{BaseURL: s.URL}
	if s.TokenFile != "" {
		tok, err := bulkdata.NewFileToken(s.TokenFile)
		if err != nil {
			return cfg, err
		}
		cfg.Token = tok
	}
	return cfg, nil
}
