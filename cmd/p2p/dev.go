//go:build !nodev

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/devstack"
)

// defaultDataDir is where `p2p dev` keeps everything.
const defaultDataDir = ".p2p"

func init() {
	commands["dev"] = command{"run everything in one process (embedded Temporal, SQLite, sandbox partner)", runDev}
}

// devFlags are the settings p2p dev shares with api and worker (the
// others are fixed by the dev stack: SQLite in the data directory, the
// embedded Temporal server, the sandbox partner, the trust header).
const devFlags = app.FlagDev

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p dev", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "where the Temporal and p2p stores, the signing key, imports and the sandbox log live")
	noSeed := fs.Bool("no-seed", false, "do not load the demo members")
	// Loopback: a client polls a running export again after a second.
	cfg := app.Config{StatusRetryAfter: time.Second, ShutdownTimeout: devstack.DefaultShutdownTimeout}
	if err := cfg.Bind(fs, devFlags); err != nil {
		return err
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("dev: unexpected arguments %v", fs.Args()))
	}
	if err := cfg.Retention.Validate(); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logger, err := app.NewLogger(cfg.LogLevel, true)
	if err != nil {
		return err
	}
	defer logger.Sync()
	s, err := devstack.Start(ctx, devstack.Options{
		DataDir: *dataDir, Addr: cfg.Addr, Seed: !*noSeed, Logger: logger, Retention: cfg.Retention,
		PublicURL: cfg.PublicURL, SourceFHIR: cfg.SourceFHIR, ImportFHIR: cfg.ImportFHIR,
		StatusRetryAfter: cfg.StatusRetryAfter, ShutdownTimeout: cfg.ShutdownTimeout,
		AuditWitness: cfg.AuditWitness, AuditMaxAge: cfg.AuditMaxAge,
	})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	fmt.Fprintf(stdout, "p2p dev: API %s  (sandbox partner %q at %s, Temporal %s, data %s)\n",
		s.URL, devstack.SandboxPartnerID, s.SandboxURL, s.Temporal.Address(), *dataDir)
	fmt.Fprintln(stdout, "p2p dev: ready")
	<-ctx.Done()
	logger.Info("shutting down", zap.String("reason", "signal"))
	s.Stop()
	fmt.Fprintln(stdout, "p2p dev: stopped")
	return nil
}
