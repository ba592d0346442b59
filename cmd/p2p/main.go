// Command p2p is the payer-to-payer transfer orchestrator: one binary whose
// subcommands run the embedded dev stack, the API, the worker, migrations
// and the operator tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of p2p.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands maps a subcommand (one or two words) to its implementation.
// dev.go adds "dev" unless the binary is built with -tags nodev.
var commands = map[string]command{
	"api":            {"serve the REST API (production)", runAPI},
	"worker":         {"run the Temporal worker (production)", runWorker},
	"migrate":        {"apply database migrations", runMigrate},
	"members import": {"bulk-load the member index from the canonical CSV", runMembersImport},
	"keys generate":  {"create a signing key (private JWK file)", runKeysGenerate},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "p2p:", err)
		}
		os.Exit(2)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, n := range []int{2, 1} {
		if len(args) >= n {
			if c, ok := commands[strings.Join(args[:n], " ")]; ok {
				return c.run(ctx, args[n:], stdout, stderr)
			}
		}
	}
	usage(stderr)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return flag.ErrHelp
	}
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: p2p <command> [flags]   (p2p <command> -h for its flags)")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
}
