package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store/postgres/pgtest"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/store/storetest"
)

// countingWriter is a ResponseWriter that keeps nothing: it counts the
// bytes and lines of the answer, so the benchmark measures the handler,
// not a buffer of its output.
type countingWriter struct {
	h      http.Header
	status int
	bytes  int64
	lines  int64
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(s int)   { w.status = s }
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.bytes += int64(len(p))
	for _, c := range p {
		if c == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

// benchAuditSize is how many events BenchmarkAuditExport seeds:
// P2P_BENCH_AUDIT_EVENTS, default one million.
func benchAuditSize(b *testing.B) int {
	if v := os.Getenv("P2P_BENCH_AUDIT_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("P2P_BENCH_AUDIT_EVENTS=%q", v)
		}
		return n
	}
	return 1_000_000
}

func benchSQLite(b *testing.B, n int) store.Store {
	path := filepath.Join(b.TempDir(), "p2p.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	})
	if err := storetest.SeedAuditSQLite(context.Background(), path, n, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		b.Fatal(err)
	}
	return st
}

func benchPostgres(b *testing.B, n int) store.Store {
	ctx := context.Background()
	dbURL := pgtest.Schema(b)
	if err := postgres.Migrate(ctx, dbURL); err != nil {
		b.Fatal(err)
	}
	st, err := postgres.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
	})
	if err := storetest.SeedAuditPostgres(ctx, dbURL, n, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		b.Fatal(err)
	}
	return st
}

// heapPeak samples the live heap every few milliseconds until stopped
// and returns the highest value seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > peak.Load() {
			peak.Store(v)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		read()
		return peak.Load()
	}
}

// BenchmarkAuditExport streams the whole audit log of a million events
// (P2P_BENCH_AUDIT_EVENTS) through the GET /v1/audit/events handler, with
// its middleware, per iteration. It reports events/s, the bytes allocated
// per event and the peak live heap during the export (flat: it does not
// grow with the log). Run with -benchtime=1x; seeding takes a while.
func BenchmarkAuditExport(b *testing.B) {
	n := benchAuditSize(b)
	backends := []struct {
		name string
		open func(*testing.B, int) store.Store
	}{{"sqlite", benchSQLite}}
	if os.Getenv("P2P_TEST_DATABASE_URL") != "" {
		backends = append(backends, struct {
			name string
			open func(*testing.B, int) store.Store
		}{"postgres", benchPostgres})
	}
	for _, be := range backends {
		for _, format := range []string{"ndjson", "fhir"} {
			b.Run(be.name+"/"+format, func(b *testing.B) {
				st := be.open(b, n)
				srv, err := NewServer(Deps{Store: st, Engine: &fakeEngine{}, Keys: fakeKeys{jwks: []byte(testJWKS)}, Auth: testAuth, Logger: zap.NewNop()})
				if err != nil {
					b.Fatal(err)
				}
				h := srv.Handler()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				stop := heapPeak()
				b.ResetTimer()
				for range b.N {
					w := &countingWriter{h: http.Header{}}
					r := httptest.NewRequest(http.MethodGet, "/v1/audit/events?format="+format, nil)
					r.Header.Set("Authorization", bearer("auditor", "", caller.AuditRead))
					h.ServeHTTP(w, r)
					if w.status != http.StatusOK || w.lines != int64(n) {
						b.Fatalf("status %d, %d lines, want %d", w.status, w.lines, n)
					}
				}
				b.StopTimer()
				peak := stop()
				runtime.ReadMemStats(&after)
				events := float64(n) * float64(b.N)
				b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/events, "B/event")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(before.HeapAlloc)/(1<<20), "start-heap-MB")
			})
		}
	}
}
