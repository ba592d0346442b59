package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-chi/chi/v5"
	nethttpmiddleware "github.com/oapi-codegen/nethttp-middleware"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Engine starts and steers transfer workflows (implemented in workflows/).
type Engine interface {
	// StartTransfer starts the workflow of a stored transfer. It is
	// idempotent: the same id gives the same single workflow.
	StartTransfer(ctx context.Context, transferID string) error
	// Review delivers a review decision. It returns transfer.ErrNotInReview
	// or (wrapped) transfer.ErrInvalidDecision for decisions that cannot
	// apply.
	Review(ctx context.Context, transferID string, d transfer.ReviewDecision) error
	// Ready reports whether the workflow service answers and serves our
	// namespace; an error with a PublicReason method says why in terms a
	// caller of /readyz may see.
	Ready(ctx context.Context) error
	// Acknowledge delivers a partner's verified acknowledgement (its
	// receipt id and the kid that signed it) to a transfer waiting in
	// sent. It returns transfer.ErrNotAwaitingAck if the transfer's
	// workflow has ended, unless it took this receipt already.
	Acknowledge(ctx context.Context, transferID, receiptID, signedBy string) error
	// Started reports whether a workflow was ever started for the
	// transfer (open or closed), so that an interrupted request is not
	// closed failed while its workflow runs.
	Started(ctx context.Context, transferID string) (bool, error)
}

// AckVerifier checks a partner's signed acknowledgement of a transfer's
// delivery and returns its receipt id and the partner key that signed it.
// Errors are faults: fault.Validation when the receipt does not prove the
// delivery, fault.Downstream when the partner's keys cannot be fetched.
type AckVerifier interface {
	VerifyAck(ctx context.Context, t transfer.Transfer, receiptJWS string) (receiptID, signedBy string, err error)
}

// KeySet publishes our public signing keys.
type KeySet interface {
	// PublicJWKS returns the JWK Set (RFC 7517) of our public keys.
	PublicJWKS() ([]byte, error)
}

// Partners tells whether a partner is registered.
type Partners interface {
	Has(id string) bool
}

// PartnersFunc adapts a function to Partners.
type PartnersFunc func(id string) bool

// Has reports f(id).
func (f PartnersFunc) Has(id string) bool { return f(id) }

// Store is what the API needs of the store: the roles it serves and
// records (match grants and failed matches are the FHIR API's), and Ping
// for readiness.
type Store interface {
	// Ping checks that the database answers.
	Ping(ctx context.Context) error

	store.Members
	store.Transfers
	store.Idempotency
	store.Timelines
	store.AuditLog
	store.Artifacts
	store.IdentityGraph
}

// Deps are the Server's dependencies.
type Deps struct {
	Store  Store  // required
	Engine Engine // required
	Keys   KeySet // required
	// Auth authenticates /v1 requests (all but the public routes:
	// health, JWKS and partners' signed acknowledgements); required.
	Auth caller.Authenticator
	// Partners, when set, makes POST /v1/transfers reject unknown partners
	// with 422 unknown-partner. When nil every partner id is accepted, and
	// a transfer to one no worker serves waits on a task queue nobody
	// polls until its timeout: p2p api always sets it (tests need not).
	Partners Partners
	// Pullers, when set, makes POST /v1/transfers reject an import whose
	// coverage_to_match.payer is not a partner we pull from (role pull)
	// with 422 unknown-partner. When nil every payer is accepted and the
	// workflow fails unknown ones with unknown_partner.
	Pullers Partners
	Logger  *zap.Logger      // nil: no logging
	Now     func() time.Time // nil: time.Now
	// Acks verifies partners' later acknowledgements (POST
	// /v1/transfers/{id}/ack); nil: they are refused.
	Acks AckVerifier
	// AuditSigner signs the audit log's checkpoints; nil: Keys, if it
	// signs (a *signing.Signer does).
	AuditSigner audit.Signer
	// AuditWitness, when set, gets a copy of every checkpoint the API
	// signs, and a directory witness is read back as an anchor
	// (audit.Checkpointer).
	AuditWitness audit.Witness
	// BaseURL prefixes the links of transfers (e.g. "https://p2p.example");
	// empty gives links relative to the host.
	BaseURL string
	// FHIR, when set, serves /fhir/* (the partner-facing FHIR API, package
	// pdex). It answers in FHIR terms, not in problem+json, and is not part
	// of openapi.yaml: the spec's request validator does not see it.
	FHIR http.Handler
	// FHIRMaxBody bounds the bodies of /fhir requests: the largest any
	// /fhir route takes (pdex.MaxBulkMemberMatchBody); 0: 1 MiB, as /v1.
	FHIRMaxBody int64
	// RateLimits limits /v1 requests per client and acknowledgements per
	// remote address; zero: no limit.
	RateLimits RateLimits
}

// Server implements the API v1 handlers over its Deps.
type Server struct {
	store    Store
	engine   Engine
	keys     KeySet
	auth     caller.Authenticator
	partners Partners
	pullers  Partners
	log      *zap.Logger
	now      func() time.Time
	baseURL  string
	fhir     http.Handler // nil: no /fhir routes
	fhirMax  int64        // Deps.FHIRMaxBody
	acks     AckVerifier  // nil: acknowledgements are refused
	handler  http.Handler
	limits   limiters

	// checkpoints signs the audit log's checkpoints; nil (no signer): the
	// checkpoint and proof endpoints fail.
	checkpoints *audit.Checkpointer

	tokenMu sync.Mutex
	token   []byte // the store's token key, once read (see KeyToken)
}

var _ StrictServerInterface = (*Server)(nil)

// NewServer checks d and builds the Server with its HTTP handler.
func NewServer(d Deps) (*Server, error) {
	switch {
	case d.Store == nil:
		return nil, errors.New("api: Deps.Store is required")
	case d.Engine == nil:
		return nil, errors.New("api: Deps.Engine is required")
	case d.Keys == nil:
		return nil, errors.New("api: Deps.Keys is required")
	case d.Auth == nil:
		return nil, errors.New("api: Deps.Auth is required")
	}
	s := &Server{
		store: d.Store, engine: d.Engine, keys: d.Keys, auth: d.Auth, partners: d.Partners, pullers: d.Pullers,
		log: d.Logger, now: d.Now, baseURL: strings.TrimRight(d.BaseURL, "/"), fhir: d.FHIR, acks: d.Acks,
	}
	s.limits = newLimiters(d.RateLimits)
	s.fhirMax = d.FHIRMaxBody
	if s.fhirMax <= 0 {
		s.fhirMax = maxBodyBytes
	}
	signer := d.AuditSigner
	if as, ok := d.Keys.(audit.Signer); ok && signer == nil {
		signer = as
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if signer != nil {
		s.checkpoints = &audit.Checkpointer{Store: d.Store, Signer: signer, Witness: d.AuditWitness, Log: s.log.Named("audit")}
		if _, ok := signer.(KeySet); !ok {
			s.checkpoints.JWKS = d.Keys.PublicJWKS // our published keys verify our checkpoints
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	h, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.handler = h
	return s, nil
}

// NewHandler returns the API's HTTP handler: a chi router that
// authenticates and authorises each operation (Roles), validates requests
// against the embedded spec, recovers panics, logs each request without
// PHI and answers every error with application/problem+json.
func NewHandler(d Deps) (http.Handler, error) {
	s, err := NewServer(d)
	if err != nil {
		return nil, err
	}
	return s.Handler(), nil
}

// Handler returns the Server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() (http.Handler, error) {
	spec, err := GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("api: load embedded spec: %w", err)
	}
	spec.Servers = nil // validate paths only, whatever host serves them
	ops, err := operations(spec)
	if err != nil {
		return nil, err
	}

	validate := nethttpmiddleware.OapiRequestValidatorWithOptions(spec, &nethttpmiddleware.Options{
		Options: openapi3filter.Options{
			// authorize has checked the spec's security before this runs.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true, // report every invalid field at once
			SchemaValidationOptions: []openapi3.SchemaValidationOption{
				// Real calendar dates and times, so that what passes
				// validation also decodes; the default regexps accept
				// 2024-02-31.
				openapi3.WithStringFormatValidator("date", openapi3.NewCallbackValidator(func(v string) error {
					_, err := time.Parse(time.DateOnly, v)
					return err
				})),
				openapi3.WithStringFormatValidator("date-time", openapi3.NewCallbackValidator(func(v string) error {
					_, err := time.Parse(time.RFC3339Nano, v)
					return err
				})),
				// Keep values out of error messages, should any be logged.
				openapi3.DisableSchemaErrorDetails(),
			},
		},
		SilenceServersWarning: true,
		ErrorHandlerWithOpts: func(_ context.Context, err error, w http.ResponseWriter, r *http.Request, _ nethttpmiddleware.ErrorHandlerOpts) {
			writeProblem(w, r, validationProblem(err))
		},
	})

	r := chi.NewRouter()
	// Authentication before the rate limit, which keys on the client.
	r.Use(withInfo, s.accessLog, s.recoverer, limitHeaders, s.limitBody, s.authorize(r, ops))
	r.Use(s.rateLimit)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound, "Not found", "no such route"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed,
			"Method not allowed", "the route does not support this method"))
	})

	if s.fhir != nil {
		// Mounted on the base router, so the per-operation spec validator
		// below never applies to it.
		r.Mount("/fhir", s.fhir)
	}

	strict := NewStrictHandlerWithOptions(s, nil, StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  requestError,
		ResponseErrorHandlerFunc: s.responseError,
	})
	// The validator runs per operation, after chi has routed, so that the
	// access log always knows the route pattern; cleanText (the last, so
	// the outermost) runs before it, before anything decodes the body.
	return HandlerWithOptions(strict, ChiServerOptions{
		BaseRouter:       r,
		Middlewares:      []MiddlewareFunc{validate, cleanText},
		ErrorHandlerFunc: paramError,
	}), nil
}
