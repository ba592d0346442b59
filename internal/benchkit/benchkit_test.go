package benchkit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) Sample {
		var s Sample
		for _, x := range v {
			s = append(s, time.Duration(x)*time.Millisecond)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		s    Sample
		p    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of unsorted", ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"p99 of 1000 is below the top", ms(seq(1000)...), 0.99, 990 * time.Millisecond},
		{"max", ms(4, 9, 2), 1, 9 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Percentile(tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

func TestParallel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, conc int
		failAt  int // -1: none
	}{
		{"all once", 100, 7, -1},
		{"more workers than work", 3, 50, -1},
		{"none", 0, 5, -1},
		{"an error stops it", 1000, 4, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			var inFlight, peak atomic.Int64
			seen := make([]atomic.Int32, tc.n)
			boom := errors.New("boom")
			err := Parallel(context.Background(), tc.n, tc.conc, func(ctx context.Context, i int) error {
				calls.Add(1)
				seen[i].Add(1)
				cur := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
				}
				time.Sleep(100 * time.Microsecond)
				if i == tc.failAt {
					return boom
				}
				return nil
			})
			if peak.Load() > int64(tc.conc) {
				t.Errorf("%d in flight, want at most %d", peak.Load(), tc.conc)
			}
			if tc.failAt >= 0 {
				if !errors.Is(err, boom) {
					t.Fatalf("err = %v, want boom", err)
				}
				if calls.Load() >= int64(tc.n) {
					t.Errorf("%d calls after an error, want fewer than %d", calls.Load(), tc.n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range seen {
				if seen[i].Load() != 1 {
					t.Fatalf("fn(%d) called %d times", i, seen[i].Load())
				}
			}
		})
	}
	if err := Parallel(context.Background(), 1, 0, func(context.Context, int) error { return nil }); err == nil {
		t.Error("concurrency 0 accepted")
	}
}

// fakeSide accepts every key after startDelay and completes each unit
// doneAfter after its start; units of keys in fail never complete.
type fakeSide struct {
	startDelay, doneAfter time.Duration
	fail                  map[string]bool
	mu                    sync.Mutex
	doneAt                map[string]time.Time
	asks                  int
}

func (f *fakeSide) Start(_ context.Context, key string) (string, error) {
	time.Sleep(f.startDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[key] {
		return "", errors.New("refused")
	}
	f.doneAt[key] = time.Now().Add(f.doneAfter)
	return "id-" + key, nil
}

func (f *fakeSide) Completed(_ context.Context, ids []string) (map[string]time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks++
	got := map[string]time.Time{}
	for _, id := range ids {
		if at := f.doneAt[strings.TrimPrefix(id, "id-")]; !at.After(time.Now()) {
			got[id] = at
		}
	}
	return got, nil
}

func TestBurst(t *testing.T) {
	f := &fakeSide{startDelay: 2 * time.Millisecond, doneAfter: 300 * time.Millisecond, doneAt: map[string]time.Time{}}
	r, err := Burst(context.Background(), f, "k", 40, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 40 || len(r.Start) != 40 || len(r.Complete) != 40 || len(f.doneAt) != 40 || r.Keys[39] != "k-000039" {
		t.Fatalf("N %d, %d starts, %d completions, %d started, last key %q", r.N, len(r.Start), len(r.Complete), len(f.doneAt), r.Keys[39])
	}
	// 40 starts of 2 ms, 10 at a time: about 8 ms; each completes 300 ms
	// after its start, whenever the burst noticed.
	if p := r.Start.Percentile(0); p < 2*time.Millisecond {
		t.Errorf("fastest start %v, want ≥ 2 ms", p)
	}
	for _, d := range r.Complete {
		if d < 300*time.Millisecond || d > 400*time.Millisecond {
			t.Fatalf("completion after %v, want the side's 300 ms (+ start)", d)
		}
	}
	if r.CompleteElapsed < 300*time.Millisecond || r.CompleteElapsed > r.StartElapsed+400*time.Millisecond {
		t.Errorf("CompleteElapsed %v, StartElapsed %v", r.CompleteElapsed, r.StartElapsed)
	}
	if got, want := r.CompleteRate(), 40/r.CompleteElapsed.Seconds(); got != want {
		t.Errorf("CompleteRate %v, want %v", got, want)
	}
	if f.asks < 2 {
		t.Errorf("asked %d times: completion was not polled", f.asks)
	}

	t.Run("a refused start fails it", func(t *testing.T) {
		f := &fakeSide{doneAt: map[string]time.Time{}, fail: map[string]bool{"k-000005": true}}
		if _, err := Burst(context.Background(), f, "k", 20, 4, time.Minute); err == nil || !strings.Contains(err.Error(), "k-000005") {
			t.Errorf("err = %v, want the refused key", err)
		}
	})
	t.Run("units that never complete time out", func(t *testing.T) {
		f := &fakeSide{doneAfter: time.Hour, doneAt: map[string]time.Time{}}
		if _, err := Burst(context.Background(), f, "k", 3, 3, 500*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 of 3") {
			t.Errorf("err = %v, want 3 of 3 not complete", err)
		}
	})
}

// fakeAPI answers POST /v1/transfers as p2p does: 202 with the transfer,
// and for a key seen before the stored answer with Idempotent-Replayed
// (or, with tamper, a different body).
type fakeAPI struct {
	mu      sync.Mutex
	answers map[string]string
	tamper  bool
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/v1/transfers" {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	a.mu.Lock()
	defer a.mu.Unlock()
	body, ok := a.answers[key]
	if ok {
		w.Header().Set("Idempotent-Replayed", "true")
		if a.tamper {
			body += " "
		}
	} else {
		body = fmt.Sprintf(`{"id":"tr-%s","state":"initiated"}`, key)
		a.answers[key] = body
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprint(w, body) // a failed write fails the client's read
}

// fakeTransfers lists transfers newest first, two to a page, and counts
// the pages read.
type fakeTransfers struct {
	items []transfer.Transfer // newest first
	pages int
}

func (f *fakeTransfers) ListTransfers(_ context.Context, lf store.ListFilter) (store.TransferPage, error) {
	var match []transfer.Transfer
	for _, t := range f.items {
		if t.State == lf.State {
			match = append(match, t)
		}
	}
	if lf.State == transfer.StateComplete {
		f.pages++
	}
	from := 0
	if lf.Cursor != "" {
		if _, err := fmt.Sscan(lf.Cursor, &from); err != nil {
			return store.TransferPage{}, store.ErrBadCursor
		}
	}
	to := min(from+2, len(match))
	page := store.TransferPage{Items: match[from:to]}
	if to < len(match) {
		page.NextCursor = fmt.Sprint(to)
	}
	return page, nil
}

func TestP2P(t *testing.T) {
	api := &fakeAPI{answers: map[string]string{}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	ctx := context.Background()
	now := time.Now()
	st := &fakeTransfers{}
	p := NewP2P(srv.URL, StaticToken("tok"), ExportRequest("sandbox", "M1", "1980-01-01"), st)

	id, err := p.Start(ctx, "a")
	if err != nil || id != "tr-a" {
		t.Fatalf("Start = %q, %v", id, err)
	}
	if _, err := p.Start(ctx, "a"); err == nil {
		t.Error("a replayed answer counted as a new start")
	}
	if err := p.Replay(ctx, "a"); err != nil {
		t.Errorf("Replay: %v", err)
	}
	if err := p.Replay(ctx, "never"); err == nil {
		t.Error("replay of a key never accepted passed")
	}
	api.tamper = true
	if err := p.Replay(ctx, "a"); err == nil {
		t.Error("a replay with another body passed")
	}
	api.tamper = false
	if _, err := NewP2P(srv.URL, StaticToken("wrong"), ExportRequest("sandbox", "M1", "1980-01-01"), st).Start(ctx, "b"); err == nil {
		t.Error("a 401 counted as accepted")
	}

	if _, err := p.Start(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	done := now.Add(time.Second)
	old := now.Add(-time.Hour)
	st.items = []transfer.Transfer{
		{ID: "tr-b", State: transfer.StateComplete, CreatedAt: now, UpdatedAt: done},
		{ID: "tr-x", State: transfer.StateComplete, CreatedAt: now},
		{ID: "tr-old1", State: transfer.StateComplete, CreatedAt: old},
		{ID: "tr-old2", State: transfer.StateComplete, CreatedAt: old},
		{ID: "tr-old3", State: transfer.StateComplete, CreatedAt: old},
		{ID: "tr-old4", State: transfer.StateComplete, CreatedAt: old},
	}
	got, err := p.Completed(ctx, []string{"tr-a", "tr-b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got["tr-b"].Equal(done) {
		t.Errorf("Completed = %v, want tr-b at %v", got, done)
	}
	if st.pages != 2 {
		t.Errorf("read %d pages, want 2: the scan stops past the oldest transfer asked about", st.pages)
	}
	st.items = append(st.items, transfer.Transfer{ID: "tr-a", State: transfer.StateFailed, CreatedAt: now, Error: &transfer.ErrorInfo{Type: "no_match"}})
	if _, err := p.Completed(ctx, []string{"tr-a", "tr-b"}); err == nil || !strings.Contains(err.Error(), "no_match") {
		t.Errorf("err = %v, want tr-a failed", err)
	}
}

func TestBareWorkflow(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	b := &Bare{done: map[string]time.Time{}}
	var steps []int
	env.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: bareWorkflowName})
	env.RegisterActivityWithOptions(func(ctx context.Context, step int) error {
		steps = append(steps, step)
		return b.step(ctx, step)
	}, activity.RegisterOptions{Name: bareStepName})
	const id = "bare-1"
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: id})
	env.ExecuteWorkflow(bareWorkflowName)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(steps) != "[1 2 3]" {
		t.Errorf("steps %v, want [1 2 3]", steps)
	}
	got, _ := b.Completed(context.Background(), []string{id, "other"})
	if len(got) != 1 || got[id].IsZero() {
		t.Errorf("Completed = %v, want %s only", got, id)
	}
}

type metrics map[string]float64

func (m metrics) ReportMetric(v float64, unit string) { m[unit] = v }

func TestReport(t *testing.T) {
	burst := func(n int, start, complete time.Duration) BurstResult {
		return BurstResult{N: n, StartElapsed: start, CompleteElapsed: complete, CPU: complete / 10,
			Start: Sample{time.Millisecond}, Complete: Sample{time.Second}}
	}
	r := Result{
		Bare: []BurstResult{burst(100, time.Second, 4*time.Second), burst(100, time.Second, 4*time.Second)},
		P2P:  []BurstResult{burst(100, 2*time.Second, 10*time.Second), burst(100, 2*time.Second, 6*time.Second)},
	}
	m := metrics{}
	if err := r.Report(m, "x-"); err != nil {
		t.Fatal(err)
	}
	for unit, want := range map[string]float64{
		"x-bare-starts/s": 100, "x-p2p-accepted/s": 50, "x-ingress/bare": 0.5,
		"x-bare-e2e/s": 25, "x-p2p-e2e/s": 12.5, "x-e2e/bare": 0.5,
		"x-p2p-accept-p99-ms": 1, "x-bare-e2e-p50-ms": 1000,
		"x-bare-cpu-ms/unit": 4, "x-p2p-cpu-ms/unit": 8, "x-cpu/bare": 2,
	} {
		if m[unit] != want {
			t.Errorf("%s = %v, want %v", unit, m[unit], want)
		}
	}
	delete(m, "x-cpu/bare")
	r.Bare[0].CPU, r.Bare[1].CPU = 0, 0
	if err := r.Report(m, "x-"); err != nil || m["x-cpu/bare"] != 0 { // unset: not reported
		t.Errorf("CPU reported unmeasured: %v, %v", m["x-cpu/bare"], err)
	}
	if err := (Result{}).Report(m, ""); err == nil {
		t.Error("an empty result reported")
	}
}
