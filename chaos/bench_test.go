//go:build chaos

package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/internal/benchkit"
	"github.com/p2p-payer/p2p/internal/prodstack"
	"github.com/p2p-payer/p2p/store/postgres"
)

// BenchmarkProdVsBare is devstack's BenchmarkVsBare on the production
// topology (make bench-prod): the same benchkit comparison against one
// Temporal server on PostgreSQL (prodstack), p2p as one `p2p api` and one
// `p2p worker` process on the PostgreSQL store, the sandbox partner in
// this process behind the (idle) fault proxy of the scenarios, and the
// bare workflow's worker in this process on its own task queue.
// P2P_BENCH_UNITS (default 500) units per side at concurrency 50;
// P2P_BENCH_ROUNDS repeats the pair. Starting the topology takes a while,
// so it runs once: -benchtime 1x. CPU is not reported: it is spread over
// processes (and PostgreSQL's) that other users of the machine share.
//
//	go test -tags chaos -run '^$' -bench ProdVsBare -benchtime 1x -timeout 60m ./chaos/
func BenchmarkProdVsBare(b *testing.B) {
	if b.N != 1 {
		b.Fatalf("b.N = %d: run with -benchtime 1x (%s sets the size)", b.N, benchkit.UnitsEnv)
	}
	units, err := benchkit.EnvUnits(500)
	if err != nil {
		b.Fatal(err)
	}
	rounds, err := benchkit.EnvRounds()
	if err != nil {
		b.Fatal(err)
	}
	// One api and one worker: a second of each adds no throughput on a
	// Temporal server this size (shared/MEASURED.md), only processes.
	r := newRun(b, "bench", runOptions{dbPrefix: "bench"})
	r.apis[1].Stop()
	r.works[1].Stop()
	api := r.apis[0]
	ctx := context.Background()
	st, err := postgres.Open(ctx, r.st.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close() }() // read-only use
	c, err := benchkit.DialBare(r.st.Temporal.Address, prodstack.Namespace)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bare, err := benchkit.StartBare(c)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Stop()
	p2p := benchkit.NewP2P(api.URL(), r.tokens[api].Token, benchkit.ExportRequest(partnerID, "M0000", birthDate(0)), st)
	b.ResetTimer()
	res, err := benchkit.Compare(ctx, bare, p2p, benchkit.Options{
		N: units, Concurrency: 50, Rounds: rounds, Warmup: min(units, 20), Prefix: "prod-" + time.Now().Format("150405.000"),
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := res.Report(b, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op") // one op is a whole comparison: meaningless
}
