//go:build !nodev

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run dispatches args in this process and returns stdout, stderr and the
// exit code main would give.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := dispatch(context.Background(), args, &stdout, &stderr)
	code := exitCode(err, &stderr)
	return stdout.String(), stderr.String(), code
}

// TestCommandLine: help goes to stdout with exit 0, mistakes to stderr
// with exit 2 and, where one is near, a suggestion.
func TestCommandLine(t *testing.T) {
	for _, tt := range []struct {
		name       string
		args       []string
		code       int
		stdout     string // a substring; "" wants none
		stderr     string
		notInUsage string
	}{
		{"no command", nil, 2, "", "members import", ""},
		{"help", []string{"help"}, 0, "keys generate", "", ""},
		{"--help", []string{"--help"}, 0, "usage: p2p <command>", "", ""},
		{"-h", []string{"-h"}, 0, "usage: p2p <command>", "", ""},
		{"command help", []string{"worker", "-h"}, 0, "-phi-purge-interval", "", ""},
		{"command --help", []string{"members", "import", "--help"}, 0, "-file", "", ""},
		{"mistyped command", []string{"wroker"}, 2, "", `did you mean "worker"?`, ""},
		{"mistyped subcommand", []string{"members", "improt", "--file", "x"}, 2, "", `did you mean "members import"?`, ""},
		{"mistyped group", []string{"membres"}, 2, "", `did you mean "members import"?`, ""},
		{"far from anything", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`, "did you mean"},
		{"group", []string{"members"}, 2, "", "import", ""},
		{"group lists only its own", []string{"keys"}, 2, "", "keys generate", "members import"},
		{"bad flag", []string{"migrate", "--no-such-flag"}, 2, "", "flag provided but not defined: -no-such-flag", ""},
		{"missing required flag", []string{"migrate"}, 2, "", "--database-url or P2P_DATABASE_URL is required", ""},
		{"dev takes the worker's retention", []string{"dev", "--phi-retention", "10d", "--audit-retention", "1d"}, 1, "", "P2P_AUDIT_RETENTION (1d) is shorter than P2P_PHI_RETENTION (10d)", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tt.code, stdout, stderr)
			}
			if tt.stdout == "" && stdout != "" || !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout %q, want %q", stdout, tt.stdout)
			}
			if tt.stderr == "" && stderr != "" || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q, want %q", stderr, tt.stderr)
			}
			if tt.notInUsage != "" && strings.Contains(stdout+stderr, tt.notInUsage) {
				t.Errorf("output names %q: %s%s", tt.notInUsage, stdout, stderr)
			}
		})
	}
}

// TestProductionBuildSaysDevIsLeftOut: a binary built with -tags nodev
// has no dev command, and says why instead of "unknown command".
func TestProductionBuildSaysDevIsLeftOut(t *testing.T) {
	dev := commands["dev"]
	delete(commands, "dev")
	t.Cleanup(func() { commands["dev"] = dev })
	_, stderr, code := run(t, "dev")
	if code != 2 || !strings.Contains(stderr, "production build (-tags nodev)") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestFlagHelpShowsOneDefault: no flag's help states its default twice
// (once in the text, once by the flag package).
func TestFlagHelpShowsOneDefault(t *testing.T) {
	for name := range commands {
		stdout, stderr, _ := run(t, append(strings.Fields(name), "-h")...)
		for _, line := range strings.Split(stdout+stderr, "\n") {
			if i := strings.LastIndex(line, "(default "); i >= 0 && strings.Contains(line[:i], "default") {
				t.Errorf("p2p %s: %q", name, line)
			}
		}
	}
}

// TestDevStartupErrors: p2p dev names what stopped it and exits 1, with
// no panic while it cleans up what it had started.
func TestDevStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := busy.Close(); err != nil {
			t.Error(err)
		}
	}()
	t.Run("port in use", func(t *testing.T) {
		_, stderr, code := run(t, "dev", "--data-dir", t.TempDir(), "--addr", busy.Addr().String(), "--log-level", "error")
		if code != 1 || !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, "--addr") {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
	t.Run("store cannot open", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "p2p.db"), 0o700); err != nil { // a directory where the database goes
			t.Fatal(err)
		}
		_, stderr, code := run(t, "dev", "--data-dir", dir, "--addr", "127.0.0.1:0", "--log-level", "error")
		if code != 1 || !strings.Contains(stderr, "dev: store:") {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}
