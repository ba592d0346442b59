package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGitIgnore: what running p2p as the README shows leaves in the
// checkout (the dev data directory with its signing key, binaries, the
// walk-through's CSVs) is ignored by git.
func TestGitIgnore(t *testing.T) {
	paths := []string{".p2p/signing-key.jwk", ".p2p/keys/token-keys.json", "deploy/keys/manifest-keys.json", ".p2p/p2p.db", "bin/p2p", "bin/p2p-prod", "p2p", "members.csv", "queries.csv", "decisions.csv"}
	cmd := exec.Command("git", append([]string{"check-ignore", "--no-index", "--"}, paths...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("git check-ignore: %v", err)
	}
	ignored := strings.Fields(string(out))
	for _, p := range paths {
		found := false
		for _, i := range ignored {
			found = found || i == p
		}
		if !found {
			t.Errorf("%s is not ignored (git check-ignore: %q)", p, out)
		}
	}
	// Sources stay tracked.
	if out, err := exec.Command("git", "-C", "../..", "check-ignore", "--no-index", "devstack/demo/members.csv", "cmd/p2p/main.go").Output(); err == nil {
		t.Errorf("sources ignored: %s", out)
	}
}
