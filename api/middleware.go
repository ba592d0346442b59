package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// maxBodyBytes bounds request bodies but /fhir's; a transfer request is a
// few KiB.
const maxBodyBytes = 1 << 20

// requestInfo is what the middleware and the handlers of one request share:
// the ids the access log and problem details carry.
type requestInfo struct {
	requestID  string
	clientID   string // set by authorize once authenticated
	transferID string // set by the handler once known
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// noteTransfer records the transfer a request is about, for its log line.
// A path's id is the caller's text until it is found, so only an id shaped
// like ours (a UUID, noted in canonical form) is kept: anything else may be
// PHI typed into the URL.
func noteTransfer(ctx context.Context, id string) {
	u, err := uuid.Parse(id)
	if err != nil {
		return
	}
	if info := infoFrom(ctx); info != nil {
		info.transferID = u.String()
	}
}

// withInfo gives each request its id.
func withInfo(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &requestInfo{requestID: newRequestID()}
		w.Header().Set("X-Request-Id", info.requestID)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
	})
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// accessLog writes one line per request. It logs the route pattern, never
// the path or the query: paths carry member ids and bodies carry PHI.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)

		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		fields := []zap.Field{
			zap.String("method", r.Method),
			zap.String("route", route),
			zap.Int("status", status),
			zap.Duration("duration", time.Since(start)),
			zap.Int("bytes", ww.BytesWritten()),
		}
		if info := infoFrom(r.Context()); info != nil {
			fields = append(fields, zap.String("request_id", info.requestID))
			if info.clientID != "" {
				fields = append(fields, zap.String("client_id", info.clientID))
			}
			if info.transferID != "" {
				fields = append(fields, zap.String("transfer_id", info.transferID))
			}
		}
		s.log.Info("http request", fields...)
	})
}

// recoverer turns a panic into a 500 problem. It logs the panic's type and
// stack but not its value, which may hold request data.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // the server's way to abort a response; let it
			}
			s.logFor(r.Context()).Error("panic serving request",
				zap.String("panic_type", fmt.Sprintf("%T", v)), zap.ByteString("stack", debug.Stack()))
			writeProblem(w, r, errInternal)
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody bounds what a request body may cost us: maxBodyBytes on
// every route but /fhir's, which take up to Deps.FHIRMaxBody (the FHIR
// handler bounds each of its routes below that, and answers in FHIR terms).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			limit := int64(maxBodyBytes)
			if s.fhir != nil && (r.URL.Path == "/fhir" || strings.HasPrefix(r.URL.Path, "/fhir/")) {
				limit = s.fhirMax
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// logFor returns the logger with the request's ids.
func (s *Server) logFor(ctx context.Context) *zap.Logger {
	info := infoFrom(ctx)
	if info == nil {
		return s.log
	}
	l := s.log.With(zap.String("request_id", info.requestID))
	if info.transferID != "" {
		l = l.With(zap.String("transfer_id", info.transferID))
	}
	return l
}
