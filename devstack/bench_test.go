package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/app"
)

// BenchmarkTransfers drives b.N transfers through one dev stack (embedded
// Temporal on SQLite with WAL, embedded store, sandbox partner) at
// concurrency 20 and reports how fast they are accepted and completed.
// Compare with the embedded server's own ceiling in shared/MEASURED.md
// (about 31 trivial 3-activity workflows/s on the same persistence).
//
//	go test -run '^$' -bench Transfers -benchtime 300x ./devstack/
func BenchmarkTransfers(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	// No rate limit: the benchmark measures the stack, not the limiter.
	s, err := Start(ctx, Options{DataDir: b.TempDir(), Addr: "127.0.0.1:0", Seed: true, Limits: app.Limits{ClientRate: -1}})
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	now := time.Now().UTC()
	body := func(i int) []byte {
		j, _ := json.Marshal(map[string]any{
			"partner_id": SandboxPartnerID,
			"member":     map[string]any{"member_id": "M100001", "birth_date": "1985-04-12"},
			"consent": map[string]any{"id": fmt.Sprint("c", i), "status": "active", "scope": "regular",
				"period": map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": now.AddDate(1, 0, 0).Format(time.RFC3339)}},
		})
		return j
	}
	type result struct {
		id       string
		accepted time.Duration
		start    time.Time
	}
	results := make([]result, b.N)
	const workers = 20
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				req, _ := http.NewRequest("POST", s.URL+"/v1/transfers", bytes.NewReader(body(i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%08d", i))
				req.Header.Set("Authorization", "Bearer "+s.Tokens["submitter"])
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				data, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					b.Error(err)
					return
				}
				if res.StatusCode != http.StatusAccepted {
					b.Errorf("POST: %d", res.StatusCode)
					return
				}
				var tr struct{ ID string }
				if err := json.Unmarshal(data, &tr); err != nil {
					b.Error(err)
					return
				}
				results[i] = result{id: tr.ID, accepted: time.Since(t0), start: t0}
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	acceptedIn := time.Since(begin)
	// Wait for every transfer to complete; record when each was seen so.
	done := make([]time.Duration, b.N)
	pending := b.N
	for deadline := time.Now().Add(10 * time.Minute); pending > 0 && time.Now().Before(deadline); {
		pending = 0
		for i, r := range results {
			if done[i] > 0 {
				continue
			}
			tr, err := s.Store.GetTransfer(context.Background(), r.id)
			if err != nil {
				b.Fatal(err)
			}
			switch tr.State {
			case "complete":
				done[i] = tr.UpdatedAt.Sub(r.start)
			case "failed":
				b.Fatalf("transfer %s failed: %+v", r.id, tr.Error)
			default:
				pending++
			}
		}
		if pending > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	total := time.Since(begin)
	b.StopTimer()
	if pending > 0 {
		b.Fatalf("%d transfers not complete", pending)
	}
	accepted := make([]time.Duration, b.N)
	for i, r := range results {
		accepted[i] = r.accepted
	}
	b.ReportMetric(float64(b.N)/acceptedIn.Seconds(), "accepted/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "complete/s")
	b.ReportMetric(pct(accepted, 0.99).Seconds()*1000, "p99-accept-ms")
	b.ReportMetric(pct(done, 0.5).Seconds()*1000, "p50-complete-ms")
	b.ReportMetric(pct(done, 0.99).Seconds()*1000, "p99-complete-ms")
}

func pct(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}
