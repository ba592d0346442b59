//go:build !nodev

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/devstack"
)

// defaultDataDir is where `p2p dev` keeps everything.
const defaultDataDir = ".p2p"

func init() {
	commands["dev"] = command{"run everything in one process (embedded Temporal, SQLite, sandbox partner)", runDev}
	commands["token"] = command{"get a fresh access token of a p2p dev client from the running p2p dev (dev only)", runToken}
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
	if err := cfg.ValidateImportLimits(); err != nil {
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
		StatusRetryAfter: cfg.StatusRetryAfter, ShutdownTimeout: cfg.ShutdownTimeout, TokenLifetime: cfg.TokenLifetime,
		Limits:       cfg.Limits,
		AuditWitness: cfg.AuditWitness, AuditMaxAge: cfg.AuditMaxAge, CodecOrigins: cfg.CodecOrigins,
		ImportBucket: cfg.ImportBucket,
	})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	fmt.Fprintf(stdout, "p2p dev: API %s  (sandbox partner %q at %s, Temporal %s, data %s)\n",
		s.URL, devstack.SandboxPartnerID, s.SandboxURL, s.Temporal.Address(), *dataDir)
	fmt.Fprintf(stdout, "p2p dev: access tokens (one client per role, valid %s): source %s\n", devstack.DevTokenLifetime, s.TokensPath)
	fmt.Fprintln(stdout, "p2p dev: ready")
	<-ctx.Done()
	logger.Info("shutting down", zap.String("reason", "signal"))
	s.Stop()
	fmt.Fprintln(stdout, "p2p dev: stopped")
	return nil
}

// runToken gets a fresh access token for a dev client from the token
// endpoint of a running p2p dev, as a real client does (a client
// assertion signed with the client's key from the data directory), and
// prints it as a shell export line.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p2p token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "the data directory of the running p2p dev")
	url := fs.String("url", "http://127.0.0.1:8080", "the base URL of the running p2p dev (as its --addr or --public-url names it)")
	client := fs.String("client", "admin", "the dev client: "+devClientNames())
	scope := fs.String("scope", "", "the scopes to ask for, space-separated; empty: all the client's")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("token: unexpected arguments %v", fs.Args()))
	}
	var dc devstack.DevClient
	for _, c := range devstack.DevClients {
		if c.Name == *client {
			dc = c
		}
	}
	if dc.Name == "" {
		return usageError(fmt.Errorf("token: --client must be one of %s", devClientNames()))
	}
	tok, err := devstack.ClientToken(ctx, *dataDir, *url, dc.Name, *scope)
	var unreachable *net.OpError
	if errors.As(err, &unreachable) {
		return fmt.Errorf("token: %w (is p2p dev running on %s?)", err, *url)
	} else if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintf(stdout, "export %s=%s\n", dc.EnvVar(), tok)
	return nil
}

func devClientNames() string {
	var names []string
	for _, c := range devstack.DevClients {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
