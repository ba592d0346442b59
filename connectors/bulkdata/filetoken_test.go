package bulkdata

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFileToken(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token")
	if _, err := NewFileToken(path); err == nil {
		t.Fatal("a missing file accepted")
	}
	if err := os.WriteFile(path, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileToken(path); err == nil {
		t.Fatal("an empty file accepted")
	}
	write := func(tok string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	write("first", t0)
	ft, err := NewFileToken(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func()
		want string
	}{
		{"read at start", func() {}, "first"},
		{"renewed by a sidecar", func() { write("second", t0.Add(time.Minute)) }, "second"},
		{"same size and time: cached", func() {
			// Rewritten in place with the old time and size: not read again
			// unless the server refuses the cached token.
			write("secxnd", t0.Add(time.Minute))
		}, "second"},
		{"refused: read again", func() { ft.Invalidate("second") }, "secxnd"},
		{"another token refused: kept", func() { ft.Invalidate("stale") }, "secxnd"},
	}
	for _, tt := range tests {
		tt.do()
		if got, err := ft.Token(ctx); err != nil || got != tt.want {
			t.Fatalf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := ft.Token(ctx); err == nil {
		t.Error("a removed file still gives a token")
	}
}
