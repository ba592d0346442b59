//go:build !nodev

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/devstack"
)

// defaultDataDir is where `p2p dev` keeps everything.
const defaultDataDir = ".p2p"

func init() {
	commands["dev"] = command{"run everything in one process (embedded Temporal, SQLite, sandbox partner)", runDev}
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", defaultDataDir, "where the Temporal and p2p stores, the signing key and the sandbox log live")
	addr := fs.String("addr", "127.0.0.1:8080", "API listen address")
	noSeed := fs.Bool("no-seed", false, "do not load the demo members")
	level := fs.String("log-level", app.Env("P2P_LOG_LEVEL", "info"), "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := app.NewLogger(*level, true)
	if err != nil {
		return err
	}
	retention, err := app.RetentionFromEnv()
	if err == nil {
		err = retention.Validate()
	}
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck // best effort at exit
	s, err := devstack.Start(ctx, devstack.Options{DataDir: *dataDir, Addr: *addr, Seed: !*noSeed, Logger: logger, Retention: retention})
	if err != nil {
		return err
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
