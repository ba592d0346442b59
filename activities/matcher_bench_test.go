package activities

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/postgres"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

// benchStores opens two handles on one store, as two processes would:
// PostgreSQL when P2P_TEST_DATABASE_URL is set, else one SQLite file.
func benchStores(b *testing.B) (writer, reader store.Store, engine string) {
	ctx := context.Background()
	if os.Getenv(pgtest.EnvURL) != "" {
		u := pgtest.Schema(b)
		if err := postgres.Migrate(ctx, u); err != nil {
			b.Fatal(err)
		}
		w, err := postgres.Open(ctx, u)
		if err != nil {
			b.Fatal(err)
		}
		r, err := postgres.Open(ctx, u)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = w.Close(); _ = r.Close() })
		return w, r, "postgres"
	}
	path := filepath.Join(b.TempDir(), "p2p.db")
	w, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	r, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close(); _ = r.Close() })
	return w, r, "sqlite"
}

var benchGiven = []string{"James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
	"William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen"}

// benchMember is the i-th generated member: a unique family name, a
// birth date spread over 70 years and an address of its own.
func benchMember(prefix string, i int) member.Record {
	d := time.Date(1940, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, (i*7919)%25550)
	return member.Record{ID: fmt.Sprintf("%s%07d", prefix, i), Given: benchGiven[i%len(benchGiven)], Family: "Fam" + strconv.Itoa(i*31+7),
		BirthDate: d.Format(time.DateOnly), Sex: []string{"F", "M"}[i%2],
		Street: strconv.Itoa(1+i%997) + " Elm Street", City: "Springfield", State: "IL", PostalCode: fmt.Sprintf("%05d", 60000+i%2000)}
}

// BenchmarkStaleness measures how long a member write takes to reach
// another process's decisions: one store handle writes a new member, and
// at once a matcher over another handle (another process's index) is
// asked for it, while a background writer updates members at a steady
// rate. It reports the time from the write's commit to a decision that
// names the member (p50/p99), and how many decisions missed it (must be
// 0). P2P_STALENESS_MEMBERS sizes the index (default 20,000) and
// P2P_STALENESS_WRITES_PER_S the background load (default 100).
func BenchmarkStaleness(b *testing.B) {
	ctx := context.Background()
	n := envInt("P2P_STALENESS_MEMBERS", 20_000)
	rate := envInt("P2P_STALENESS_WRITES_PER_S", 100)
	w, r, engine := benchStores(b)
	seed := make([]member.Record, n)
	for i := range seed {
		seed[i] = benchMember("S", i)
	}
	if err := w.UpsertMembers(ctx, seed); err != nil {
		b.Fatal(err)
	}
	m := &IndexMatcher{Store: r, Config: identity.DefaultConfig()}
	if err := m.Warm(ctx); err != nil {
		b.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the steady background load: members updated
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rec := seed[rng.IntN(n)]
			rec.Phone = fmt.Sprintf("555-01%02d-%04d", k%100, k%10000)
			if err := w.UpsertMembers(ctx, []member.Record{rec}); err != nil {
				b.Error(err)
				return
			}
		}
	}()

	lat := make([]time.Duration, 0, b.N)
	missed := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := benchMember("N", n+i) // a person the index does not hold yet
		if err := w.UpsertMembers(ctx, []member.Record{rec}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		d, err := m.Resolve(ctx, transfer.Demographics{Given: rec.Given, Family: rec.Family, BirthDate: rec.BirthDate, Sex: rec.Sex,
			Address: transfer.Address{Street: rec.Street, City: rec.City, State: rec.State, PostalCode: rec.PostalCode}})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(committed))
		if d.Outcome != identity.OutcomeMatch || d.MemberID != rec.ID {
			if missed == 0 {
				b.Logf("first miss: %s %s %s", d.Outcome, d.MemberID, d.Rationale.Summary)
			}
			missed++
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-write-to-decision-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-write-to-decision-ms")
	b.ReportMetric(float64(missed), "missed")
	b.Logf("%s, %d members, background %d writes/s: %d decisions, %d missed the write", engine, n, rate, len(lat), missed)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkLoadIndex measures a process's start: the whole index read
// from the store and built (IndexMatcher.Warm), over P2P_LOAD_MEMBERS
// generated members (default 100,000), on PostgreSQL when
// P2P_TEST_DATABASE_URL is set. It reports the load time and rate.
func BenchmarkLoadIndex(b *testing.B) {
	ctx := context.Background()
	n := envInt("P2P_LOAD_MEMBERS", 100_000)
	w, r, engine := benchStores(b)
	const chunk = 50_000
	for start := 0; start < n; start += chunk {
		batch := make([]member.Record, 0, chunk)
		for i := start; i < min(start+chunk, n); i++ {
			batch = append(batch, benchMember("L", i))
		}
		if err := w.UpsertMembers(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var took time.Duration
	for range b.N {
		m := &IndexMatcher{Store: r, Config: identity.DefaultConfig()}
		start := time.Now()
		if err := m.Warm(ctx); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "load-s")
	b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "members/s")
	b.Logf("%s, %d members", engine, n)
}
