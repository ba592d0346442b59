package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/api/serviceerror"
	"go.uber.org/zap"
)

// The backoff of Retry: the first wait, doubled after each failure up to
// the last.
const (
	retryFirstWait = 500 * time.Millisecond
	retryMaxWait   = 10 * time.Second
)

// Retry calls try until it succeeds, fails for a reason that waiting
// cannot mend (NotUpYet says which do not), or timeout has passed since
// the first call; between calls it waits with an exponential backoff and
// logs the failure with its cause. A process whose database or Temporal
// starts beside it (a cluster restarted, a deploy bringing all up at once)
// then waits for them instead of exiting. what names the dependency in the
// log and the error; timeout 0 is one try.
func Retry(ctx context.Context, what string, timeout time.Duration, log *zap.Logger, try func(context.Context) error) error {
	return retry(ctx, what, timeout, retryFirstWait, retryMaxWait, log, try)
}

func retry(ctx context.Context, what string, timeout, wait, maxWait time.Duration, log *zap.Logger, try func(context.Context) error) error {
	if log == nil {
		log = zap.NewNop()
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := try(ctx)
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("up", zap.String("dependency", what), zap.Int("attempts", attempt), zap.Duration("after", time.Since(start).Round(time.Millisecond)))
			}
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w", what, err)
		case !NotUpYet(err):
			return err
		}
		left := timeout - time.Since(start)
		if left <= 0 {
			if timeout <= 0 {
				return err
			}
			return fmt.Errorf("%s not up after %v (%d attempts): %w", what, timeout, attempt, err)
		}
		wait = min(wait, left)
		log.Warn("not up yet; retrying", zap.String("dependency", what), zap.Int("attempt", attempt), zap.Error(err),
			zap.Duration("retry_in", wait), zap.Duration("giving_up_in", left.Round(time.Second)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}

// NotUpYet reports whether err says that a dependency is not (yet)
// reachable or serving, which waiting may mend: a refused or reset
// connection, a name that does not resolve yet, a timeout, Temporal
// unavailable or without our namespace yet (created by whoever sets the
// cluster up), PostgreSQL starting up or out of connections. Anything
// else (bad credentials, a TLS handshake refused, a malformed URL, a
// missing file) is a fault of configuration, reported at once.
func NotUpYet(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// PostgreSQL answered: only its "not now" classes are worth a wait
		// (57P03 cannot_connect_now, 53300 too_many_connections, class 08
		// connection exceptions).
		return pg.Code == "57P03" || pg.Code == "53300" || strings.HasPrefix(pg.Code, "08")
	}
	// A TLS handshake that either side refused (an unknown CA, a name the
	// certificate lacks) reaches us as Unavailable too, its cause only in
	// the text: a fault of configuration.
	if msg := err.Error(); strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ") {
		return false
	}
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		noNamespace *serviceerror.NamespaceNotFound
		dns         *net.DNSError
		netErr      net.Error
	)
	switch {
	case errors.As(err, &unavailable), errors.As(err, &deadline), errors.As(err, &noNamespace):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &dns):
		return true
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
