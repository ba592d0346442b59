package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/p2p-payer/p2p/api"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
)

// Serve serves h on ln until ctx is done, then drains in-flight requests
// for up to timeout.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		// Generous, so that the API's own, smaller limit answers 431 in
		// its terms (api.MaxHeaderBytes), not net/http in plain text.
		MaxHeaderBytes: api.ServerMaxHeaderBytes,
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
