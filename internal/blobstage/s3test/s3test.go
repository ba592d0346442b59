// Package s3test runs an S3-compatible server on loopback for tests:
// github.com/johannesboyne/gofakes3 (MIT) over an in-memory backend,
// served with httptest, reached through the real s3blob client
// (aws-sdk-go-v2), signatures, multipart uploads, copies and listings
// included.
package s3test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running fake S3.
type Server struct {
	// URL is the server's base URL (the endpoint).
	URL     string
	backend *s3mem.Backend

	mu       sync.Mutex
	requests map[string]int // by method
}

// Start starts a server for the test with bucket created, and points the
// AWS credential chain of the process at static test credentials (no
// shared config files, no instance metadata).
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "p2p-test", "AWS_SECRET_ACCESS_KEY": "p2p-test-secret", "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
	} {
		t.Setenv(k, v)
	}
	s := &Server{backend: s3mem.New(), requests: map[string]int{}}
	if err := s.backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	h := gofakes3.New(s.backend, gofakes3.WithoutVersioning()).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.Method]++
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// BucketURL is the s3blob URL of bucket on the server.
func (s *Server) BucketURL(bucket string) string {
	return "s3://" + bucket + "?region=us-east-1&use_path_style=true&endpoint=" + url.QueryEscape(s.URL)
}

// Requests is how many requests of method the server answered.
func (s *Server) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method]
}
