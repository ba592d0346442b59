// Package benchkit measures p2p against bare Temporal on the same Temporal
// server, side by side in one run, so that the ratio holds on a noisy
// machine. It is the one measuring core of the embedded benchmark
// (devstack) and of the production-topology one.
//
// A Side is one thing that starts units of work and later says when each
// completed: Bare (ExecuteWorkflow of a workflow with three no-op
// activities, on its own task queue and worker) or P2P (POST
// /v1/transfers, completion read from the store). Burst starts n units at
// a concurrency and waits for them all; Compare runs bursts of both sides
// and idempotent replays, and Report turns them into rates, percentiles
// and ratios.
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Side starts units of work and says when they completed.
type Side interface {
	// Start starts one unit under key (unique in the run) and returns its
	// id, once the side has accepted it.
	Start(ctx context.Context, key string) (id string, err error)
	// Completed returns, for those of ids that have completed, when they
	// did (as the side recorded it, so how often it is asked does not
	// matter). A unit that can no longer complete is an error.
	Completed(ctx context.Context, ids []string) (map[string]time.Time, error)
}

// BurstResult is what one burst measured.
type BurstResult struct {
	N int
	// Start holds each Start call's latency; StartElapsed runs from the
	// first call to the last answer.
	Start        Sample
	StartElapsed time.Duration
	// Complete holds each unit's time from its Start call to its
	// completion; CompleteElapsed runs from the first Start call to the
	// last completion.
	Complete        Sample
	CompleteElapsed time.Duration
	// Keys are the keys started, in order.
	Keys []string
	// CPU is the CPU time the burst cost, when measured (Options.CPU).
	CPU time.Duration
}

// CPUPerUnit is the CPU time a unit cost, start to completion.
func (r BurstResult) CPUPerUnit() time.Duration {
	if r.N == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.N)
}

// StartRate is units accepted per second.
func (r BurstResult) StartRate() float64 { return rate(r.N, r.StartElapsed) }

// CompleteRate is units completed per second, end to end.
func (r BurstResult) CompleteRate() float64 { return rate(r.N, r.CompleteElapsed) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// pollEvery is how often a burst asks which units completed. Completion
// times come from the side, so this only bounds how late the burst
// notices; a slower poll loads the stack less (p2p's side pages through
// the store's complete transfers).
const pollEvery = time.Second

// Burst starts n units on side, conc at a time, under keys prefix-000000,
// prefix-000001, ..., then waits (up to timeout) until every one has
// completed. The first error ends it.
func Burst(ctx context.Context, side Side, prefix string, n, conc int, timeout time.Duration) (BurstResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := BurstResult{N: n, Keys: make([]string, n)}
	ids := make([]string, n)
	started := make([]time.Time, n)
	lat := make([]time.Duration, n)
	for i := range r.Keys {
		r.Keys[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	begin := time.Now()
	err := Parallel(ctx, n, conc, func(ctx context.Context, i int) error {
		t0 := time.Now()
		id, err := side.Start(ctx, r.Keys[i])
		if err != nil {
			return fmt.Errorf("start %s: %w", r.Keys[i], err)
		}
		ids[i], started[i], lat[i] = id, t0, time.Since(t0)
		return nil
	})
	if err != nil {
		return r, err
	}
	r.StartElapsed = time.Since(begin)
	r.Start = Sample(lat)

	done := make([]time.Duration, n)
	var last time.Time
	pending := make(map[string]int, n)
	for i, id := range ids {
		pending[id] = i
	}
	for len(pending) > 0 {
		asked := make([]string, 0, len(pending))
		for id := range pending {
			asked = append(asked, id)
		}
		got, err := side.Completed(ctx, asked)
		if err != nil {
			return r, err
		}
		for id, at := range got {
			i, ok := pending[id]
			if !ok {
				continue
			}
			delete(pending, id)
			done[i] = at.Sub(started[i])
			if at.After(last) {
				last = at
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%d of %d not complete: %w", len(pending), n, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
	r.Complete = Sample(done)
	r.CompleteElapsed = last.Sub(begin)
	return r, nil
}

// Parallel calls fn for 0..n-1, conc calls at a time. The first error
// cancels the rest and is returned.
func Parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	if conc < 1 {
		return errors.New("concurrency must be at least 1")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// Sample is a set of latencies.
type Sample []time.Duration

// Percentile returns the p-quantile (0 ≤ p ≤ 1) by the nearest rank
// below, or 0 for an empty sample.
func (s Sample) Percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	return c[int(float64(len(c)-1)*p)]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
