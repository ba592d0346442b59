// Command p2p is the payer-to-payer transfer orchestrator: one binary whose
// subcommands run the embedded dev stack, the API, the worker, migrations
// and the operator tools.
package main

// The configuration reference, from the flag definitions.
//go:generate go test -run TestConfigurationReference -update .

import (
	"bytes"
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
	"keys generate":  {"create the signing key set of each purpose, and the payload key set, that has none", runKeysGenerate},
}

// Exit codes: 0 done (or help asked for), 1 failed, 2 misused.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr (unless the flag package already did)
// and returns the process's exit code.
func exitCode(err error, stderr io.Writer) int {
	var usage *usageErr
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlags):
		return exitUsage // the flag package printed the error and the usage
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "p2p:", err)
		return exitUsage
	}
	fmt.Fprintln(stderr, "p2p:", err)
	return exitFailed
}

// usageErr is a misuse of the command line: exit code 2.
type usageErr struct{ error }

func (e *usageErr) Unwrap() error { return e.error }

func usageError(err error) error { return &usageErr{err} }

// errFlags is a flag the flag package refused, having said why.
var errFlags = errors.New("bad flags")

// parseFlags parses args into fs: -h prints the usage to stdout, a bad
// flag the error and the usage to stderr.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.Copy(stdout, &out)
		return err
	case err != nil:
		_, _ = io.Copy(stderr, &out)
		return fmt.Errorf("%w: %w", errFlags, err)
	}
	return nil
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, n := range []int{2, 1} {
		if len(args) >= n {
			if c, ok := commands[strings.Join(args[:n], " ")]; ok {
				return c.run(ctx, args[n:], stdout, stderr)
			}
		}
	}
	if len(args) == 0 {
		usage(stderr, "")
		return usageError(errors.New("no command"))
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage(stdout, "")
		return flag.ErrHelp
	}
	s := suggest(args)
	if sub := withPrefix(args[0]); len(sub) > 0 && (len(args) == 1 || s == "") {
		// A group ("p2p members"): list its subcommands.
		usage(stderr, args[0])
		return usageError(fmt.Errorf("%q needs a subcommand: %s", args[0], strings.Join(sub, ", ")))
	}
	usage(stderr, "")
	err := fmt.Errorf("unknown command %q", strings.Join(args, " "))
	if args[0] == "dev" {
		err = fmt.Errorf("%w: this p2p is a production build (-tags nodev), which leaves out the dev stack", err)
	} else if s != "" {
		err = fmt.Errorf("%w; did you mean %q?", err, s)
	}
	return usageError(err)
}

// withPrefix lists the subcommands of the group word, sorted.
func withPrefix(word string) []string {
	var out []string
	for n := range commands {
		if rest, ok := strings.CutPrefix(n, word+" "); ok {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out
}

// suggest is the command closest to what was typed, if one is close.
func suggest(args []string) string {
	best, bestD := "", 3 // at most two edits away
	for n := range commands {
		// A group typed alone ("membres") is compared with the group.
		words := min(strings.Count(n, " ")+1, len(args))
		typed, target := strings.Join(args[:words], " "), strings.Join(strings.Fields(n)[:words], " ")
		if d := distance(typed, target); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// usage lists the commands, those of group only when it is not "".
func usage(w io.Writer, group string) {
	fmt.Fprintln(w, "usage: p2p <command> [flags]   (p2p <command> -h for its flags)")
	names := make([]string, 0, len(commands))
	for n := range commands {
		if group == "" || strings.HasPrefix(n, group+" ") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
}
