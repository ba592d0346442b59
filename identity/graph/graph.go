// Package graph is the identity graph: append-only, time-bounded links
// between an external identity (a partner and its reference for the member)
// and our member, each recording who or what made it (a rule, a score, a
// reviewer) and its provenance; and the memory of reviewers' decisions, so
// that the same presentation is not reviewed twice.
package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/transfer"
)

// Kinds of maker of a link.
const (
	MadeByRule     = "rule"     // a deterministic rule
	MadeByScore    = "score"    // the probabilistic matcher
	MadeByReviewer = "reviewer" // a person in manual review
)

// Maker says who or what made a link.
type Maker struct {
	Kind     string  `json:"kind"`               // MadeByRule, MadeByScore or MadeByReviewer
	Rule     string  `json:"rule,omitempty"`     // the rule or model that decided
	Score    float64 `json:"score,omitempty"`    // the score, for MadeByScore
	Reviewer string  `json:"reviewer,omitempty"` // who decided, for MadeByReviewer
}

// Provenance says where a link came from. It holds no PHI: the presentation
// is a fingerprint.
type Provenance struct {
	TransferID  string `json:"transfer_id,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // Fingerprint of the presentation
	Note        string `json:"note,omitempty"`
}

// Link ties an external identity to one of our members from ValidFrom
// until ValidTo (zero: still valid). Links are never changed: ending one
// appends an end record, and History shows both.
type Link struct {
	Seq         int64      `json:"seq"`
	Partner     string     `json:"partner"`
	ExternalRef string     `json:"external_ref"`
	MemberID    string     `json:"member_id"`
	ValidFrom   time.Time  `json:"valid_from"`
	ValidTo     time.Time  `json:"valid_to,omitempty"`
	MadeBy      Maker      `json:"made_by"`
	Provenance  Provenance `json:"provenance"`
	Ends        int64      `json:"ends,omitempty"` // for an end record: the Seq of the link it ends
}

// Review is a reviewer's remembered decision on one presentation.
type Review struct {
	Partner     string    `json:"partner"`
	Fingerprint string    `json:"fingerprint"`
	Decision    string    `json:"decision"`            // transfer.DecisionApprove or transfer.DecisionReject
	MemberID    string    `json:"member_id,omitempty"` // the member chosen, for approve
	Reviewer    string    `json:"reviewer"`
	At          time.Time `json:"at"`
}

// Store keeps the graph. Implementations append; they never update or
// delete.
type Store interface {
	AppendLink(ctx context.Context, l Link) (Link, error) // assigns Seq
	Links(ctx context.Context, partner, externalRef string) ([]Link, error)
	AppendReview(ctx context.Context, r Review) error
	Reviews(ctx context.Context, partner, fingerprint string) ([]Review, error)
}

// Errors of the graph.
var (
	ErrInvalid  = errors.New("graph: partner, external reference and member id are required")
	ErrNotFound = errors.New("graph: no current link")
)

// Graph is the identity graph over a Store.
type Graph struct {
	Store Store
	Now   func() time.Time // defaults to time.Now
}

func (g *Graph) now() time.Time {
	if g.Now != nil {
		return g.Now().UTC()
	}
	return time.Now().UTC()
}

// Link records that (partner, externalRef) is memberID from now on. A current
// link of the same external identity to another member is ended first; a
// current link to the same member is kept and returned.
func (g *Graph) Link(ctx context.Context, partner, externalRef, memberID string, by Maker, prov Provenance) (Link, error) {
	if partner == "" || externalRef == "" || memberID == "" {
		return Link{}, ErrInvalid
	}
	now := g.now()
	cur, err := g.Current(ctx, partner, externalRef, now)
	switch {
	case err == nil && cur.MemberID == memberID:
		return cur, nil
	case err == nil:
		if _, err := g.Store.AppendLink(ctx, Link{Partner: partner, ExternalRef: externalRef, MemberID: cur.MemberID,
			ValidFrom: cur.ValidFrom, ValidTo: now, MadeBy: by, Provenance: prov, Ends: cur.Seq}); err != nil {
			return Link{}, err
		}
	case !errors.Is(err, ErrNotFound):
		return Link{}, err
	}
	return g.Store.AppendLink(ctx, Link{Partner: partner, ExternalRef: externalRef, MemberID: memberID, ValidFrom: now, MadeBy: by, Provenance: prov})
}

// Unlink ends the current link of (partner, externalRef), recording who
// ended it and why.
func (g *Graph) Unlink(ctx context.Context, partner, externalRef string, by Maker, prov Provenance) error {
	now := g.now()
	cur, err := g.Current(ctx, partner, externalRef, now)
	if err != nil {
		return err
	}
	_, err = g.Store.AppendLink(ctx, Link{Partner: partner, ExternalRef: externalRef, MemberID: cur.MemberID,
		ValidFrom: cur.ValidFrom, ValidTo: now, MadeBy: by, Provenance: prov, Ends: cur.Seq})
	return err
}

// Current is the link of (partner, externalRef) valid at time at.
func (g *Graph) Current(ctx context.Context, partner, externalRef string, at time.Time) (Link, error) {
	links, err := g.Store.Links(ctx, partner, externalRef)
	if err != nil {
		return Link{}, err
	}
	ended := map[int64]time.Time{}
	for _, l := range links {
		if l.Ends != 0 {
			ended[l.Ends] = l.ValidTo
		}
	}
	var best Link
	found := false
	for _, l := range links {
		if l.Ends != 0 || l.ValidFrom.After(at) {
			continue
		}
		if end, ok := ended[l.Seq]; ok && !end.After(at) {
			continue
		}
		if !found || l.Seq > best.Seq {
			best, found = l, true
		}
	}
	if !found {
		return Link{}, ErrNotFound
	}
	if end, ok := ended[best.Seq]; ok {
		best.ValidTo = end
	}
	return best, nil
}

// History is every record of (partner, externalRef), oldest first.
func (g *Graph) History(ctx context.Context, partner, externalRef string) ([]Link, error) {
	return g.Store.Links(ctx, partner, externalRef)
}

// RememberReview records a reviewer's decision on a presentation.
func (g *Graph) RememberReview(ctx context.Context, partner, fingerprint string, d transfer.ReviewDecision) error {
	if d.Decision != transfer.DecisionApprove && d.Decision != transfer.DecisionReject {
		return transfer.ErrInvalidDecision
	}
	return g.Store.AppendReview(ctx, Review{Partner: partner, Fingerprint: fingerprint, Decision: d.Decision,
		MemberID: d.MemberID, Reviewer: d.Reviewer, At: g.now()})
}

// RecallReview is the latest reviewer decision on the same presentation,
// if any: the workflow applies it instead of asking again.
func (g *Graph) RecallReview(ctx context.Context, partner, fingerprint string) (Review, bool, error) {
	rs, err := g.Store.Reviews(ctx, partner, fingerprint)
	if err != nil || len(rs) == 0 {
		return Review{}, false, err
	}
	return rs[len(rs)-1], true, nil
}

// Fingerprint identifies a presentation: the partner, the normalised
// demographics and the candidates a reviewer was shown. It is a SHA-256, so
// it can be stored and logged without the PHI it was made from; a change of
// the demographics or of the candidates makes a new presentation.
func Fingerprint(partner string, q transfer.Demographics, candidates []string) string {
	h := sha256.New()
	c := append([]string(nil), candidates...)
	sort.Strings(c)
	for _, s := range []string{
		partner, strings.TrimSpace(q.MemberID), normalize.Name(q.Given), normalize.Name(q.Family),
		normalize.BirthDate(q.BirthDate).String(), normalize.Sex(q.Sex), normalize.Street(q.Address.Street),
		normalize.Fold(q.Address.City), normalize.State(q.Address.State), normalize.PostalCode(q.Address.PostalCode),
		normalize.Phone(q.Phone), strings.Join(c, ","),
	} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MemoryStore is an in-memory Store for tests and single-process use.
type MemoryStore struct {
	mu      sync.Mutex
	seq     int64
	links   map[[2]string][]Link
	reviews map[[2]string][]Review
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{links: map[[2]string][]Link{}, reviews: map[[2]string][]Review{}}
}

// AppendLink appends l with the next sequence number.
func (s *MemoryStore) AppendLink(_ context.Context, l Link) (Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	l.Seq = s.seq
	k := [2]string{l.Partner, l.ExternalRef}
	s.links[k] = append(s.links[k], l)
	return l, nil
}

// Links returns the records of one external identity, oldest first.
func (s *MemoryStore) Links(_ context.Context, partner, externalRef string) ([]Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Link(nil), s.links[[2]string{partner, externalRef}]...), nil
}

// AppendReview appends r.
func (s *MemoryStore) AppendReview(_ context.Context, r Review) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{r.Partner, r.Fingerprint}
	s.reviews[k] = append(s.reviews[k], r)
	return nil
}

// Reviews returns the decisions on one presentation, oldest first.
func (s *MemoryStore) Reviews(_ context.Context, partner, fingerprint string) ([]Review, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Review(nil), s.reviews[[2]string{partner, fingerprint}]...), nil
}
