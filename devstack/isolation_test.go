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

// slowPartner is a sandbox partner that takes callTime per delivery, and
// longer until release is closed, and counts how many deliveries it holds
// at once.
type slowPartner struct {
	callTime time.Duration
	inner    atomic.Pointer[sandbox.Partner]
	release  chan struct{} // closed when the calls may return
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
	// The call time, and then until the test releases the calls.
	called := make(chan struct{})
	time.AfterFunc(p.callTime, func() { close(called) })
	if !p.hold(w, r, called) || !p.hold(w, r, p.release) {
		return
	}
	p.inner.Load().Handler().ServeHTTP(w, r)
}

// hold waits until until is closed; false if the call or the test ended
// first.
func (p *slowPartner) hold(w http.ResponseWriter, r *http.Request, until <-chan struct{}) bool {
	select {
	case <-until:
		return true
	case <-r.Context().Done():
		return false
	case <-p.done:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return false
	}
}

func (p *slowPartner) stats() (calls, inFlight, maxInFlight int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.inFlight, p.maxSeen
}

// TestSlowPartnerDoesNotStarveAFastOne serves a partner that takes 10 s a
// call and the sandbox partner at once, on a worker with few activity
// slots. The slow partner's calls wait on its own task queue, within its
// own concurrency, so the fast partner's transfers complete at their
// normal speed instead of queueing behind it.
//
// Normal speed is measured in the same run, on the same machine under the
// same load: the fast partner's transfers alone first, then beside the
// slow partner. The slow partner returns no call before the fast
// transfers are done, so that they provably did not wait for one however
// slow the machine is; without per-partner queues they never complete.
func TestSlowPartnerDoesNotStarveAFastOne(t *testing.T) {
	const (
		callTime        = 10 * time.Second
		slowConcurrency = 2
		workerSlots     = 4 // fewer than the slow transfers: a shared pool would fill up
		slowTransfers   = 8
		fastTransfers   = 5
		factor          = 3 // beside the slow partner, at most this many times slower than alone
	)
	slow := &slowPartner{callTime: callTime, release: make(chan struct{}), done: make(chan struct{})}
	srv := httptest.NewServer(slow)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(slow.done) }) // after the stack stops: let go of the calls it left

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true,
		Partners: []connectors.Partner{{ID: "slow", PushURL: srv.URL + "/exports", Timeout: 5 * time.Minute, Concurrency: slowConcurrency, AllowPrivateNetwork: true}},
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

	// fastBatch starts the fast partner's transfers at once and returns how
	// long the slowest took to complete.
	fastBatch := func(name string, within time.Duration) time.Duration {
		type fast struct {
			id      string
			started time.Time
		}
		var fasts []fast
		for i := range fastTransfers {
			fasts = append(fasts, fast{e.create(fmt.Sprintf("fast-%s-%04d", name, i), request(alice, consentEnd)), time.Now()})
		}
		var slowest time.Duration
		for _, f := range fasts {
			e.await(f.id, "complete", within)
			slowest = max(slowest, time.Since(f.started))
		}
		return slowest
	}
	e.await(e.create("fast-warm-up", request(alice, consentEnd)), "complete", time.Minute)
	alone := fastBatch("alone", time.Minute)

	for i := range slowTransfers {
		body := request(alice, consentEnd)
		body["partner_id"] = "slow"
		e.create(fmt.Sprintf("slow-partner-%04d", i), body)
	}
	// Wait until the slow partner holds calls: from now on, without
	// isolation, its transfers would occupy the worker.
	deadline := time.Now().Add(30 * time.Second)
	for calls, _, _ := slow.stats(); calls < slowConcurrency; calls, _, _ = slow.stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the slow partner received %d calls, want %d in flight", calls, slowConcurrency)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Without isolation the fast transfers wait until the test gives up.
	beside := fastBatch("beside", max(30*time.Second, 10*alone))
	calls, inFlight, maxInFlight := slow.stats()
	close(slow.release)

	if inFlight != slowConcurrency {
		t.Errorf("the slow partner held %d calls when the fast transfers completed, want %d: the test did not hold them", inFlight, slowConcurrency)
	}
	if limit := factor * max(alone, time.Second); beside > limit {
		t.Errorf("the fast partner's transfers took up to %v beside the slow partner, %v alone: more than %d times (%v)", beside, alone, factor, limit)
	}
	if maxInFlight > slowConcurrency {
		t.Errorf("the slow partner held %d calls at once, want at most its concurrency %d", maxInFlight, slowConcurrency)
	}
	if n, want := len(s.Sandbox.Deliveries()), 2*fastTransfers+1; n != want {
		t.Errorf("the fast partner received %d deliveries, want %d", n, want)
	}
	t.Logf("slow partner: %d calls, at most %d at once, none returned; fast partner: %d transfers complete in up to %v alone, %v beside the slow partner", calls, maxInFlight, fastTransfers, alone, beside)
}
