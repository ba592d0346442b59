package bulkdata

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// FileToken is a bearer token kept in a file that something else renews
// (a sidecar, a secrets agent): the file is read again whenever its
// modification time or size changes, so a renewed token is used without a
// restart. Safe for concurrent use.
type FileToken struct {
	path string

	mu    sync.Mutex
	token string
	mod   time.Time
	size  int64
}

var _ TokenSource = (*FileToken)(nil)

// NewFileToken reads the token in path once, so that a missing or empty
// file is an error at start rather than at the first request.
func NewFileToken(path string) (*FileToken, error) {
	t := &FileToken{path: path}
	if _, err := t.Token(context.Background()); err != nil {
		return nil, err
	}
	return t, nil
}

// Token returns the file's token, reading the file again if it changed.
func (t *FileToken) Token(context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := os.Stat(t.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if t.token != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", t.path)
	}
	t.token, t.mod, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// Invalidate makes the next Token read the file again (the server refused
// token).
func (t *FileToken) Invalidate(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == token {
		t.token = ""
	}
}
