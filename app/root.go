package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/api"
	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/workflows"
)

// Partners is the partner registry the API and the worker read: a
// *connectors.Registry or, reloaded on SIGHUP, a *connectors.Live.
type Partners interface {
	PartnerList
	CanPush(id string) bool
	CanPull(id string) bool
}

// Deps are what the caller of NewAPI and NewWorker opened and injects
// beside the Config: production opens them from the Config (cmd/p2p), the
// dev stack from its data directory, with what only dev has.
type Deps struct {
	Store    store.Store   // required
	Temporal client.Client // required
	// ManifestSigner signs export manifests (the worker), AuditSigner
	// audit checkpoints (both), TokenSigner our access tokens (the API);
	// the API publishes all three in its JWKS. Each nil falls back to
	// Signer, typed for the purpose: one key for everything, which only
	// tests should use.
	ManifestSigner *signing.Signer
	AuditSigner    *signing.Signer
	TokenSigner    *signing.Signer
	Signer         *signing.Signer
	// Partners is the registry; the worker requires one, and so does p2p
	// api. Without one the API serves no /fhir, refuses acknowledgements
	// and accepts every partner id, whose transfer then waits on a task
	// queue no worker polls (only tests build such an API).
	Partners Partners
	Logger   *zap.Logger // nil: no logging
	// Worker configures the transfers' worker (zero: the SDK's defaults).
	Worker worker.Options
	// ExportFileTTL is how long the files of a bulk export served to a
	// partner stay downloadable; 0: workflows.DefaultFileTTL.
	ExportFileTTL time.Duration
	// PullTrustHeader is sent, with the partner's auth.client_id, to pull
	// partners with auth none: other dev stacks on loopback.
	PullTrustHeader string
	// Resolver resolves partners' host names for the egress checks; nil:
	// the system's. Tests map names to addresses to refuse.
	Resolver egress.Resolver
	// Codec is the payload codec Temporal was dialled with (Dial); the
	// API serves it at CodecPath. Nil: no codec server.
	Codec *payloadcodec.Codec
}

func (d Deps) check(what string) error {
	switch {
	case d.Store == nil:
		return fmt.Errorf("app: the %s needs the store", what)
	case d.Temporal == nil:
		return fmt.Errorf("app: the %s needs the Temporal client", what)
	}
	return nil
}

// signer is the signer of purpose p: its own, else Signer typed for p.
func (d Deps) signer(what string, p signing.Purpose) (*signing.Signer, error) {
	own := map[signing.Purpose]*signing.Signer{signing.Manifest: d.ManifestSigner, signing.Checkpoint: d.AuditSigner, signing.Token: d.TokenSigner}[p]
	switch {
	case own != nil:
		return own, nil
	case d.Signer == nil:
		return nil, fmt.Errorf("app: the %s needs the %s signing key", what, p)
	}
	return d.Signer.WithPurpose(p)
}

// signers is the signer of each purpose (see signer).
func (d Deps) signers(what string) (Signers, error) {
	var out Signers
	for _, p := range signing.Purposes {
		s, err := d.signer(what, p)
		if err != nil {
			return out, err
		}
		out.set(p, s)
	}
	return out, nil
}

func (d Deps) logger() *zap.Logger {
	if d.Logger == nil {
		return zap.NewNop()
	}
	return d.Logger
}

// us is our payer identifier (cfg.PayerIdentifier); zero when unset.
func (c Config) us() (fhir.Identifier, []fhir.Identifier, error) {
	if c.PayerIdentifier == "" {
		return fhir.Identifier{}, nil, nil
	}
	id, err := ParseIdentifier(c.PayerIdentifier)
	if err != nil {
		return id, nil, err
	}
	return id, []fhir.Identifier{id}, nil
}

// publicURL is how partners reach the API: PublicURL, or the listen
// address.
func (c Config) publicURL() string {
	switch {
	case c.PublicURL != "":
		return strings.TrimRight(c.PublicURL, "/")
	case c.TLS.Enabled():
		return "https://" + c.Addr
	}
	return "http://" + c.Addr
}

// API is the API server of one process: the REST API with its token
// endpoint, and /fhir for partners when there is a partner registry, on
// one address or, with cfg.FHIRAddr, /fhir on a partner-facing one.
type API struct {
	matcher *activities.IndexMatcher // /fhir's; nil: no /fhir
	follow  sync.Once
	server  *api.Server
	v1      V1Auth
	handler http.Handler // the API's address
	partner http.Handler // the partner-facing address; nil: none
	tls     *tls.Config
	timeout time.Duration
	log     *zap.Logger
}

// NewAPI builds the API server from cfg and d: the /v1 REST API and, with
// a partner registry, the partner-facing /fhir (member-match, bulk export,
// bulk member-match, SMART Backend Services), its failed matches counted
// in the store so that every process shares the count.
func NewAPI(ctx context.Context, cfg Config, d Deps) (*API, error) {
	if err := d.check("API"); err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.TLS.Config()
	if err != nil {
		return nil, err
	}
	signers, err := d.signers("API")
	if err != nil {
		return nil, err
	}
	log := d.logger()
	var matcher *activities.IndexMatcher
	if cfg.ClientsFile != "" {
		n, err := ApplyClientsFile(ctx, d.Store, cfg.ClientsFile)
		if err != nil {
			return nil, err
		}
		log.Info("api clients registered from file", zap.String("file", cfg.ClientsFile), zap.Int("clients", n))
	}
	v1 := NewV1Auth(cfg.publicURL(), signers.Token, d.Store, cfg.TokenLifetime, cfg.TLS.ClientCAFile != "", log.Named("auth"))
	deps := api.Deps{
		Store: d.Store, Engine: &workflows.Engine{Client: d.Temporal, Store: d.Store, TaskQueue: cfg.TaskQueue, Namespace: cfg.TemporalNamespace},
		Keys:        signing.PublicKeySet{signers.Manifest, signers.Checkpoint, signers.Token},
		AuditSigner: signers.Checkpoint, Auth: v1.Authenticator, Logger: log.Named("api"), BaseURL: cfg.PublicURL,
		RateLimits:   api.RateLimits{Client: cfg.Limits.client(), Ack: cfg.Limits.public()},
		AuditWitness: audit.NewWitness(cfg.AuditWitness),
	}
	if d.Partners != nil {
		deps.Partners = api.PartnersFunc(d.Partners.CanPush)
		deps.Pullers = api.PartnersFunc(d.Partners.CanPull)
		deps.Acks = &AckVerifier{Partners: d.Partners, Keys: PartnerKeys(d.Partners)}
		if deps.FHIR, matcher, err = newFHIRHandler(ctx, cfg, d, signers.Token); err != nil {
			return nil, err
		}
		deps.FHIRMaxBody = pdex.MaxBulkMemberMatchBody // the largest /fhir body
	}
	srv, err := api.NewServer(deps)
	if err != nil {
		return nil, err
	}
	a := &API{server: srv, matcher: matcher, v1: v1, tls: tlsConfig, timeout: cfg.ShutdownTimeout, log: log}
	rest := srv.Handler()
	if cfg.FHIRAddr != "" {
		a.partner = partnerFacing(rest)
		rest = withoutFHIR(rest)
	}
	root := chi.NewRouter()
	// Its own bucket per address, apart from /fhir's token endpoint.
	root.Method(http.MethodPost, V1TokenPath, LimitTokenRequests(cfg.Limits.public().New(), v1.Tokens.TokenHandler()))
	if d.Codec != nil {
		cs, err := codecServer(cfg, d, v1, log)
		if err != nil {
			return nil, err
		}
		root.Handle(CodecPath+"/*", cs)
	}
	root.Mount("/", rest)
	a.handler = root
	return a, nil
}

// Handler serves the API on its own address: /v1, its token endpoint
// and, unless it has a partner-facing address, /fhir.
func (a *API) Handler() http.Handler { return a.handler }

// PartnerHandler serves the partner-facing address (cfg.FHIRAddr); nil
// when there is none.
func (a *API) PartnerHandler() http.Handler { return a.partner }

// V1Auth is the /v1 authorization server and Authenticator.
func (a *API) V1Auth() V1Auth { return a.v1 }

// ResumePending starts the workflows of transfers accepted more than
// olderThan ago whose workflow never started (a crash in between).
func (a *API) ResumePending(ctx context.Context, olderThan time.Duration) (int, error) {
	return a.server.ResumePending(ctx, olderThan)
}

// Serve serves the API on ln, with TLS when configured, until ctx is done,
// then drains in-flight requests for the shutdown timeout.
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	return a.serve(ctx, ln, a.Handler(), "api listening")
}

// ServePartners serves the partner-facing address on ln as Serve does.
func (a *API) ServePartners(ctx context.Context, ln net.Listener) error {
	if a.partner == nil {
		return errors.New("app: no partner-facing address is configured (--fhir-addr)")
	}
	return a.serve(ctx, ln, a.partner, "partner-facing api listening")
}

func (a *API) serve(ctx context.Context, ln net.Listener, h http.Handler, msg string) error {
	if a.matcher != nil {
		a.follow.Do(func() { go a.matcher.Follow(ctx, FollowInterval) })
	}
	if a.tls != nil {
		ln = tls.NewListener(ln, a.tls)
	}
	a.log.Info(msg, zap.String("addr", ln.Addr().String()), zap.Bool("tls", a.tls != nil),
		zap.Bool("client_certs", a.tls != nil && a.tls.ClientAuth != tls.NoClientCert))
	timeout := a.timeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	return Serve(ctx, ln, h, timeout)
}

// partnerFacing serves, of the API, what partners call: /fhir, our JWKS,
// their signed acknowledgements and the health checks; 404 for the rest.
func partnerFacing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		ack := strings.HasPrefix(p, "/v1/transfers/") && strings.HasSuffix(p, "/ack") && strings.Count(p, "/") == 4
		if p == "/fhir" || strings.HasPrefix(p, "/fhir/") || p == "/.well-known/jwks.json" || p == "/healthz" || p == "/readyz" || ack {
			h.ServeHTTP(w, r)
			return
		}
		notHere(w)
	})
}

// withoutFHIR serves h but /fhir, which has an address of its own.
func withoutFHIR(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir" || strings.HasPrefix(r.URL.Path, "/fhir/") {
			notHere(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func notHere(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"type":"urn:p2p:problem:not-found","title":"Not found","status":404,"detail":"not served on this address"}` + "\n"))
}

// Routes lists the routes served ("METHOD /pattern"), sorted; a handler
// mounted without a router of its own is listed as "* /pattern".
func (a *API) Routes() []string {
	var out []string
	walk(a.Handler(), "", &out)
	sort.Strings(out)
	return out
}

func walk(h any, prefix string, out *[]string) {
	r, ok := h.(chi.Routes)
	if !ok {
		*out = append(*out, "* "+prefix)
		return
	}
	for _, rt := range r.Routes() {
		pattern := prefix + strings.TrimSuffix(rt.Pattern, "/*")
		if rt.SubRoutes != nil {
			walk(rt.SubRoutes, pattern, out)
			continue
		}
		if h, ok := rt.Handlers["*"]; ok && strings.HasSuffix(rt.Pattern, "/*") {
			walk(h, pattern, out)
			continue
		}
		for m := range rt.Handlers {
			*out = append(*out, m+" "+prefix+rt.Pattern)
		}
	}
}

// Worker is the worker of one process: the transfers' worker, a worker
// per partner, and the maintenance schedules it ensures at start.
type Worker struct {
	matcher   *activities.IndexMatcher
	unfollow  context.CancelFunc // ends matcher.Follow; nil before Start
	imports   *blobstage.Bucket  // nil: imports fail
	workers   *workflows.Workers
	schedules workflows.ScheduleOptions
	cfg       Config
	log       *zap.Logger
}

// NewWorker builds the worker from cfg and d, with the identity index
// loaded, so that the first transfer does not wait for it. It starts
// nothing: Start or Run does.
func NewWorker(ctx context.Context, cfg Config, d Deps) (*Worker, error) {
	if err := d.check("worker"); err != nil {
		return nil, err
	}
	if d.Partners == nil {
		return nil, errors.New("app: the worker needs the partner registry")
	}
	manifests, err := d.signer("worker", signing.Manifest)
	if err != nil {
		return nil, err
	}
	checkpoints, err := d.signer("worker", signing.Checkpoint)
	if err != nil {
		return nil, err
	}
	log := d.logger()
	us, ids, err := cfg.us()
	if err != nil {
		return nil, err
	}
	imports, err := cfg.OpenImportBucket(ctx)
	if err != nil {
		return nil, err
	}
	matcher, err := newMatcher(ctx, d.Store, "worker", cfg.IdentitySnapshot, log)
	if err != nil {
		closeBucket(imports)
		return nil, err
	}
	deps := workflows.ActivityDeps{
		Store: d.Store, Matcher: matcher, Partners: d.Partners, Signer: manifests, AuditSigner: checkpoints, Logger: log.Named("worker"),
		PHIRetention: cfg.Retention.PHIRetention, Transmitter: Transmitter(us), ImportBucket: imports,
		PayerName: export.DefaultPayerName, PayerIdentifiers: ids, MemberIDSystem: export.DefaultMemberIDSystem,
		PullTrustHeader: d.PullTrustHeader, ImportLimits: cfg.ImportLimits(), Resolver: d.Resolver,
		AuditWitness: audit.NewWitness(cfg.AuditWitness), CheckpointRefresh: cfg.AuditMaxAge / 2,
		// $bulk-member-match members are decided as $member-match decides
		// (pdex.Matching), with the same matcher, their failed matches
		// counted in the store with the FHIR API's.
		BulkMatch: &pdex.Matching{
			Matcher: matcher, Parties: func(id string) (pdex.Party, bool) { return PartyOf(d.Partners, id) },
			Holder:   pdex.Party{Identifiers: ids},
			Throttle: pdex.NewSharedThrottle(0, 0, 0, 0, d.Store),
		},
	}
	if cfg.SourceFHIR.URL != "" {
		sys := cfg.SourceFHIR.MemberIDSystem
		if sys == "" {
			sys = export.DefaultMemberIDSystem
		}
		c, err := cfg.SourceFHIR.config()
		if err == nil {
			deps.Source, err = fhirrest.NewSource(fhirrest.SourceConfig{Config: c, MemberIDSystem: sys})
		}
		if err != nil {
			closeBucket(imports)
			return nil, fmt.Errorf("source FHIR server: %w", err)
		}
	}
	if cfg.ImportFHIR.URL != "" {
		c, err := cfg.ImportFHIR.config()
		if err == nil {
			deps.ImportFHIR, err = fhirrest.NewSink(fhirrest.SinkConfig{Config: c})
		}
		if err != nil {
			closeBucket(imports)
			return nil, fmt.Errorf("import FHIR server: %w", err)
		}
	}
	if imports == nil {
		log.Warn("imports fail: no --import-bucket or --import-dir (P2P_IMPORT_BUCKET, P2P_IMPORT_DIR) to write pulled member data to")
	}
	r := cfg.Retention
	return &Worker{
		matcher: matcher, imports: imports,
		workers:   workflows.NewWorkers(d.Temporal, cfg.TaskQueue, d.Partners.Partners(), workflows.NewActivities(deps), cfg.workerOptions(d.Worker)),
		schedules: workflows.ScheduleOptions{CheckpointEvery: r.CheckpointInterval, PurgeEvery: r.PurgeInterval},
		cfg:       cfg, log: log,
	}, nil
}

// workerOptions is o with the graceful stop of the shutdown timeout, unless
// o sets its own: on SIGTERM the workers stop polling and give in-flight
// activities that long to finish before their contexts are cancelled (the
// SDK's default, 0, cancels them at once; Temporal retries them elsewhere
// after their timeouts, a 2 h download from the start).
func (c Config) workerOptions(o worker.Options) worker.Options {
	if o.WorkerStopTimeout == 0 {
		o.WorkerStopTimeout = c.ShutdownTimeout
		if o.WorkerStopTimeout <= 0 {
			o.WorkerStopTimeout = DefaultShutdownTimeout
		}
	}
	return o
}

// Start ensures the maintenance schedules, then starts the workers. Every
// worker ensures them: idempotent, and the intervals follow the
// configuration of the worker started last.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.workers.EnsureSchedules(ctx, w.schedules); err != nil {
		return fmt.Errorf("maintenance schedules: %w", err)
	}
	if err := w.workers.Start(); err != nil {
		return err
	}
	if w.unfollow == nil {
		// Until Stop, whatever ctx the caller started with.
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		w.unfollow = cancel
		go w.matcher.Follow(fctx, FollowInterval)
	}
	r := w.cfg.Retention
	w.log.Info("worker running", zap.Strings("task_queues", w.workers.Queues()),
		zap.Duration("audit_checkpoint_interval", r.CheckpointInterval), zap.String("phi_retention", FormatDuration(r.PHIRetention)),
		zap.String("audit_retention", FormatDuration(r.AuditRetention)), zap.Stringer("import_bucket", w.imports))
	return nil
}

// Run starts the worker and runs it until ctx is done.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}

// Stop stops the workers, then releases the import bucket.
func (w *Worker) Stop() {
	if w.unfollow != nil {
		w.unfollow()
	}
	w.workers.Stop()
	closeBucket(w.imports)
	w.imports = nil
}

// closeBucket releases b, if any: nothing is left to write to it, so an
// error closing it loses nothing.
func closeBucket(b *blobstage.Bucket) {
	if b != nil {
		_ = b.Close()
	}
}

// Ensure adds a worker for each partner that has none (after the registry
// was reloaded).
func (w *Worker) Ensure(partners Partners) error { return w.workers.Ensure(partners.Partners()) }

// Registered is what the worker registered: per task queue the workflow
// and activity names, and the schedules once Start ensured them.
func (w *Worker) Registered() workflows.Registration { return w.workers.Registered() }

// FollowInterval is how often a running API or worker applies member
// writes to its identity index between decisions (IndexMatcher.Follow);
// each decision catches up anyway.
const FollowInterval = time.Second

// newMatcher is the identity matcher of the worker and the FHIR API, with
// the decision thresholds the environment sets (identity.ConfigFromEnv),
// its index loaded.
func newMatcher(ctx context.Context, st activities.MemberIndex, by, snapshot string, log *zap.Logger) (*activities.IndexMatcher, error) {
	cfg, err := identity.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	m := workflows.NewMatcher(st, cfg, by, log)
	m.Snapshot = snapshot
	if err := m.Warm(ctx); err != nil {
		return nil, fmt.Errorf("loading the identity index: %w", err)
	}
	return m, nil
}
