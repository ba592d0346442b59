package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// IndexMatcher resolves identities with the probabilistic matcher
// (identity.Index) over an in-memory index of the member store, kept
// current: before each decision it applies the members written since the
// last version it applied (store.MemberChanges), so a member whose write
// committed before a request is visible to that request's match, in every
// process. The whole index is built once, at start (Warm); never on a
// timer.
type IndexMatcher struct {
	Store  MemberIndex
	Config identity.Config // zero: identity.DefaultConfig()
	Logger *zap.Logger
	// By names the process in a model it stores (ModelInForce); "" is
	// "p2p".
	By string
	// Snapshot is a file the index is written to after it is built from
	// the store and when Follow ends, and read from at the next start,
	// which then applies only the members written since; "": none. It holds
	// members' demographics: keep it on storage as protected as the
	// database.
	Snapshot string

	// turn serialises loading and catching up (a one-slot semaphore, so
	// that a caller waiting for it still honours its context); decisions
	// run outside it.
	once  sync.Once
	turn  chan struct{}
	ix    *identity.Index
	model int64 // the id of the stored model ix decides with; 0: its own estimate
	// The member version of the last snapshot written or read.
	snapshotted bool
	snapVersion int64
	// The cursor of store.MemberChanges: every member up to (version,
	// after) is applied; after "" means all of version.
	version int64
	after   string
	caught  time.Time // when the last successful catch-up began
}

// MemberIndex is what the identity matcher reads: the members, their
// change feed, the model in force, and the store's presentation key.
type MemberIndex interface {
	store.Members
	store.IdentityModels
	// PresentationKey ties an index snapshot to its store.
	PresentationKey(ctx context.Context) ([]byte, error)
}

// pageSize is how many members one store query reads while loading or
// catching up.
const pageSize = 10000

// Warm loads the index now; call it before serving so that the first
// transfer does not wait for a large index to load.
func (m *IndexMatcher) Warm(ctx context.Context) error {
	if err := m.take(ctx); err != nil {
		return err
	}
	defer m.give()
	return m.load(ctx)
}

// take waits for the turn to load or catch up, or for ctx to end.
func (m *IndexMatcher) take(ctx context.Context) error {
	m.once.Do(func() { m.turn = make(chan struct{}, 1) })
	select {
	case m.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *IndexMatcher) give() { <-m.turn }

// Resolve implements Matcher.
func (m *IndexMatcher) Resolve(ctx context.Context, q transfer.Demographics) (identity.Decision, error) {
	ix, err := m.current(ctx)
	if err != nil {
		return identity.Decision{}, err
	}
	d := ix.Match(q)
	if d.Outcome == identity.OutcomeMatch && d.Rationale.Rule == identity.RuleMemberID {
		return d, nil
	}
	exact, err := StoreMatcher{Store: m.Store}.Resolve(ctx, q)
	if err != nil {
		return identity.Decision{}, err
	}
	return combine(d, exact), nil
}

// combine decides between the probabilistic decision d and the exact rules
// over the store. Neither can be stale (the index is caught up before each
// decision), but the rules are certainties the score must not overrule:
//   - member id and birth date agreeing exactly is the answer, whatever d
//     says;
//   - one member with the same name and birth date wins where d found
//     nothing, or hesitates over that member alone;
//   - several members with the same name and birth date are a review, never
//     no_match; where d is a review too, the reviewer sees both lists.
//
// Otherwise d stands: a review between several candidates stays a review,
// and a confident score is not undone by a namesake.
func combine(d, exact identity.Decision) identity.Decision {
	switch {
	case exact.Outcome == identity.OutcomeMatch && exact.Rationale.Rule == identity.RuleMemberID:
		return exact
	case exact.Outcome == identity.OutcomeMatch && d.Outcome == identity.OutcomeNoMatch:
		return exact
	case exact.Outcome == identity.OutcomeMatch && d.Outcome == identity.OutcomeReview &&
		len(d.Candidates) == 1 && d.Candidates[0] == exact.MemberID:
		return exact
	case exact.Outcome == identity.OutcomeReview && d.Outcome == identity.OutcomeNoMatch:
		return exact
	case exact.Outcome == identity.OutcomeReview && d.Outcome == identity.OutcomeReview:
		for _, c := range exact.Candidates {
			if !slices.Contains(d.Candidates, c) {
				d.Candidates = append(d.Candidates, c)
			}
		}
	}
	return d
}

// Follow keeps the index caught up between decisions, every interval
// until ctx ends, so that a decision after a large import (a million
// members) finds little left to apply within its own deadline. It is an
// optimisation only: each decision catches up anyway. Errors are logged
// and retried at the next tick.
func (m *IndexMatcher) Follow(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.stopFollowing()
			return
		case <-t.C:
		}
		if err := m.follow(ctx); err != nil && ctx.Err() == nil && m.Logger != nil {
			m.Logger.Warn("following member writes and the model into the identity index", zap.Error(err))
		}
	}
}

// stopFollowing writes a snapshot of the index as Follow leaves it, for
// the next start (when one is configured and the index changed).
func (m *IndexMatcher) stopFollowing() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.take(ctx); err != nil {
		return
	}
	defer m.give()
	m.saveSnapshot()
}

// follow catches up, and takes a model retrained since (p2p identity
// train): decisions switch to it within one Follow interval.
func (m *IndexMatcher) follow(ctx context.Context) error {
	ix, err := m.current(ctx)
	if err != nil {
		return err
	}
	if err := m.take(ctx); err != nil {
		return err
	}
	defer m.give()
	id, err := RefreshModel(ctx, m.Store, ix, m.model)
	if id != m.model && m.Logger != nil {
		m.Logger.Info("identity model changed", zap.Int64("model", id), zap.Int64("previous", m.model))
	}
	m.model = id
	return err
}

// current returns the index with every member write that committed before
// the call applied. Callers that arrive while a catch-up is running wait
// for it and run one more: it may have read before their write committed.
// A catch-up that began after a caller arrived serves that caller too.
func (m *IndexMatcher) current(ctx context.Context) (*identity.Index, error) {
	arrived := time.Now()
	if err := m.take(ctx); err != nil {
		return nil, err
	}
	defer m.give()
	if m.ix == nil {
		if err := m.load(ctx); err != nil {
			return nil, err
		}
		return m.ix, nil
	}
	if m.caught.After(arrived) {
		return m.ix, nil
	}
	start := time.Now()
	if err := m.catchUp(ctx); err != nil {
		return nil, err
	}
	m.caught = start
	return m.ix, nil
}

// load builds the index: from the snapshot when there is a usable one,
// else whole from the store (the version first, then every member), then
// applies whatever was written since. Holds the turn.
func (m *IndexMatcher) load(ctx context.Context) error {
	start := time.Now()
	cfg := m.Config
	if cfg == (identity.Config{}) {
		cfg = identity.DefaultConfig()
	}
	ix, v, model, from := m.restore(ctx, cfg)
	if ix == nil {
		var err error
		if v, err = m.Store.MemberVersion(ctx); err != nil {
			return err
		}
		if ix, err = fillIndex(ctx, m.Store, cfg); err != nil {
			return err
		}
		from = "store"
	}
	m.ix, m.version, m.after, m.model = ix, v, "", model
	if from == "snapshot" {
		m.snapshotted, m.snapVersion = true, v
	}
	if from == "store" {
		if err := m.adoptModel(ctx); err != nil {
			m.ix = nil
			return err
		}
	}
	// Members written since the snapshot, or while the pages were read,
	// carry a later version.
	if err := m.catchUp(ctx); err != nil {
		m.ix = nil
		return err
	}
	m.caught = start
	if m.Logger != nil {
		m.Logger.Info("identity index loaded", zap.String("from", from), zap.Int("members", ix.Len()),
			zap.Int64("member_version", m.version), zap.Int64("model", m.model), zap.Duration("took", time.Since(start)))
	}
	if from == "store" {
		m.saveSnapshot()
	}
	return nil
}

// adoptModel gives a freshly filled index the model in force, storing its
// own estimate first on a store without one (ModelInForce). Holds the turn.
func (m *IndexMatcher) adoptModel(ctx context.Context) error {
	id, p, err := m.Store.LatestIdentityModel(ctx)
	switch {
	case err == nil:
		if err := m.ix.SetParams(p); err != nil {
			return fmt.Errorf("identity model %d: %w", id, err)
		}
		m.model = id
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("identity model: %w", err)
	}
	m.ix.Reestimate()
	m.model, err = ModelInForce(ctx, m.Store, m.ix, cmp.Or(m.By, "p2p"))
	return err
}

// catchUp applies the members written after the cursor. Holds the turn. The
// cursor moves only past what was applied, so an error leaves it where a
// retry resumes.
func (m *IndexMatcher) catchUp(ctx context.Context) error {
	for {
		cs, err := m.Store.MemberChanges(ctx, m.version, m.after, pageSize)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if _, err := m.ix.Upsert(c.Record); err != nil {
				// The store refuses an empty id; nothing else fails.
				return err
			}
			m.version, m.after = c.Version, c.ID
		}
		if len(cs) < pageSize {
			// Every member up to the last version read is applied.
			if n := len(cs); n > 0 {
				m.version, m.after = cs[n-1].Version, ""
			}
			return nil
		}
	}
}

// LoadIndex builds an index over every member of st, with its model
// estimated from them.
func LoadIndex(ctx context.Context, st store.Members, cfg identity.Config) (*identity.Index, error) {
	ix, err := fillIndex(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	ix.Reestimate()
	return ix, nil
}

// fillIndex builds an index over every member of st, page by page, the
// next page read while the last is filed; its model is left to the caller
// (Reestimate or SetParams), which the last step of a load decides.
func fillIndex(ctx context.Context, st store.Members, cfg identity.Config) (*identity.Index, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type page struct {
		ms  []member.Record
		err error
	}
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		after := ""
		for {
			ms, err := st.ListMembers(ctx, after, pageSize)
			select {
			case pages <- page{ms, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(ms) < pageSize {
				return
			}
			after = ms[len(ms)-1].ID
		}
	}()
	ix := identity.NewIndex(nil, cfg)
	for p := range pages {
		if p.err != nil {
			return nil, p.err
		}
		if _, err := ix.AddBatch(p.ms); err != nil {
			return nil, err
		}
	}
	return ix, ctx.Err()
}
