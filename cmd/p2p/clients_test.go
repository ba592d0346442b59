//go:build !nodev

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestClientsCLI: add registers a client, a taken id or a bad flag is
// refused, list shows each client's status, scopes and credentials,
// disable disables for good.
func TestClientsCLI(t *testing.T) {
	db := "--database-url=" + filepath.Join(t.TempDir(), "p2p.db")
	fp := strings.Repeat("ab", 32)
	steps := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"add", []string{"clients", "add", db, "--id", "intake", "--scope", "transfers:write", "--scope", "transfers:read",
			"--jwks-url", "https://intake.example/jwks"}, 0, "client intake registered with scopes transfers:write transfers:read", ""},
		{"add by certificate", []string{"clients", "add", db, "--id", "pat", "--scope", "review", "--cert-sha256", fp, "--person", "Pat Reviewer"},
			0, "client pat registered", ""},
		{"a taken id", []string{"clients", "add", db, "--id", "intake", "--scope", "admin", "--jwks-url", "https://x.example"}, 1, "", "exists"},
		{"the same certificate", []string{"clients", "add", db, "--id", "mallory", "--scope", "admin", "--cert-sha256", fp}, 1, "", "clients add"},
		{"an unknown scope", []string{"clients", "add", db, "--id", "x", "--scope", "root", "--jwks-url", "https://x.example"}, 2, "", `scope "root"`},
		{"no credential", []string{"clients", "add", db, "--id", "x", "--scope", "admin"}, 2, "", "no credential"},
		{"list", []string{"clients", "list", db}, 0, "pat     active  review", ""},
		{"disable", []string{"clients", "disable", db, "--id", "intake"}, 0, "client intake disabled", ""},
		{"disable nobody", []string{"clients", "disable", db, "--id", "nobody"}, 1, "", `no client "nobody"`},
		{"list after", []string{"clients", "list", db}, 0, "intake  disabled", ""},
	}
	for _, st := range steps {
		stdout, stderr, code := run(t, st.args...)
		if code != st.code || !strings.Contains(stdout, st.stdout) || !strings.Contains(stderr, st.stderr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", st.name, code, stdout, stderr, st.code, st.stdout, st.stderr)
		}
	}
	stdout, _, _ := run(t, "clients", "list", db)
	for _, want := range []string{"https://intake.example/jwks", "Pat Reviewer", "transfers:write transfers:read"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("list does not show %q:\n%s", want, stdout)
		}
	}
}
