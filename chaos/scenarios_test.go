//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/workflows"
)

// Every scenario ends by settling: the longest a run may take after its
// faults stop. The partner retries are on its registry's short intervals.
const settleWithin = 6 * time.Minute

// failPermanent is the only failure a scenario with a misbehaving partner
// allows: the partner's permanent 422, which the suite injects on purpose.
var failPermanent = []string{"partner_rejected"}

// TestWorkerSIGKILL: scenario 1. Workers are SIGKILLed (one at a time,
// each restarted) scale.Kills times while scale.Transfers transfers run
// and the partner misbehaves.
func TestWorkerSIGKILL(t *testing.T) {
	r := newRun(t, "1-worker-sigkill", runOptions{})
	ctx := context.Background()
	mctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	go r.misbehave(mctx, 2*time.Second, 5)

	done := make(chan struct{})
	go func() { defer close(done); r.submitAll(ctx, 0, scale.Transfers, 20, nil) }()
	kills, inFlight := 0, 0
	for k := range scale.Kills {
		time.Sleep(1500 * time.Millisecond)
		if ts, err := r.list(ctx); err == nil && slices.ContainsFunc(ts, func(t apiTransfer) bool { return !settled(t) }) {
			inFlight++
		}
		w := r.works[k%len(r.works)]
		w.Kill()
		kills++
		time.Sleep(300 * time.Millisecond)
		if err := w.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	ts := r.awaitSettled(ctx, scale.Transfers, settleWithin)
	stopFaults()
	if inFlight < kills/2 {
		t.Errorf("only %d of %d kills hit transfers in flight: the run was too short to prove anything", inFlight, kills)
	}
	r.check(ctx, ts, failPermanent, fmt.Sprintf("%d worker SIGKILLs (%d with transfers in flight)", kills, inFlight))
}

// TestTemporalRestart: scenario 2. The Temporal server is SIGKILLed a
// third of the way through the transfers and started again 5 s later;
// the apis answer 503 meanwhile and the client retries with the same key.
func TestTemporalRestart(t *testing.T) {
	r := newRun(t, "2-temporal-restart", runOptions{})
	ctx := context.Background()
	mctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	go r.misbehave(mctx, 3*time.Second, 10)

	var accepted atomic.Int64
	done := make(chan struct{})
	go func() { defer close(done); r.submitAll(ctx, 0, scale.Transfers, 10, &accepted) }()
	for accepted.Load() < int64(scale.Transfers/3) {
		time.Sleep(100 * time.Millisecond)
	}
	at := accepted.Load()
	r.st.Temporal.Kill()
	time.Sleep(5 * time.Second)
	if err := r.st.Temporal.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	ts := r.awaitSettled(ctx, scale.Transfers, settleWithin)
	stopFaults()
	r.check(ctx, ts, failPermanent, fmt.Sprintf("Temporal SIGKILLed after %d accepted, restarted 5 s later", at))
}

// TestAPIKilledBeforeStart: scenario 3. api-1 reaches Temporal through a
// fault proxy; the proxy holds every byte, so api-1 records the POSTs it
// gets (their idempotency records pending) but cannot start their
// workflows; it is SIGKILLed while those requests wait. api-2's resume
// loop (P2P_RESUME_INTERVAL, records older than app.ResumeAge) must start
// them: the client never retries them until they have settled.
func TestAPIKilledBeforeStart(t *testing.T) {
	r := newRun(t, "3-api-killed-before-start", runOptions{temporalProxy: true})
	ctx := context.Background()
	mctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	go r.misbehave(mctx, 3*time.Second, 0)

	half := scale.Transfers / 2
	orphans := max(half/4, 3)
	// Normal traffic on api-2 throughout.
	done := make(chan struct{})
	go func() { defer close(done); r.submitAllVia(ctx, r.apis[1], 0, half, 10, nil) }()

	// api-1 loses Temporal; POSTs to it are recorded, then wait in start.
	if _, err := r.temporalProxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"hold","type":"timeout","stream":"upstream","attributes":{"timeout":0}}`)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := half; i < half+orphans; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s-%d", r.name, i)
			r.note(key, "")
			if res := r.post(ctx, r.apis[0], key, body(i)); res.id != "" {
				answered.Add(1)
				r.note(key, res.id)
			}
		}()
	}
	// Each request is recorded within milliseconds; its start then hangs
	// on the held connection (the client bounds it at 10 s).
	time.Sleep(3 * time.Second)
	r.apis[0].Kill()
	wg.Wait()
	r.temporalProxy.Toxics.ResetToxics(ctx)
	if n := answered.Load(); n != 0 {
		t.Errorf("%d of the POSTs to api-1 were answered with an id before it was killed: the scenario did not hold them", n)
	}
	// The rest of the transfers through api-2, while the loop resumes.
	r.submitAllVia(ctx, r.apis[1], half+orphans, scale.Transfers, 10, nil)
	<-done
	ts := r.awaitSettled(ctx, scale.Transfers, settleWithin)
	stopFaults()
	// Now, and only now, the client asks again for the keys it got no
	// answer for: the stored answer, the transfer the resume loop started.
	resumed := 0
	for i := half; i < half+orphans; i++ {
		key := fmt.Sprintf("%s-%d", r.name, i)
		res := r.post(ctx, r.apis[1], key, body(i))
		if res.id == "" {
			t.Errorf("replay of %s: %v", key, res.err)
			continue
		}
		r.note(key, res.id)
		if slices.ContainsFunc(ts, func(t apiTransfer) bool { return t.ID == res.id && settled(t) }) {
			resumed++
		}
	}
	if resumed != orphans {
		t.Errorf("%d of %d transfers accepted by the killed api settled before the client asked again", resumed, orphans)
	}
	resumes, _ := r.apis[1].CountLines("resumed pending transfers")
	r.check(ctx, ts, failPermanent, fmt.Sprintf("api-1 SIGKILLed with %d POSTs recorded, not started; %d settled through api-2's resume loop (%d resume log lines)", orphans, resumed, resumes))
}

// TestConcurrentPosts: scenario 4. scale.Posts POSTs at once, over
// scale.Keys keys (each key's body identical), split over both apis:
// one transfer per key, every answer for a key naming it. A POST answered
// 503 (its workflow's start timed out under the burst; the transfer is
// recorded) is sent again with its key, as the answer asks; the table
// counts first answers.
func TestConcurrentPosts(t *testing.T) {
	r := newRun(t, "4-concurrent-posts", runOptions{})
	ctx := context.Background()
	ids := make([][]string, scale.Keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := map[int]int{}
	for n := range scale.Posts {
		k := n % scale.Keys
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s-%d", r.name, k)
			r.note(key, "")
			<-start
			a := r.apis[n%2]
			res := r.post(ctx, a, key, body(k))
			first := res.status
			// 503 (the start timed out under this load: the transfer is
			// recorded) is answered as the API asks: again, same key.
			for deadline := time.Now().Add(2 * time.Minute); (res.status == 503 || res.status == 0) && time.Now().Before(deadline); {
				time.Sleep(300 * time.Millisecond)
				res = r.post(ctx, a, key, body(k))
			}
			mu.Lock()
			defer mu.Unlock()
			statuses[first]++
			if res.id != "" {
				ids[k] = append(ids[k], res.id)
				r.keys[key] = res.id
			} else {
				t.Errorf("POST %s: %d %v", key, res.status, res.err)
			}
		}()
	}
	// newRun fetched the tokens: the POSTs go at once.
	close(start)
	wg.Wait()
	for k, got := range ids {
		if distinct := slices.Compact(slices.Sorted(slices.Values(got))); len(distinct) > 1 {
			t.Errorf("key %d was answered with %d different transfers: %v", k, len(distinct), distinct)
		}
	}
	ts := r.awaitSettled(ctx, scale.Keys, settleWithin)
	var codes []string
	for s, n := range statuses {
		codes = append(codes, fmt.Sprintf("%d×%d", n, s))
	}
	slices.Sort(codes)
	r.check(ctx, ts, nil, fmt.Sprintf("%d concurrent POSTs over %d keys, first answers %s (503s sent again)", scale.Posts, scale.Keys, strings.Join(codes, " ")))
}

// TestWorkflowCodeChange: scenario 5. The workers run the build before
// versionLocalSteps (tag chaos_previous: every step, RecordState included,
// a normal activity) for the first half of the transfers; once an eighth
// completed they are replaced, one by one, by the normal build (the
// store's steps as local activities), the deploy of a GetVersion change
// with transfers in flight. Both shapes must have run, and every transfer
// settle.
func TestWorkflowCodeChange(t *testing.T) {
	r := newRun(t, "5-workflow-code-change", runOptions{workerBin: previousP2P})
	ctx := context.Background()
	mctx, stopFaults := context.WithCancel(ctx)
	defer stopFaults()
	go r.misbehave(mctx, 3*time.Second, 10)

	// The first half of the transfers goes to the previous build; the
	// switch comes once an eighth completed (so that its shape surely
	// ran) with the rest of that half in flight; the second half is
	// submitted after it, to the new build.
	half := scale.Transfers / 2
	var accepted atomic.Int64
	done := make(chan struct{})
	go func() { defer close(done); r.submitAll(ctx, 0, half, 10, &accepted) }()
	completed := 0
	for completed < max(scale.Transfers/8, 1) {
		time.Sleep(200 * time.Millisecond)
		ts, err := r.list(ctx)
		if err != nil {
			continue
		}
		completed = 0
		for _, t := range ts {
			if t.State == "complete" {
				completed++
			}
		}
	}
	at := accepted.Load()
	// A rolling deploy: a new worker up, then an old one down.
	old := slices.Clone(r.works)
	for i, w := range old {
		r.startWorker(ctx, fmt.Sprintf("worker-new-%d", i+1), "")
		w.Stop()
	}
	<-done
	r.submitAll(ctx, half, scale.Transfers, 10, nil)
	ts := r.awaitSettled(ctx, scale.Transfers, settleWithin)
	stopFaults()
	previous, current, err := r.shapes(ctx, ts)
	if err != nil {
		t.Fatal(err)
	}
	if previous == 0 || current == 0 {
		t.Errorf("transfers with RecordState as an activity (previous build) %d, as a local activity (new build) %d: want both", previous, current)
	}
	r.check(ctx, ts, failPermanent, fmt.Sprintf("workers replaced after %d complete, %d accepted; sends on the old shape %d, on the new %d", completed, at, previous, current))
}

// shapes counts the transfers that ran RecordState as a normal activity
// (the previous build's shape) and those that did not (the current: it is
// a local activity, a marker), from their Temporal histories: activity
// type names are not payloads, so they are readable without the payload
// keys. A transfer counts once it scheduled its send.
func (r *run) shapes(ctx context.Context, ts []apiTransfer) (previous, current int, err error) {
	c, err := r.st.Temporal.Client()
	if err != nil {
		return 0, 0, err
	}
	for _, t := range ts {
		it := c.GetWorkflowHistory(ctx, workflows.WorkflowID(t.ID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		recorded, sent := false, false
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return 0, 0, err
			}
			switch ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() {
			case activities.NameRecordState:
				recorded = true
			case activities.NameSendExport:
				sent = true
			}
		}
		switch {
		case sent && recorded:
			previous++
		case sent:
			current++
		}
	}
	return previous, current, nil
}
