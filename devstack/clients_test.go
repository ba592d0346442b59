package devstack

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/caller"
)

// TestDevTokens: p2p dev registers a client per role and writes a token
// of each to tokens.env (0600), each authenticating as its client with
// its role; a fresh token comes from the real token endpoint with the
// client's key; a restart keeps the keys and mints new tokens.
func TestDevTokens(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(s.TokensPath)
	if err != nil || info.Mode().Perm() != 0o600 || s.TokensPath != filepath.Join(dir, TokensFile) {
		t.Fatalf("tokens file %s: %v %v", s.TokensPath, info, err)
	}
	env, _ := os.ReadFile(s.TokensPath)
	auth := s.API.V1Auth().Authenticator
	for _, dc := range DevClients {
		line := "export " + dc.EnvVar() + "=" + s.Tokens[dc.Name] + "\n"
		if s.Tokens[dc.Name] == "" || !strings.Contains(string(env), line) {
			t.Errorf("%s: no %s line in %s", dc.Name, dc.EnvVar(), s.TokensPath)
		}
		r := httptest.NewRequest("GET", "/v1/transfers", nil)
		r.Header.Set("Authorization", "Bearer "+s.Tokens[dc.Name])
		p, err := auth.Authenticate(r)
		if err != nil || p.ClientID != dc.ID() || !slices.Equal(p.Scopes, dc.Scopes) || p.Person != dc.Person || p.Method != "bearer" {
			t.Errorf("%s's token: %+v, %v", dc.Name, p, err)
		}
	}
	fresh, err := ClientToken(ctx, dir, s.URL, "reviewer", "")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/transfers", nil)
	r.Header.Set("Authorization", "Bearer "+fresh)
	if p, err := auth.Authenticate(r); err != nil || p.ClientID != "dev-reviewer" || !slices.Equal(p.Scopes, []caller.Scope{caller.Review}) ||
		p.Person != "Dev Reviewer" {
		t.Errorf("a fresh reviewer token: %+v, %v", p, err)
	}
	if _, err := ClientToken(ctx, dir, s.URL, "reviewer", "admin"); err == nil || !strings.Contains(err.Error(), "invalid_scope") {
		t.Errorf("a reviewer asking for admin: %v", err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "clients", "admin.jwk"))
	s.Stop()

	s, err = Start(ctx, Options{DataDir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if again, _ := os.ReadFile(filepath.Join(dir, "clients", "admin.jwk")); string(again) != string(key) || len(key) == 0 {
		t.Error("a restart replaced the admin client's key")
	}
	if _, err := ClientToken(ctx, dir, s.URL, "admin", ""); err != nil {
		t.Errorf("after a restart: %v", err)
	}
}
