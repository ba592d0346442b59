package app

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// ResumeAge is how old a pending idempotency record must be before
// ResumeLoop starts its workflow. The request that created it gives up on
// its own start long before (the Temporal client bounds a start at 10 s),
// so the loop does not race a request still answering: harmless for a
// transfer, whose start is idempotent, but a served export's kick-off it
// would close failed.
const ResumeAge = 30 * time.Second

// DefaultResumeInterval is how often ResumeLoop runs: a transfer accepted
// while Temporal was down starts at most ResumeAge + this after Temporal
// is back (45 s).
const DefaultResumeInterval = 15 * time.Second

// ResumeLoop starts the workflows of transfers accepted but never started
// (ResumePending, for records older than age): at once, then every
// interval until ctx ends. A POST answered 503 because Temporal was down
// leaves such a record; so does a process killed between accepting and
// starting. Every API process runs the loop: two that resume one record at
// once both start the workflow by its id (one run; the other is reused)
// and the first answer stored is the one every caller replays.
func (a *API) ResumeLoop(ctx context.Context, interval, age time.Duration) {
	if interval <= 0 {
		interval = DefaultResumeInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		n, err := a.ResumePending(ctx, age)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Each failed pass is logged: it says why transfers wait.
			a.log.Warn("resuming pending transfers", zap.Int("resumed", n), zap.Error(err), zap.Duration("next_in", interval))
			failing = true
		case n > 0 || failing:
			a.log.Info("resumed pending transfers", zap.Int("count", n))
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
