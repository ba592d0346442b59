package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/api/serviceerror"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/p2p-payer/p2p/store/postgres"
)

func TestNotUpYet(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"name not resolved yet", &net.DNSError{Err: "no such host", Name: "temporal-frontend", IsNotFound: true}, true},
		{"temporal unavailable", fmt.Errorf("temporal at x: %w", serviceerror.NewUnavailable("connection refused")), true},
		{"namespace not created yet", serviceerror.NewNamespaceNotFound("p2p"), true},
		{"timeout", context.DeadlineExceeded, true},
		{"postgres starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{"postgres out of connections", &pgconn.PgError{Code: "53300"}, true},
		{"postgres bad password", &pgconn.PgError{Code: "28P01"}, false},
		{"postgres no such database", &pgconn.PgError{Code: "3D000"}, false},
		{"temporal refuses our credentials", serviceerror.NewPermissionDenied("no", ""), false},
		// As the SDK reports TLS faults (TestDialTemporal's cases).
		{"temporal refuses our certificate", serviceerror.NewUnavailable(`connection error: desc = "error reading server preface: remote error: tls: unknown certificate authority"`), false},
		{"temporal's certificate lacks the name", serviceerror.NewUnavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate is valid for temporal.test, not other.test"`), false},
		{"postgres refuses TLS", fmt.Errorf("failed to connect: %w", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")), false},
		{"missing file", &fs.PathError{Op: "open", Path: "/etc/p2p/ca.pem", Err: fs.ErrNotExist}, false},
		{"malformed", errors.New("P2P_TEMPORAL_TLS_CA_FILE holds no PEM certificate"), false},
	} {
		if got := NotUpYet(c.err); got != c.want {
			t.Errorf("%s: NotUpYet(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestNotUpYetReal: what the clients really return when nothing listens
// is worth a wait.
func TestNotUpYetReal(t *testing.T) {
	addr := closedAddr(t)
	ctx := context.Background()
	_, err := Dial(ctx, addr, "default", TemporalAuth{}, testCodec(t), zap.NewNop())
	if err == nil || !NotUpYet(err) {
		t.Errorf("temporal down: %v, not worth a wait", err)
	}
	_, err = postgres.Open(ctx, "postgres://postgres@"+addr+"/test?sslmode=disable&connect_timeout=2")
	if err == nil || !NotUpYet(err) {
		t.Errorf("postgres down: %v, not worth a wait", err)
	}
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // free the port: nothing listens there now
	return addr
}

func TestRetry(t *testing.T) {
	down := serviceerror.NewUnavailable("connection refused")
	wrong := errors.New("bad credentials")
	for _, c := range []struct {
		name      string
		timeout   time.Duration
		failures  []error // what the tries return before they succeed
		wantCalls int
		wantErr   string
		wantWarns int
	}{
		{"up at once", time.Second, nil, 1, "", 0},
		{"up after three refusals", time.Second, []error{down, down, down}, 4, "", 3},
		{"a fault of configuration fails at once", time.Second, []error{wrong, down}, 1, "bad credentials", 0},
		{"no retries with timeout 0", 0, []error{down}, 1, "connection refused", 0},
		{"gives up after the timeout, with the cause", 50 * time.Millisecond, repeat(down, 1000), -1, "temporal not up after 50ms", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			calls := 0
			err := retry(context.Background(), "temporal", c.timeout, time.Millisecond, 5*time.Millisecond, zap.New(core), func(context.Context) error {
				calls++
				if calls <= len(c.failures) {
					return c.failures[calls-1]
				}
				return nil
			})
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			if c.wantErr != "" && c.wantCalls < 0 && !errors.Is(err, down) {
				t.Errorf("err = %v does not carry its cause", err)
			}
			if c.wantCalls >= 0 && calls != c.wantCalls {
				t.Errorf("calls = %d, want %d", calls, c.wantCalls)
			}
			warns := logs.FilterMessage("not up yet; retrying")
			if c.wantWarns >= 0 && warns.Len() != c.wantWarns {
				t.Errorf("warnings = %d, want %d", warns.Len(), c.wantWarns)
			}
			for _, w := range warns.All() {
				if w.ContextMap()["error"] != down.Error() || w.ContextMap()["dependency"] != "temporal" {
					t.Errorf("warning without its cause: %v", w.ContextMap())
				}
			}
		})
	}
}

// TestRetryStopsWithContext: a signal during the wait ends it.
func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err := retry(ctx, "database", time.Hour, time.Second, time.Second, nil, func(context.Context) error {
		return syscall.ECONNREFUSED
	})
	if err == nil || time.Since(start) > 500*time.Millisecond {
		t.Errorf("err = %v after %v, want a prompt error", err, time.Since(start))
	}
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}
