package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoggerColour: the dev console logger colours its levels on a
// terminal only; a log written to a file has no ANSI escape codes.
func TestLoggerColour(t *testing.T) {
	for _, tt := range []struct {
		name           string
		console, color bool
		want           bool
	}{
		{"console to a file", true, false, false},
		{"console to a terminal", true, true, true},
		{"json", false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p2p.log")
			l, err := newLogger("info", tt.console, tt.color, path)
			if err != nil {
				t.Fatal(err)
			}
			l.Info("started")
			_ = l.Sync()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), "\x1b["); got != tt.want || !strings.Contains(string(b), "started") {
				t.Errorf("ANSI codes: %v, want %v: %q", got, tt.want, b)
			}
		})
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if isTerminal(f) {
		t.Error("a regular file is taken for a terminal")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
