package devstack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/worker"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/sandbox"
)

// slowPartner is a sandbox partner that takes callTime per delivery and
// counts how many deliveries it holds at once.
type slowPartner struct {
	callTime time.Duration
	inner    atomic.Pointer[sandbox.Partner]
	done     chan struct{} // closed when the test ends: calls held return

	mu                sync.Mutex
	inFlight, maxSeen int
	calls             int
}

func (p *slowPartner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.inFlight++
	p.calls++
	p.maxSeen = max(p.maxSeen, p.inFlight)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()
	select {
	case <-time.After(p.callTime):
	case <-r.Context().Done():
		return
	case <-p.done:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	p.inner.Load().Handler().ServeHTTP(w, r)
}

func (p *slowPartner) stats() (calls, maxInFlight int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.maxSeen
}

// TestSlowPartnerDoesNotStarveAFastOne serves a partner that takes 10 s a
// call and the sandbox partner at once, on a worker with few activity
// slots. The slow partner's calls wait on its own task queue, within its
// own concurrency, so the fast partner's transfers complete at their
// normal speed (well under one slow call) instead of queueing behind it.
func TestSlowPartnerDoesNotStarveAFastOne(t *testing.T) {
	const (
		callTime        = 10 * time.Second
		slowConcurrency = 2
		workerSlots     = 4 // fewer than the slow transfers: a shared pool would fill up
		slowTransfers   = 8
		fastTransfers   = 5
	)
	slow := &slowPartner{callTime: callTime, done: make(chan struct{})}
	srv := httptest.NewServer(slow)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(slow.done) }) // after the stack stops: let go of the calls it left

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true,
		Partners: []connectors.Partner{{ID: "slow", PushURL: srv.URL + "/exports", Timeout: time.Minute, Concurrency: slowConcurrency}},
		Worker:   worker.Options{MaxConcurrentActivityExecutionSize: workerSlots},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	inner, err := sandbox.New(sandbox.Options{JWKSURL: s.URL + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	slow.inner.Store(inner)
	e := &e2e{t: t, s: s}

	consentEnd := time.Now().AddDate(0, 6, 0)
	for i := range slowTransfers {
		body := request(alice, consentEnd)
		body["partner_id"] = "slow"
		e.create(fmt.Sprintf("slow-partner-%04d", i), body)
	}
	// Wait until the slow partner holds calls: from now on, without
	// isolation, its transfers would occupy the worker.
	deadline := time.Now().Add(30 * time.Second)
	for calls, _ := slow.stats(); calls < slowConcurrency; calls, _ = slow.stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the slow partner received %d calls, want %d in flight", calls, slowConcurrency)
		}
		time.Sleep(20 * time.Millisecond)
	}

	type fast struct {
		id      string
		started time.Time
	}
	var fasts []fast
	for i := range fastTransfers {
		fasts = append(fasts, fast{e.create(fmt.Sprintf("fast-partner-%04d", i), request(alice, consentEnd)), time.Now()})
	}
	var slowest time.Duration
	for _, f := range fasts {
		e.await(f.id, "complete", callTime)
		took := time.Since(f.started)
		slowest = max(slowest, took)
		if took >= callTime/2 {
			t.Errorf("fast transfer %s took %v beside the slow partner: it waited for the slow partner's calls", f.id, took)
		}
	}
	calls, maxInFlight := slow.stats()
	if maxInFlight > slowConcurrency {
		t.Errorf("the slow partner held %d calls at once, want at most its concurrency %d", maxInFlight, slowConcurrency)
	}
	if n := len(s.Sandbox.Deliveries()); n != fastTransfers {
		t.Errorf("the fast partner received %d deliveries, want %d", n, fastTransfers)
	}
	t.Logf("slow partner: %d calls, at most %d at once; fast partner: %d transfers complete, the slowest in %v", calls, maxInFlight, fastTransfers, slowest)
}
