package activities

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// IndexMatcher resolves identities with the probabilistic matcher
// (identity.Index) over an in-memory copy of the member store. The copy is
// loaded once (Warm, at worker start) and reloaded in the background when
// older than MaxAge; members written since the last load are still found by
// the exact rules over the store itself.
type IndexMatcher struct {
	Store  store.Members
	Config identity.Config // zero: identity.DefaultConfig()
	MaxAge time.Duration   // 0: one minute
	Logger *zap.Logger

	mu        sync.Mutex
	ix        *identity.Index
	loadedAt  time.Time
	reloading bool
}

// pageSize is how many members one store query reads while loading.
const pageSize = 10000

// Warm loads the index now; call it before serving so that the first
// transfer does not wait for a large index to load.
func (m *IndexMatcher) Warm(ctx context.Context) error {
	ix, err := m.load(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.ix, m.loadedAt = ix, time.Now()
	m.mu.Unlock()
	return nil
}

// Resolve implements Matcher.
func (m *IndexMatcher) Resolve(ctx context.Context, q transfer.Demographics) (identity.Decision, error) {
	ix, err := m.index(ctx)
	if err != nil {
		return identity.Decision{}, err
	}
	d := ix.Match(q)
	if d.Outcome == identity.OutcomeMatch {
		return d, nil
	}
	exact, err := StoreMatcher{Store: m.Store}.Resolve(ctx, q)
	if err != nil {
		return identity.Decision{}, err
	}
	return combine(d, exact), nil
}

// combine decides between the probabilistic decision d (not a match) and
// the exact rules over the store. The exact rules win only where they add
// certainty without contradicting d: when d found nothing (the member may
// have been added after the index was loaded), or when d hesitates over a
// single candidate that the exact rules single out too (small indexes give
// weak field weights). A review between several candidates always stays a
// review: a person decides.
func combine(d, exact identity.Decision) identity.Decision {
	if exact.Outcome != identity.OutcomeMatch {
		return d
	}
	switch {
	case d.Outcome == identity.OutcomeNoMatch:
		return exact
	case d.Outcome == identity.OutcomeReview && len(d.Candidates) == 1 && d.Candidates[0] == exact.MemberID:
		return exact
	}
	return d
}

// index returns the current index, loading it if there is none and
// starting a background reload when it is stale.
func (m *IndexMatcher) index(ctx context.Context) (*identity.Index, error) {
	m.mu.Lock()
	ix, age := m.ix, time.Since(m.loadedAt)
	stale := ix != nil && age > m.maxAge() && !m.reloading
	if stale {
		m.reloading = true
	}
	m.mu.Unlock()
	if ix == nil {
		if err := m.Warm(ctx); err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.ix, nil
	}
	if stale {
		go m.reload()
	}
	return ix, nil
}

func (m *IndexMatcher) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ix, err := m.load(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloading = false
	if err != nil {
		if m.Logger != nil {
			m.Logger.Warn("reloading the identity index; keeping the previous one", zap.Error(err))
		}
		return
	}
	m.ix, m.loadedAt = ix, time.Now()
}

func (m *IndexMatcher) load(ctx context.Context) (*identity.Index, error) {
	cfg := m.Config
	if cfg == (identity.Config{}) {
		cfg = identity.DefaultConfig()
	}
	return LoadIndex(ctx, m.Store, cfg)
}

// LoadIndex builds an index over every member of st, with its model
// estimated from them.
func LoadIndex(ctx context.Context, st store.Members, cfg identity.Config) (*identity.Index, error) {
	var all []member.Record
	after := ""
	for {
		page, err := st.ListMembers(ctx, after, pageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	return identity.NewIndex(all, cfg), nil
}

func (m *IndexMatcher) maxAge() time.Duration {
	if m.MaxAge > 0 {
		return m.MaxAge
	}
	return time.Minute
}
