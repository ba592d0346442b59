package identity

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity/internal/synth"
)

// benchN is the size of the benchmark index: 1,000,000 unless
// P2P_IDENTITY_BENCH_N says otherwise.
func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("P2P_IDENTITY_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

var bench struct {
	once    sync.Once
	ix      *Index
	queries []synth.Query
	heap    uint64
	build   time.Duration
}

func benchIndex(b *testing.B) {
	bench.once.Do(func() {
		pop := synth.GenerateMembers(benchN(), 0.02, 1)
		members := pop.Index()
		bench.queries = pop.Queries(20_000, 3)
		pop = nil
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		bench.ix = NewIndex(members, DefaultConfig())
		bench.build = time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		bench.heap = m1.HeapAlloc - m0.HeapAlloc
		runtime.KeepAlive(members)
	})
}

// BenchmarkMatch measures single-query latency against a generated
// US-style index of benchN() members, reporting p50/p99 latency, queries/s
// on one goroutine and the index's heap.
func BenchmarkMatch(b *testing.B) {
	benchIndex(b)
	ix, qs := bench.ix, bench.queries
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		ix.Match(qs[i%len(qs)].Demographics)
		lat = append(lat, time.Since(t))
	}
	el := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/el.Seconds(), "queries/s")
	b.ReportMetric(float64(bench.heap)/(1<<20), "index-MiB")
	b.ReportMetric(float64(ix.Len()), "members")
	b.ReportMetric(bench.build.Seconds(), "build-s")
}

// BenchmarkMatchParallel is BenchmarkMatch on every core.
func BenchmarkMatchParallel(b *testing.B) {
	benchIndex(b)
	ix, qs := bench.ix, bench.queries
	var mu sync.Mutex
	next := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			ix.Match(qs[i%len(qs)].Demographics)
		}
	})
}
