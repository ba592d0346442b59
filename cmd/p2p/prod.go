package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/api"
	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/pdex"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store/dsn"
	"github.com/p2p-payer/p2p/workflows"
)

// parse binds cfg's flags for which to a new flag set and parses args.
func parse(name string, args []string, stderr io.Writer, which int) (*app.Config, *zap.Logger, error) {
	var cfg app.Config
	fs := flag.NewFlagSet("p2p "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if which&app.FlagWorker != 0 {
		var err error
		if cfg.Retention, err = app.RetentionFromEnv(); err != nil {
			return nil, nil, err
		}
	}
	cfg.Bind(fs, which)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if which&app.FlagWorker != 0 {
		if err := cfg.Retention.Validate(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%s: unexpected arguments %v", name, fs.Args())
	}
	if which&app.FlagDatabase != 0 && cfg.DatabaseURL == "" {
		return nil, nil, errors.New(name + ": --database-url or P2P_DATABASE_URL is required")
	}
	logger, err := app.NewLogger(cfg.LogLevel, false)
	return &cfg, logger, err
}

func runMigrate(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, logger, err := parse("migrate", args, stderr, app.FlagDatabase)
	if err != nil {
		return err
	}
	if err := dsn.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	logger.Info("migrations applied")
	return nil
}

func runAPI(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, logger, err := parse("api", args, stderr, app.FlagDatabase|app.FlagTemporal|app.FlagAPI|app.FlagWorker)
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck // best effort at exit
	// Load the TLS files before anything slow: a bad one fails at once.
	tlsConfig, err := cfg.TLS.Config()
	if err != nil {
		return err
	}
	st, err := dsn.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	signer, err := signing.Load(cfg.SigningKey)
	if err != nil {
		return err
	}
	var partners *connectors.Live
	if cfg.Partners != "" {
		if partners, err = connectors.OpenLive(cfg.Partners); err != nil {
			return err
		}
		go reloadOnHangup(ctx, partners, logger, nil)
	}
	c, err := app.Dial(ctx, cfg.TemporalAddress, cfg.TemporalNamespace, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	deps := api.Deps{
		Store: st, Engine: &workflows.Engine{Client: c, Store: st, TaskQueue: cfg.TaskQueue},
		Keys: signer, Logger: logger, BaseURL: cfg.PublicURL,
	}
	if partners != nil { // without a registry the workflow fails unknown partners
		deps.Partners = api.PartnersFunc(partners.CanPush)
		deps.Acks = &app.AckVerifier{Partners: partners}
		deps.Pullers = api.PartnersFunc(partners.CanPull)
		// The partner-facing FHIR API needs to know its callers.
		holder := pdex.Party{}
		if cfg.PayerIdentifier != "" {
			id, err := app.ParseIdentifier(cfg.PayerIdentifier)
			if err != nil {
				return err
			}
			holder.Identifiers = []fhir.Identifier{id}
		}
		// Partners authenticate by SMART Backend Services (tokens from
		// /fhir/auth/token), by TLS client certificates (P2P_TLS_CLIENT_CA_FILE),
		// or through a gateway that sets a trusted header.
		publicURL := cfg.PublicURL
		if publicURL == "" && tlsConfig != nil {
			publicURL = "https://" + cfg.Addr
		} else if publicURL == "" {
			publicURL = "http://" + cfg.Addr
		}
		auth := app.NewSMARTAuth(publicURL, signer, partners)
		if deps.FHIR, err = app.NewFHIRHandler(ctx, app.FHIRDeps{
			Store: st, Partners: partners, Holder: holder, TrustHeader: cfg.FHIRTrustHeader, Auth: auth, Logger: logger.Named("fhir"),
			Exports:     &workflows.ServeEngine{Client: c, Store: st, TaskQueue: cfg.TaskQueue},
			BulkMatches: &workflows.BulkMatchEngine{Client: c, TaskQueue: cfg.TaskQueue},
			BaseURL:     publicFHIR(cfg.PublicURL),
		}); err != nil {
			return err
		}
		deps.FHIR = app.WithSMART(auth, deps.FHIR)
	}
	srv, err := api.NewServer(deps)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	// Transfers accepted just before a crash may never have had their
	// workflow started; start them now (idempotent).
	if n, err := srv.ResumePending(ctx, 30*time.Second); err != nil {
		logger.Warn("resuming pending transfers", zap.Error(err))
	} else if n > 0 {
		logger.Info("resumed pending transfers", zap.Int("count", n))
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	logger.Info("api listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsConfig != nil),
		zap.Bool("client_certs", tlsConfig != nil && tlsConfig.ClientCAs != nil))
	return app.Serve(ctx, ln, srv.Handler(), cfg.ShutdownTimeout)
}

func runWorker(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, logger, err := parse("worker", args, stderr, app.FlagDatabase|app.FlagTemporal|app.FlagWorker)
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck // best effort at exit
	if cfg.Partners == "" {
		return errors.New("worker: --partners or P2P_PARTNERS is required")
	}
	st, err := dsn.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	signer, err := signing.Load(cfg.SigningKey)
	if err != nil {
		return err
	}
	partners, err := connectors.OpenLive(cfg.Partners)
	if err != nil {
		return err
	}
	c, err := app.Dial(ctx, cfg.TemporalAddress, cfg.TemporalNamespace, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if cfg.ImportDir == "" {
		logger.Warn("imports fail: no --import-dir (P2P_IMPORT_DIR) to write pulled member data to")
	}
	var us fhir.Identifier
	payer := activities.Payer{Name: export.DefaultPayerName, MemberIDSystem: export.DefaultMemberIDSystem}
	if cfg.PayerIdentifier != "" {
		if us, err = app.ParseIdentifier(cfg.PayerIdentifier); err != nil {
			return err
		}
		payer.Identifiers = []fhir.Identifier{us}
	}
	acts, err := app.NewActivities(ctx, app.ActivityDeps{Store: st, Partners: partners, Signer: signer, Logger: logger,
		PHIRetention: cfg.Retention.PHIRetention, ImportDir: cfg.ImportDir, Payer: payer, Transmitter: app.Transmitter(us),
		SourceFHIR: cfg.SourceFHIR, ImportFHIR: cfg.ImportFHIR})
	if err != nil {
		return err
	}
	w := workflows.NewWorkers(c, cfg.TaskQueue, partners.Partners(), acts, worker.Options{})
	go reloadOnHangup(ctx, partners, logger, func() error { return w.Ensure(partners.Partners()) })
	// Every worker ensures the maintenance schedules: idempotent, and the
	// intervals follow the configuration of the worker started last.
	r := cfg.Retention
	if err := workflows.EnsureSchedules(ctx, c, workflows.ScheduleOptions{
		TaskQueue: cfg.TaskQueue, CheckpointEvery: r.CheckpointInterval, PurgeEvery: r.PurgeInterval,
	}); err != nil {
		return err
	}
	logger.Info("worker running", zap.Strings("task_queues", w.Queues()),
		zap.Duration("audit_checkpoint_interval", r.CheckpointInterval), zap.String("phi_retention", app.FormatDuration(r.PHIRetention)),
		zap.String("audit_retention", app.FormatDuration(r.AuditRetention)))
	return w.Run(interruptOn(ctx))
}

// reloadOnHangup reloads the partner registry on each SIGHUP until ctx
// ends, then calls then (if any) with the new registry in place. A file
// that does not validate is logged and the running registry kept.
func reloadOnHangup(ctx context.Context, l *connectors.Live, logger *zap.Logger, then func() error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if err := l.Reload(); err != nil {
			logger.Error("partner registry reload refused; keeping the running one", zap.Error(err))
			continue
		}
		if then != nil {
			if err := then(); err != nil {
				logger.Error("partner registry reloaded, but applying it failed", zap.Error(err))
				continue
			}
		}
		logger.Info("partner registry reloaded", zap.Strings("partners", l.Registry().IDs()))
	}
}

// interruptOn adapts ctx to the worker's interrupt channel.
func interruptOn(ctx context.Context) <-chan any {
	ch := make(chan any)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

func runKeysGenerate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p keys generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "path of the private JWK file to create (mode 0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("keys generate: --out is required")
	}
	s, err := signing.LoadOrCreate(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key %s (kid %s)\n", *out, s.KID())
	return nil
}

// publicFHIR is the public URL of /fhir under the API's public URL, or ""
// (the FHIR API then builds its URLs from each request).
func publicFHIR(public string) string {
	if public == "" {
		return ""
	}
	return strings.TrimRight(public, "/") + "/fhir"
}
