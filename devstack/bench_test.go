package devstack

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/internal/benchkit"
)

// benchStack starts a dev stack for a benchmark: no client rate limit and
// the sandbox partner at the registry's highest limits, so that what is
// measured is the stack and not a limiter.
func benchStack(b testing.TB) *Stack {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir: b.TempDir(), Addr: "127.0.0.1:0", Seed: true, Limits: app.Limits{ClientRate: -1},
		SandboxRateLimit: connectors.MaxRateLimit, SandboxConcurrency: connectors.MaxConcurrency,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchP2P is the benchkit side of s: export transfers of a demo member
// to the sandbox partner, posted by the dev submitter.
func benchP2P(s *Stack) *benchkit.P2P {
	return benchkit.NewP2P(s.URL, benchkit.StaticToken(s.Tokens["submitter"]),
		benchkit.ExportRequest(SandboxPartnerID, "M100001", "1985-04-12"), s.Store)
}

// BenchmarkTransfers drives b.N transfers through one dev stack (embedded
// Temporal on SQLite with WAL, embedded store, sandbox partner) at
// concurrency 20 and reports how fast they are accepted and completed.
// BenchmarkVsBare compares the same against bare Temporal.
//
//	go test -run '^$' -bench Transfers -benchtime 300x ./devstack/
func BenchmarkTransfers(b *testing.B) {
	s := benchStack(b)
	defer s.Stop()
	b.ResetTimer()
	r, err := benchkit.Burst(context.Background(), benchP2P(s), fmt.Sprint("bench-", time.Now().UnixNano()), b.N, 20, 10*time.Minute)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.StartRate(), "accepted/s")
	b.ReportMetric(r.CompleteRate(), "complete/s")
	b.ReportMetric(benchkit.Ms(r.Start.Percentile(0.99)), "p99-accept-ms")
	b.ReportMetric(benchkit.Ms(r.Complete.Percentile(0.5)), "p50-complete-ms")
	b.ReportMetric(benchkit.Ms(r.Complete.Percentile(0.99)), "p99-complete-ms")
}

// BenchmarkVsBare compares p2p with bare Temporal on one dev stack's
// embedded server, side by side: b.N ExecuteWorkflow starts of a workflow
// of three no-op activities (its own task queue, its own worker in this
// process, a plain client) against b.N POST /v1/transfers, both at
// concurrency 50, each burst until every unit completed; idempotent
// replays while p2p's burst runs and after; the process's CPU time per
// unit (everything runs in it). P2P_BENCH_ROUNDS (default 1)
// repeats the pair, alternating which goes first. It reports rates, p50
// and p99 and the ratios ingress/bare and e2e/bare (see
// docs/benchmarks.md).
//
//	go test -run '^$' -bench VsBare -benchtime 500x ./devstack/
func BenchmarkVsBare(b *testing.B) {
	rounds, err := benchkit.EnvRounds()
	if err != nil {
		b.Fatal(err)
	}
	r, err := compareOnStack(b, benchkit.Options{
		N: b.N, Concurrency: 50, Rounds: rounds, Warmup: min(b.N, 20),
		CPU: benchkit.ProcessCPU, // the stack, the bare worker and both load generators are this process
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Report(b, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op") // one op is a whole comparison: meaningless
}

// TestVsBare runs BenchmarkVsBare's comparison at a few units per side,
// so that make test notices when it breaks (it asserts no timing).
func TestVsBare(t *testing.T) {
	r, err := compareOnStack(t, benchkit.Options{N: 4, Concurrency: 4, Warmup: 2, Settle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Bare) != 1 || r.Bare[0].N != 4 || len(r.Bare[0].Complete) != 4 || len(r.P2P) != 1 || r.P2P[0].N != 4 || len(r.P2P[0].Complete) != 4 {
		t.Fatalf("measured %+v", r)
	}
	if len(r.ReplayCalm) != 4 {
		t.Errorf("%d calm replays, want one per transfer", len(r.ReplayCalm))
	}
}

// compareOnStack runs benchkit.Compare on a fresh dev stack, the bare
// side on its embedded Temporal server. A benchmark's timer runs only
// during the comparison.
func compareOnStack(tb testing.TB, o benchkit.Options) (benchkit.Result, error) {
	s := benchStack(tb)
	defer s.Stop()
	c, err := benchkit.DialBare(s.Temporal.Address(), s.Temporal.Namespace())
	if err != nil {
		return benchkit.Result{}, err
	}
	defer c.Close()
	bare, err := benchkit.StartBare(c)
	if err != nil {
		return benchkit.Result{}, err
	}
	defer bare.Stop()
	o.Prefix = fmt.Sprint("vs-", time.Now().UnixNano())
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
		defer b.StopTimer()
	}
	return benchkit.Compare(context.Background(), bare, benchP2P(s), o)
}
