package payloadcodec

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/ratelimit"
)

// MaxBody is the largest request the codec server reads: Temporal's
// largest gRPC message (4 MB) base64-encoded, with room for the JSON.
const MaxBody = 6 << 20

// Server serves Temporal's codec-server protocol: POST {endpoint}/decode
// and {endpoint}/encode (also {endpoint}/{namespace}/decode, as the CLI's
// --codec-endpoint template writes it), each taking and answering
// {"payloads": [...]} in proto3 JSON (metadata values and data base64).
// Decoding shows what Temporal's history holds in plain text, so only an
// authenticated caller holding Scope is answered: 401 without valid
// credentials, 403 without the scope, as application/problem+json. A
// browser (Temporal's Web UI) is answered only from one of Origins
// (CORS, credentials allowed); a request without an Origin header (the
// CLI) needs none.
type Server struct {
	Codec   *Codec
	Auth    caller.Authenticator
	Scope   caller.Scope
	Origins []string // e.g. https://temporal-ui.example.com
	// Limiter admits requests per remote address before they are
	// authenticated (429 past it); nil: no limit.
	Limiter *ratelimit.Keyed
	Logger  *zap.Logger
}

// ServeHTTP serves one codec request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !slices.Contains(s.Origins, origin) {
			problem(w, http.StatusForbidden, "forbidden", "Forbidden", "this origin may not call the codec server: add it to P2P_CODEC_CORS_ORIGINS", "")
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	op := operation(r.URL.Path)
	if op == "" {
		problem(w, http.StatusNotFound, "not-found", "Not found", "the codec server answers POST …/encode and …/decode", "")
		return
	}
	if r.Method == http.MethodOptions && origin != "" {
		// A CORS preflight carries no credentials: it is answered
		// before authentication, and says what the POST may send.
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "the codec server answers POST only", "")
		return
	}
	if wait := s.Limiter.Allow(ratelimit.RemoteKey(r), time.Now()); wait > 0 {
		w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
		problem(w, http.StatusTooManyRequests, "rate-limited", "Too many requests", "too many codec requests from this address; retry after Retry-After seconds", "")
		return
	}
	p, err := s.Auth.Authenticate(r)
	switch {
	case errors.Is(err, caller.ErrNoCredentials):
		problem(w, http.StatusUnauthorized, "unauthenticated", "Unauthenticated",
			"the codec server needs a bearer access token or a client certificate", `Bearer realm="p2p"`)
		return
	case errors.Is(err, caller.ErrInvalidCredentials):
		log.Info("codec server: credentials refused", zap.Error(err))
		problem(w, http.StatusUnauthorized, "unauthenticated", "Unauthenticated",
			"the credentials are invalid, expired or of a disabled client", `Bearer realm="p2p", error="invalid_token"`)
		return
	case err != nil:
		log.Error("codec server: authentication failed", zap.Error(err))
		problem(w, http.StatusServiceUnavailable, "unavailable", "Service unavailable", "authentication is unavailable; try again", "")
		return
	}
	if !p.Has(s.Scope) {
		problem(w, http.StatusForbidden, "forbidden", "Forbidden", "the client's scopes do not allow this operation; it needs one of: "+string(s.Scope),
			`Bearer realm="p2p", error="insufficient_scope", scope="`+string(s.Scope)+`"`)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		problem(w, http.StatusRequestEntityTooLarge, "too-large", "Request too large", "the codec server reads at most 6 MiB", "")
		return
	case err != nil:
		problem(w, http.StatusBadRequest, "invalid-json", "Invalid JSON", "the body could not be read", "")
		return
	}
	var in commonpb.Payloads
	if err := protojson.Unmarshal(body, &in); err != nil {
		problem(w, http.StatusBadRequest, "invalid-json", "Invalid JSON", `the body is not {"payloads": [...]} in proto3 JSON (metadata values and data base64)`, "")
		return
	}
	var out []*commonpb.Payload
	if op == "decode" {
		out, err = s.Codec.Decode(in.Payloads)
	} else {
		out, err = s.Codec.Encode(in.Payloads)
	}
	if err != nil {
		// The codec's errors name a key id at most, never content.
		problem(w, http.StatusBadRequest, "validation", "Invalid payloads", err.Error(), "")
		return
	}
	// Who saw what Temporal holds in plain text; never the payloads.
	log.Info("codec server", zap.String("operation", op), zap.String("client_id", p.ClientID), zap.String("person", p.Person),
		zap.String("namespace", r.Header.Get("X-Namespace")), zap.Int("payloads", len(out)))
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: out})
	if err != nil {
		problem(w, http.StatusInternalServerError, "internal", "Internal error", "the answer could not be encoded", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b) // the client went away: nothing to tell it
}

// operation is "encode" or "decode" from the path's last segment, "" for
// any other path.
func operation(path string) string {
	i := strings.LastIndexByte(path, '/')
	switch op := path[i+1:]; op {
	case "encode", "decode":
		return op
	}
	return ""
}

// problem writes an RFC 9457 problem with one of the API's problem types
// (api.Problem*, after urn:p2p:problem:) and, for a 401 or 403, the
// Bearer challenge.
func problem(w http.ResponseWriter, status int, typ, title, detail, challenge string) {
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{ // the client went away: nothing to tell it
		"type": "urn:p2p:problem:" + typ, "title": title, "status": status, "detail": detail,
	})
}
