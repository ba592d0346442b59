package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/dsn"
	"github.com/p2p-payer/p2p/workflows"
)

// parse binds cfg's flags for which to a new flag set and parses args
// (help to stdout, errors to stderr).
func parse(name string, args []string, stdout, stderr io.Writer, which int) (*app.Config, *zap.Logger, error) {
	var cfg app.Config
	fs := flag.NewFlagSet("p2p "+name, flag.ContinueOnError)
	if err := cfg.Bind(fs, which); err != nil {
		return nil, nil, err
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return nil, nil, err
	}
	if which&(app.FlagWorker|app.FlagDev) != 0 {
		if err := cfg.Retention.Validate(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := cfg.ValidateImportLimits(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if which&app.FlagAPI != 0 {
		if err := cfg.Keys.Validate(); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if cfg.ResumeInterval <= 0 {
			return nil, nil, usageError(fmt.Errorf("%s: P2P_RESUME_INTERVAL must be positive, not %v", name, cfg.ResumeInterval))
		}
	}
	if cfg.StartupTimeout < 0 {
		return nil, nil, usageError(fmt.Errorf("%s: P2P_STARTUP_TIMEOUT must not be negative (%v)", name, cfg.StartupTimeout))
	}
	if fs.NArg() > 0 {
		return nil, nil, usageError(fmt.Errorf("%s: unexpected arguments %v", name, fs.Args()))
	}
	if which&app.FlagDatabase != 0 && cfg.DatabaseURL == "" {
		return nil, nil, usageError(errors.New(name + ": --database-url or P2P_DATABASE_URL is required"))
	}
	logger, err := app.NewLogger(cfg.LogLevel, false)
	return &cfg, logger, err
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, logger, err := parse("migrate", args, stdout, stderr, app.FlagDatabase)
	if err != nil {
		return err
	}
	if err := dsn.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	logger.Info("migrations applied")
	return nil
}

// Flags of the production subcommands.
const (
	apiFlags    = app.FlagDatabase | app.FlagTemporal | app.FlagAPI
	workerFlags = app.FlagDatabase | app.FlagTemporal | app.FlagWorker
)

// opened is what a production process opens from its configuration and
// injects into app.NewAPI and app.NewWorker.
type opened struct {
	deps    app.Deps
	live    *connectors.Live // nil without --partners
	closers []func()
}

// open opens the store, the signing keys, the partner registry (if
// configured) and the Temporal client of cfg for the subcommand whose
// flags are which. The database and Temporal it waits for, up to
// cfg.StartupTimeout, when they are not up yet; Temporal until it serves
// our namespace, which the worker needs to start. On error, what it opened
// is closed.
func open(ctx context.Context, cfg *app.Config, which int, logger *zap.Logger) (o *opened, err error) {
	o = &opened{deps: app.Deps{Logger: logger}}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	// Files first: a fault of configuration fails at once, not after a
	// wait for the database.
	signers, err := loadSigners(cfg, which)
	if err != nil {
		return o, err
	}
	o.deps.ManifestSigner, o.deps.AuditSigner, o.deps.TokenSigner = signers.Manifest, signers.Checkpoint, signers.Token
	if cfg.Partners != "" {
		if o.live, err = connectors.OpenLive(cfg.Partners); err != nil {
			return o, err
		}
		o.deps.Partners = o.live
	}
	// The payload key is a file too: a missing one fails before any wait.
	if o.deps.Codec, err = loadPayloadCodec(cfg); err != nil {
		return o, err
	}
	var st store.Store
	err = app.Retry(ctx, "database", cfg.StartupTimeout, logger, func(ctx context.Context) (err error) {
		st, err = dsn.Open(ctx, cfg.DatabaseURL)
		return err
	})
	if err != nil {
		return o, err
	}
	o.deps.Store = st
	o.closers = append(o.closers, func() {
		if err := st.Close(); err != nil {
			logger.Warn("store close", zap.Error(err))
		}
	})
	err = app.Retry(ctx, "temporal", cfg.StartupTimeout, logger, func(ctx context.Context) error {
		if o.deps.Temporal == nil {
			c, err := app.Dial(ctx, cfg.TemporalAddress, cfg.TemporalNamespace, cfg.TemporalAuth, o.deps.Codec, logger)
			if err != nil {
				return err
			}
			o.deps.Temporal = c
			o.closers = append(o.closers, c.Close)
		}
		eng := workflows.Engine{Client: o.deps.Temporal, Namespace: cfg.TemporalNamespace}
		if err := eng.Ready(ctx); err != nil {
			return fmt.Errorf("temporal at %s, namespace %s: %w", cfg.TemporalAddress, cfg.TemporalNamespace, err)
		}
		return nil
	})
	return o, err
}

// Close closes what open opened, last first.
func (o *opened) Close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

// newAPI builds the API of `p2p api` from its arguments.
func newAPI(ctx context.Context, args []string, stdout, stderr io.Writer) (*app.API, *opened, *app.Config, error) {
	cfg, logger, err := parse("api", args, stdout, stderr, apiFlags)
	if err != nil {
		return nil, nil, nil, err
	}
	// Check the TLS files before anything slow: a bad one fails at once.
	if _, err := cfg.TLS.Config(); err != nil {
		return nil, nil, nil, err
	}
	if _, err := cfg.TemporalAuth.TLSConfig(); err != nil {
		return nil, nil, nil, err
	}
	// Without a registry the API could not tell a partner no worker
	// serves: the transfer would wait on a task queue nobody polls.
	if cfg.Partners == "" {
		return nil, nil, nil, usageError(errors.New("api: --partners or P2P_PARTNERS is required"))
	}
	o, err := open(ctx, cfg, apiFlags, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	a, err := app.NewAPI(ctx, *cfg, o.deps)
	if err != nil {
		o.Close()
		return nil, nil, nil, err
	}
	return a, o, cfg, nil
}

func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	a, o, cfg, err := newAPI(ctx, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	logger := o.deps.Logger
	defer logger.Sync()
	if o.live != nil {
		go reloadOnHangup(ctx, o.live, logger, nil)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	var partnerLn net.Listener
	if cfg.FHIRAddr != "" {
		if partnerLn, err = net.Listen("tcp", cfg.FHIRAddr); err != nil {
			_ = ln.Close() // unused: the listen error is the one that matters
			return fmt.Errorf("--fhir-addr: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Transfers accepted but not started (Temporal was down, or a process
	// died in between) start now and whenever Temporal is back.
	go a.ResumeLoop(ctx, cfg.ResumeInterval, app.ResumeAge)
	if partnerLn == nil {
		return a.Serve(ctx, ln)
	}
	// Both addresses, until either fails or ctx ends.
	errc := make(chan error, 2)
	go func() { errc <- a.Serve(ctx, ln) }()
	go func() { errc <- a.ServePartners(ctx, partnerLn) }()
	err = <-errc
	cancel()
	return errors.Join(err, <-errc)
}

// newWorker builds the worker of `p2p worker` from its arguments.
func newWorker(ctx context.Context, args []string, stdout, stderr io.Writer) (*app.Worker, *opened, error) {
	cfg, logger, err := parse("worker", args, stdout, stderr, workerFlags)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Partners == "" {
		return nil, nil, usageError(errors.New("worker: --partners or P2P_PARTNERS is required"))
	}
	o, err := open(ctx, cfg, workerFlags, logger)
	if err != nil {
		return nil, nil, err
	}
	w, err := app.NewWorker(ctx, *cfg, o.deps)
	if err != nil {
		o.Close()
		return nil, nil, err
	}
	return w, o, nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	w, o, err := newWorker(ctx, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer o.Close()
	logger := o.deps.Logger
	defer logger.Sync()
	go reloadOnHangup(ctx, o.live, logger, func() error { return w.Ensure(o.live) })
	return w.Run(ctx)
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
