package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// readyTimeout bounds each dependency check of /readyz.
const readyTimeout = 2 * time.Second

// jwksResponse writes the key set as KeySet encoded it.
type jwksResponse []byte

// VisitGetJWKSResponse writes the JWK Set.
func (j jwksResponse) VisitGetJWKSResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(j)
	return err
}

// GetJWKS answers our public signing keys.
func (s *Server) GetJWKS(ctx context.Context, _ GetJWKSRequestObject) (GetJWKSResponseObject, error) {
	b, err := s.keys.PublicJWKS()
	if err != nil {
		return nil, fmt.Errorf("public jwks: %w", err)
	}
	return jwksResponse(b), nil
}

// Healthz answers 200 while the process serves HTTP.
func (s *Server) Healthz(context.Context, HealthzRequestObject) (HealthzResponseObject, error) {
	return Healthz200JSONResponse{Status: "ok"}, nil
}

// publicReason is an error whose reason may be shown to any caller, as
// the workflow engine's readiness errors are (workflows.NotReadyError).
type publicReason interface{ PublicReason() string }

// Readyz answers 200 when the store and the workflow engine answer, and
// 503 with the reason when either does not (the engine's namespace
// missing is one).
func (s *Server) Readyz(ctx context.Context, _ ReadyzRequestObject) (ReadyzResponseObject, error) {
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"store", s.store.Ping},
		{"workflow engine", s.engine.Ready},
	}
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			s.logFor(ctx).Warn("not ready", zap.String("dependency", c.name), zap.Error(err))
			reason := "the " + c.name + " is unavailable"
			var r publicReason
			if errors.As(err, &r) {
				reason = r.PublicReason()
			}
			return nil, unavailable(reason)
		}
	}
	return Readyz200JSONResponse{Status: "ok"}, nil
}
