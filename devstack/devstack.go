// Package devstack runs the whole of p2p in one process for `p2p dev` and
// for end-to-end tests: an embedded Temporal server on SQLite, the embedded
// store, the API, the worker and a sandbox partner, all on loopback, all
// persistent under one data directory.
package devstack

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/devserver"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// DemoMembers is the demo member index seeded by `p2p dev`, in the
// canonical CSV form; the README describes who is in it.
//
//go:embed demo/members.csv
var DemoMembers []byte

// SandboxPartnerID is the partner id of the sandbox partner.
const SandboxPartnerID = "sandbox"

// The dev stack's FHIR API (/fhir): partners are not authenticated yet, so
// the caller names itself in PartnerHeader — loopback only. The sandbox
// partner and we are the two payers of the HRex $member-match example, by
// the NPIs its consent names: the sandbox is the new payer (recipient), we
// are the old payer (source).
const (
	PartnerHeader = "X-P2P-Partner"
	SandboxNPI    = "0123456789" // HRex example "New Health Plan"
	OurNPI        = "9876543210" // HRex example "Old Health Plan"
)

// Options configure the stack.
type Options struct {
	DataDir     string // everything persistent lives here
	Addr        string // API listen address; "127.0.0.1:0" picks a port
	SandboxAddr string // sandbox partner listen address; default 127.0.0.1:0
	Seed        bool   // load the demo members (idempotent)
	Logger      *zap.Logger
	// SandboxAcksLater makes the sandbox partner answer deliveries 202
	// accepted and acknowledge them afterwards with a signed receipt
	// posted to POST /v1/transfers/{id}/ack.
	SandboxAcksLater bool
	// SandboxRateLimit and SandboxConcurrency are the sandbox partner's
	// registry limits (connectors.Partner RateLimit and Concurrency);
	// zero: the registry's defaults. Benchmarks raise them to measure the
	// stack rather than the limiter.
	SandboxRateLimit   float64
	SandboxConcurrency int
	// Partners are registered beside the sandbox partner.
	Partners []connectors.Partner
	// Worker configures the transfers' worker (zero: the SDK's defaults).
	Worker worker.Options
	// ExportFileTTL is how long the files of a bulk export served to a
	// partner stay downloadable; 0: workflows.DefaultFileTTL.
	ExportFileTTL time.Duration
	// Retention sets the maintenance schedules; zero fields take the
	// app defaults (checkpoint every 10m, PHI kept 30d, purge daily).
	Retention app.Retention
	// PublicURL is how partners reach the API when a gateway or proxy
	// stands in front of it (P2P_PUBLIC_URL): the base of the URLs /fhir
	// hands out (status, files) and the audience of SMART client
	// assertions. "": the API's own URL.
	PublicURL string
	// PayerNPI is our NPI, as consents and partners name us; "": OurNPI.
	// Two stacks that play old and new payer to each other need two.
	PayerNPI string
	// SourceFHIR and ImportFHIR are our own FHIR servers, as for p2p
	// worker (app.Config); zero: synthetic export data, NDJSON imports.
	SourceFHIR, ImportFHIR app.FHIRServer
	// StatusRetryAfter is the Retry-After of a bulk export in progress;
	// 0: one second (loopback clients poll again soon).
	StatusRetryAfter time.Duration
	// ShutdownTimeout bounds the HTTP servers' drain at Stop; 0:
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// TokenLifetime is how long the token endpoints' access tokens last
	// (not the ready-made ones: DevTokenLifetime); 0: the default.
	TokenLifetime time.Duration
	// Limits are the request rates the API admits; zero fields take the
	// app defaults, a negative rate turns a limit off.
	Limits app.Limits
	// AuditWitness gets a copy of every audit checkpoint (a directory or
	// URL, P2P_AUDIT_WITNESS); "": <DataDir>/audit-witness, which `p2p
	// audit verify` finds beside the store.
	AuditWitness string
	// AuditMaxAge: the worker re-signs an audit log that has not grown
	// after half of it; 0: app.DefaultAuditMaxAge.
	AuditMaxAge time.Duration
	// CodecOrigins are the web origins of Temporal Web UIs that may call
	// the codec server (P2P_CODEC_CORS_ORIGINS, comma separated).
	CodecOrigins string
	// ImportBucket, when set, is the bucket imports stage and deliver in
	// (P2P_IMPORT_BUCKET: s3://… or file:///…) instead of
	// <data dir>/imports.
	ImportBucket string
}

// AuditWitnessDir is the witness directory of audit checkpoints in the
// data directory, by default.
const AuditWitnessDir = "audit-witness"

// DefaultShutdownTimeout is how long Stop waits for in-flight requests.
const DefaultShutdownTimeout = 5 * time.Second

// Stack is a running dev stack.
type Stack struct {
	URL        string // the API's base URL
	SandboxURL string
	Store      store.Store
	Client     client.Client
	Sandbox    *sandbox.Partner
	Temporal   *devserver.Server
	// Codec encrypts what the stack hands Temporal (its payload key is
	// in the data directory's keys/).
	Codec *payloadcodec.Codec
	// ImportDir is where imports write the data they pull (P2P_IMPORT_DIR
	// of the stack): <data dir>/imports/<transfer id>/<type>.<n>.ndjson;
	// "" when Options.ImportBucket names a bucket instead.
	ImportDir string

	// Tokens are the ready-made /v1 access tokens of the dev clients, by
	// DevClient.Name ("admin", "submitter", ...); TokensPath is the file
	// that exports them (P2P_TOKEN_<NAME>).
	Tokens     map[string]string
	TokensPath string

	// API and Worker are the production API and worker (package app) the
	// stack runs.
	API    *app.API
	Worker *app.Worker

	logger  *zap.Logger
	cancel  context.CancelFunc
	done    []chan error
	timeout time.Duration
}

// Start brings the stack up and returns when it serves. /v1 takes the
// dev clients' tokens (Stack.Tokens, and the file at Stack.TokensPath). Every transfer in
// the data directory resumes where it stopped. The API and the worker are
// production's (app.NewAPI, app.NewWorker); the stack adds the embedded
// Temporal server, the SQLite store, the sandbox partner and demo data.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.SandboxAddr == "" {
		o.SandboxAddr = "127.0.0.1:0"
	}
	if o.PayerNPI == "" {
		o.PayerNPI = OurNPI
	}
	if o.StatusRetryAfter <= 0 {
		o.StatusRetryAfter = time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Stack{logger: o.Logger, ImportDir: filepath.Join(o.DataDir, "imports"), timeout: o.ShutdownTimeout}
	if o.ImportBucket != "" {
		s.ImportDir = ""
	}
	if err := s.start(ctx, o); err != nil {
		s.Stop() // what started, in reverse
		return nil, err
	}
	return s, nil
}

// start starts the parts of s in order; on error, those started are left
// for Stop.
func (s *Stack) start(ctx context.Context, o Options) (err error) {
	// Listen first: a port in use is the commonest start-up failure, and
	// says so before anything slow starts.
	apiLn, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("API address: %w (another p2p dev running? --addr picks another)", err)
	}
	served := false // until served, the listeners are ours to close
	defer func() {
		if !served {
			_ = apiLn.Close() // unused: the start-up error returned is the one that matters
		}
	}()
	s.URL = "http://" + apiLn.Addr().String()
	sbLn, err := net.Listen("tcp", o.SandboxAddr)
	if err != nil {
		return fmt.Errorf("sandbox partner address: %w", err)
	}
	defer func() {
		if !served {
			_ = sbLn.Close() // unused: the start-up error returned is the one that matters
		}
	}()
	s.SandboxURL = "http://" + sbLn.Addr().String()
	// Assigned only on success: a failed Open's typed nil would make the
	// Store interface non-nil, and Stop would close a nil store.
	st, err := sqlite.Open(ctx, filepath.Join(o.DataDir, "p2p.db"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.Store = st
	if s.Temporal, err = devserver.Start(ctx, devserver.Options{DataDir: filepath.Join(o.DataDir, "temporal"), Logger: o.Logger.Named("temporal-server")}); err != nil {
		return fmt.Errorf("temporal server: %w", err)
	}
	// A key set per purpose in the data directory (dev only: production
	// keeps keys outside the data).
	signers, err := app.DevSigners(o.DataDir, o.Logger)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	partners, err := s.startSandbox(o)
	if err != nil {
		return err
	}
	if o.Seed {
		if err := seed(ctx, s.Store); err != nil {
			return fmt.Errorf("seeding demo members: %w", err)
		}
	}
	// Payloads are encrypted in dev too: the same code path as
	// production, and the embedded server's file holds no identifiers.
	if s.Codec, err = app.DevPayloadCodec(o.DataDir, o.Logger); err != nil {
		return fmt.Errorf("payload key: %w", err)
	}
	// The embedded server listens on loopback only: plain gRPC.
	if s.Client, err = app.Dial(ctx, s.Temporal.Address(), s.Temporal.Namespace(), app.TemporalAuth{}, s.Codec, o.Logger); err != nil {
		return err
	}
	cfg := app.Config{
		Addr: apiLn.Addr().String(), PublicURL: o.PublicURL,
		TemporalNamespace: s.Temporal.Namespace(),
		// Loopback dev: the caller names itself in X-P2P-Partner.
		FHIRTrustHeader: PartnerHeader,
		PayerIdentifier: fhir.SystemNPI + "|" + o.PayerNPI,
		ImportDir:       s.ImportDir, ImportBucket: o.ImportBucket,
		SourceFHIR: o.SourceFHIR, ImportFHIR: o.ImportFHIR,
		StatusRetryAfter: o.StatusRetryAfter,
		ShutdownTimeout:  o.ShutdownTimeout,
		Retention:        o.Retention,
		TokenLifetime:    o.TokenLifetime,
		Limits:           o.Limits,
		AuditWitness:     o.AuditWitness,
		AuditMaxAge:      o.AuditMaxAge,
		CodecOrigins:     o.CodecOrigins,
	}
	if cfg.AuditWitness == "" {
		cfg.AuditWitness = filepath.Join(o.DataDir, AuditWitnessDir)
	}
	if cfg.AuditMaxAge <= 0 {
		cfg.AuditMaxAge = app.DefaultAuditMaxAge
	}
	deps := app.Deps{
		Store: s.Store, Temporal: s.Client, Partners: partners, Logger: o.Logger,
		ManifestSigner: signers.Manifest, AuditSigner: signers.Checkpoint, TokenSigner: signers.Token,
		Worker: o.Worker, ExportFileTTL: o.ExportFileTTL, PullTrustHeader: PartnerHeader, Codec: s.Codec,
	}
	if s.API, err = app.NewAPI(ctx, cfg, deps); err != nil {
		return err
	}
	// Auth is on, in dev too: a client per role and its token, ready.
	if s.Tokens, err = registerDevClients(ctx, s.Store, o.DataDir, s.API.V1Auth().Tokens); err != nil {
		return fmt.Errorf("dev clients: %w", err)
	}
	s.TokensPath = filepath.Join(o.DataDir, TokensFile)
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.serve(runCtx, apiLn, s.API.Serve)
	s.serve(runCtx, sbLn, func(ctx context.Context, ln net.Listener) error {
		return app.Serve(ctx, ln, s.Sandbox.Handler(), o.ShutdownTimeout)
	})
	served = true

	if s.Worker, err = app.NewWorker(ctx, cfg, deps); err != nil {
		return err
	}
	if err := s.Worker.Start(ctx); err != nil {
		s.Worker = nil // nothing to stop
		return fmt.Errorf("worker: %w", err)
	}
	// A crash between accepting a transfer and starting its workflow must
	// lose nothing: start any such workflow now.
	if _, err := s.API.ResumePending(ctx, 0); err != nil {
		return fmt.Errorf("resuming pending transfers: %w", err)
	}
	return nil
}

// startSandbox creates the sandbox partner (served once the stack serves)
// and returns the partner registry: the sandbox, then o.Partners.
func (s *Stack) startSandbox(o Options) (*connectors.Registry, error) {
	sbOpts := sandbox.Options{
		Dir: filepath.Join(o.DataDir, "sandbox"), JWKSURL: s.URL + "/.well-known/jwks.json",
		HTTPClient: connectors.NewHTTPClient(), Logger: o.Logger.Named("sandbox"),
	}
	if o.SandboxAcksLater {
		base := s.URL
		sbOpts.AckURL = func(id string) string { return base + "/v1/transfers/" + id + "/ack" }
	}
	var err error
	if s.Sandbox, err = sandbox.New(sbOpts); err != nil {
		return nil, err
	}
	return connectors.NewRegistry(append([]connectors.Partner{{
		ID: SandboxPartnerID, Name: "Sandbox partner payer", PushURL: s.SandboxURL + "/exports", Timeout: 10 * time.Second,
		AllowPrivateNetwork: true,                                    // it runs on loopback beside us
		JWKSURL:             s.SandboxURL + "/.well-known/jwks.json", // it signs its receipts
		Roles:               []connectors.Role{connectors.RolePush, connectors.RoleRequester},
		Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: SandboxNPI}},
		RateLimit:           o.SandboxRateLimit, Concurrency: o.SandboxConcurrency,
	}}, o.Partners...)...)
}

func (s *Stack) serve(ctx context.Context, ln net.Listener, serve func(context.Context, net.Listener) error) {
	done := make(chan error, 1)
	s.done = append(s.done, done)
	go func() { done <- serve(ctx, ln) }()
}

// Stop shuts the stack down: HTTP first, then the worker, then Temporal
// and the store. Safe to call on a partly started stack.
func (s *Stack) Stop() {
	if s == nil {
		return
	}
	if s.cancel != nil {
		s.cancel()
		for _, d := range s.done {
			if err := <-d; err != nil {
				s.logger.Warn("http server", zap.Error(err))
			}
		}
	}
	if s.Worker != nil {
		s.Worker.Stop()
	}
	if s.Sandbox != nil {
		if err := s.Sandbox.Close(); err != nil {
			s.logger.Warn("sandbox partner close", zap.Error(err))
		}
	}
	if s.Client != nil {
		s.Client.Close()
	}
	if s.Temporal != nil {
		if err := s.Temporal.Stop(); err != nil {
			s.logger.Warn("temporal server stop", zap.Error(err))
		}
	}
	if s.Store != nil {
		if err := s.Store.Close(); err != nil {
			s.logger.Warn("store close", zap.Error(err))
		}
	}
}

func seed(ctx context.Context, st store.Members) error {
	rd, err := member.NewReader(bytes.NewReader(DemoMembers), false)
	if err != nil {
		return err
	}
	var ms []member.Record
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		ms = append(ms, row.Record)
	}
	return st.UpsertMembers(ctx, ms)
}
