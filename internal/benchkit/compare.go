package benchkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Options shape a comparison.
type Options struct {
	N           int           // units per side and round
	Concurrency int           // starts in flight (0: 50)
	Rounds      int           // rounds, each a burst of each side (0: 1)
	Warmup      int           // unmeasured units per side first (0: none)
	Timeout     time.Duration // bound of one burst (0: 10 minutes)
	// Prefix makes this run's keys (workflow ids, Idempotency-Keys)
	// unique on a server and store that outlive it.
	Prefix string
	// Settle is the pause between bursts, for the last workflows to close
	// (0: 2 s).
	Settle time.Duration
	// ReplayEvery paces the replays sent while p2p's bursts run (0: 200
	// ms): often enough for a percentile, seldom enough not to load the
	// side measured (a replay is a write transaction in p2p's store).
	ReplayEvery time.Duration
	// CPU, if set, reads the CPU time used so far by whatever runs both
	// sides (ProcessCPU when this process embeds them): each burst then
	// reports its CPU per unit, a figure that other load on the machine
	// moves far less than a rate.
	CPU func() time.Duration
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 50
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.ReplayEvery <= 0 {
		o.ReplayEvery = 200 * time.Millisecond
	}
	return o
}

// The variables that size a benchmark's comparison.
const (
	RoundsEnv = "P2P_BENCH_ROUNDS" // rounds; default 1
	UnitsEnv  = "P2P_BENCH_UNITS"  // units per side and round, where b.N is not used
)

// EnvRounds returns the rounds RoundsEnv asks for: 1 when unset.
func EnvRounds() (int, error) { return envCount(RoundsEnv, 1) }

// EnvUnits returns the units UnitsEnv asks for: def when unset.
func EnvUnits(def int) (int, error) { return envCount(UnitsEnv, def) }

func envCount(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive number", name, v)
	}
	return n, nil
}

func (o Options) cpu() time.Duration {
	if o.CPU == nil {
		return 0
	}
	return o.CPU()
}

// Result is what a comparison measured.
type Result struct {
	Bare, P2P []BurstResult // one per round
	// ReplayLoaded holds replays sent one at a time while p2p's bursts
	// ran; ReplayCalm those sent one at a time after every transfer
	// completed (each transfer of the last round once).
	ReplayLoaded, ReplayCalm Sample
}

// Compare runs, against one Temporal server, o.Rounds rounds of a burst
// of bare and a burst of p2p (alternating which goes first, so that drift
// of the machine's load falls on both), replays during p2p's bursts, and
// calm replays at the end.
func Compare(ctx context.Context, bare Side, p2p *P2P, o Options) (Result, error) {
	o = o.withDefaults()
	var r Result
	var replayKeys []string
	if o.Warmup > 0 {
		if _, err := Burst(ctx, bare, o.Prefix+"-bare-warm", o.Warmup, o.Concurrency, o.Timeout); err != nil {
			return r, fmt.Errorf("bare warm-up: %w", err)
		}
		w, err := Burst(ctx, p2p, o.Prefix+"-p2p-warm", o.Warmup, o.Concurrency, o.Timeout)
		if err != nil {
			return r, fmt.Errorf("p2p warm-up: %w", err)
		}
		replayKeys = w.Keys
		time.Sleep(o.Settle)
	}
	for round := range o.Rounds {
		runBare := func() error {
			cpu0 := o.cpu()
			b, err := Burst(ctx, bare, fmt.Sprintf("%s-bare-%d", o.Prefix, round), o.N, o.Concurrency, o.Timeout)
			b.CPU = o.cpu() - cpu0
			if err != nil {
				return fmt.Errorf("bare round %d: %w", round, err)
			}
			r.Bare = append(r.Bare, b)
			return nil
		}
		runP2P := func() error {
			rctx, stop := context.WithCancel(ctx)
			loaded := make(chan replays, 1)
			go func() { loaded <- replayEvery(rctx, p2p, replayKeys, o.ReplayEvery) }()
			cpu0 := o.cpu()
			b, err := Burst(ctx, p2p, fmt.Sprintf("%s-p2p-%d", o.Prefix, round), o.N, o.Concurrency, o.Timeout)
			b.CPU = o.cpu() - cpu0
			stop()
			rp := <-loaded
			if err != nil {
				return fmt.Errorf("p2p round %d: %w", round, err)
			}
			if rp.err != nil {
				return fmt.Errorf("replays during p2p round %d: %w", round, rp.err)
			}
			r.P2P = append(r.P2P, b)
			r.ReplayLoaded = append(r.ReplayLoaded, rp.sample...)
			replayKeys = b.Keys
			return nil
		}
		order := []func() error{runBare, runP2P}
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, run := range order {
			if err := run(); err != nil {
				return r, err
			}
			time.Sleep(o.Settle)
		}
	}
	calm := replayEvery(ctx, p2p, replayKeys[:min(len(replayKeys), o.N)], 0)
	if calm.err != nil {
		return r, fmt.Errorf("calm replays: %w", calm.err)
	}
	r.ReplayCalm = calm.sample
	return r, nil
}

type replays struct {
	sample Sample
	err    error
}

// replayEvery replays keys one at a time, round and round, one every
// pace, until ctx ends; with pace 0, each key once as fast as answered.
func replayEvery(ctx context.Context, p *P2P, keys []string, pace time.Duration) replays {
	var r replays
	if len(keys) == 0 {
		return r
	}
	for i := 0; pace > 0 || i < len(keys); i++ {
		t0 := time.Now()
		if err := p.Replay(ctx, keys[i%len(keys)]); err != nil {
			if ctx.Err() != nil {
				return r // stopped mid-request: not a failure
			}
			r.err = err
			return r
		}
		r.sample = append(r.sample, time.Since(t0))
		if pace > 0 {
			select {
			case <-ctx.Done():
				return r
			case <-time.After(pace - time.Since(t0)):
			}
		}
	}
	return r
}

// Reporter takes named metrics (testing.B does).
type Reporter interface {
	ReportMetric(n float64, unit string)
}

// Report reports r's rates (per second, over every round), latencies
// (p50/p99, ms, pooled over every round) and the ratios p2p/bare, with
// prefix before each unit (e.g. "prod-"). Ratios above 1 favour p2p.
func (r Result) Report(to Reporter, prefix string) error {
	if len(r.Bare) == 0 || len(r.P2P) == 0 {
		return errors.New("nothing measured")
	}
	bare, p2p := pool(r.Bare), pool(r.P2P)
	m := func(v float64, unit string) { to.ReportMetric(v, prefix+unit) }
	m(bare.StartRate(), "bare-starts/s")
	m(p2p.StartRate(), "p2p-accepted/s")
	m(p2p.StartRate()/bare.StartRate(), "ingress/bare")
	m(bare.CompleteRate(), "bare-e2e/s")
	m(p2p.CompleteRate(), "p2p-e2e/s")
	m(p2p.CompleteRate()/bare.CompleteRate(), "e2e/bare")
	if bare.CPU > 0 && p2p.CPU > 0 {
		m(Ms(bare.CPUPerUnit()), "bare-cpu-ms/unit")
		m(Ms(p2p.CPUPerUnit()), "p2p-cpu-ms/unit")
		m(float64(p2p.CPUPerUnit())/float64(bare.CPUPerUnit()), "cpu/bare")
	}
	for _, s := range []struct {
		name string
		s    Sample
	}{
		{"bare-start", bare.Start}, {"p2p-accept", p2p.Start},
		{"bare-e2e", bare.Complete}, {"p2p-e2e", p2p.Complete},
		{"replay-loaded", r.ReplayLoaded}, {"replay-calm", r.ReplayCalm},
	} {
		m(Ms(s.s.Percentile(0.5)), s.name+"-p50-ms")
		m(Ms(s.s.Percentile(0.99)), s.name+"-p99-ms")
	}
	return nil
}

// pool adds up bursts: counts and elapsed times summed, samples joined.
func pool(rs []BurstResult) BurstResult {
	var p BurstResult
	for _, r := range rs {
		p.N += r.N
		p.StartElapsed += r.StartElapsed
		p.CompleteElapsed += r.CompleteElapsed
		p.CPU += r.CPU
		p.Start = append(p.Start, r.Start...)
		p.Complete = append(p.Complete, r.Complete...)
	}
	return p
}
