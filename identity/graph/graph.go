// Package graph is the identity graph: append-only, time-bounded links
// between an external identity (a partner and its reference for the member)
// and our member, each recording who or what made it (a rule, a score, a
// reviewer) and its provenance; and the memory of reviewers' decisions, so
// that the same presentation is not reviewed twice.
package graph

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
// is a keyed digest (see Presentation).
type Provenance struct {
	TransferID   string `json:"transfer_id,omitempty"`
	Presentation string `json:"presentation,omitempty"` // Presentation digest of the demographics
	Note         string `json:"note,omitempty"`
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
	Partner      string    `json:"partner"`
	Presentation string    `json:"presentation"`        // Presentation digest
	Decision     string    `json:"decision"`            // transfer.DecisionApprove or transfer.DecisionReject
	MemberID     string    `json:"member_id,omitempty"` // the member chosen, for approve
	Reviewer     string    `json:"reviewer"`
	At           time.Time `json:"at"`
	TransferID   string    `json:"transfer_id,omitempty"` // the transfer it was decided in
}

// Store keeps the graph. Implementations append; they never update or
// delete.
type Store interface {
	AppendLink(ctx context.Context, l Link) (Link, error) // assigns Seq
	Links(ctx context.Context, partner, externalRef string) ([]Link, error)
	AppendReview(ctx context.Context, r Review) error
	Reviews(ctx context.Context, partner, presentation string) ([]Review, error)
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
	l := Link{Partner: partner, ExternalRef: externalRef, MemberID: memberID, ValidFrom: g.now(), MadeBy: by, Provenance: prov}
	if err := l.Check(); err != nil {
		return Link{}, err
	}
	hist, err := g.Store.Links(ctx, partner, externalRef)
	if err != nil {
		return Link{}, err
	}
	rows, cur := Supersede(hist, l)
	if rows == nil {
		return cur, nil
	}
	for _, r := range rows {
		if l, err = g.Store.AppendLink(ctx, r); err != nil {
			return Link{}, err
		}
	}
	return l, nil
}

// Check reports whether l names an external identity and a member.
func (l Link) Check() error {
	if l.Partner == "" || l.ExternalRef == "" || l.MemberID == "" {
		return ErrInvalid
	}
	return nil
}

// Supersede is how the new link l enters the history of its external
// identity (all its records, oldest first): the records to append, in
// order (an end record for the current link if it is to another member,
// then l), or none when the current link is already to l's member, which
// it returns. The current link is the newest one not ended; l never starts
// before it (clocks of two writers may disagree), so its ValidFrom is
// moved up to the current link's if need be. Stores that append a link
// inside a transaction of their own use it so that they keep the same
// rules as Graph.Link.
func Supersede(history []Link, l Link) (rows []Link, current Link) {
	cur, ok := currentAt(history, time.Unix(1<<62, 0))
	switch {
	case ok && cur.MemberID == l.MemberID:
		return nil, cur
	case ok:
		if l.ValidFrom.Before(cur.ValidFrom) {
			l.ValidFrom = cur.ValidFrom
		}
		rows = append(rows, Link{Partner: l.Partner, ExternalRef: l.ExternalRef, MemberID: cur.MemberID,
			ValidFrom: cur.ValidFrom, ValidTo: l.ValidFrom, MadeBy: l.MadeBy, Provenance: l.Provenance, Ends: cur.Seq})
	}
	return append(rows, l), Link{}
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
	l, ok := currentAt(links, at)
	if !ok {
		return Link{}, ErrNotFound
	}
	return l, nil
}

// currentAt is the link of a history valid at time at, with its ValidTo
// filled in if it was ended later.
func currentAt(links []Link, at time.Time) (Link, bool) {
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
	if end, ok := ended[best.Seq]; found && ok {
		best.ValidTo = end
	}
	return best, found
}

// History is every record of (partner, externalRef), oldest first.
func (g *Graph) History(ctx context.Context, partner, externalRef string) ([]Link, error) {
	return g.Store.Links(ctx, partner, externalRef)
}

// RememberReview records a reviewer's decision on a presentation.
func (g *Graph) RememberReview(ctx context.Context, partner, presentation string, d transfer.ReviewDecision) error {
	if d.Decision != transfer.DecisionApprove && d.Decision != transfer.DecisionReject {
		return transfer.ErrInvalidDecision
	}
	return g.Store.AppendReview(ctx, Review{Partner: partner, Presentation: presentation, Decision: d.Decision,
		MemberID: d.MemberID, Reviewer: d.Reviewer, At: g.now()})
}

// RecallReview is the latest reviewer decision on the same presentation,
// if any: the workflow applies it instead of asking again.
func (g *Graph) RecallReview(ctx context.Context, partner, presentation string) (Review, bool, error) {
	rs, err := g.Store.Reviews(ctx, partner, presentation)
	if err != nil || len(rs) == 0 {
		return Review{}, false, err
	}
	return rs[len(rs)-1], true, nil
}

// Presentation identifies what a partner presented: the partner and the
// normalised demographics, so that the same person keyed the same way
// (whatever the case, spacing or punctuation) is the same presentation.
// It is an HMAC-SHA256 under key, a secret kept apart from where the digest
// travels: a plain hash of a name and a birth date could be reversed by
// trying the likely ones, the keyed digest cannot without the key, so it
// can be stored, logged and put in workflow payloads.
func Presentation(key []byte, partner string, q transfer.Demographics) string {
	h := hmac.New(sha256.New, key)
	for _, s := range []string{
		partner, strings.TrimSpace(q.MemberID), normalize.Name(q.Given), normalize.Name(q.Family),
		normalize.BirthDate(q.BirthDate).String(), normalize.Sex(q.Sex), normalize.Street(q.Address.Street),
		normalize.Fold(q.Address.City), normalize.State(q.Address.State), normalize.PostalCode(q.Address.PostalCode),
		normalize.Phone(q.Phone),
	} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ExternalID is the external reference of a partner's own identifier for
// one of our members (its member number, as its $member-match answered
// it: system and value), keyed like Presentation: an HMAC-SHA256 under
// key, so that the graph can say "this partner's member X is our member"
// without holding the identifier, which is PHI. System and value are
// trimmed of spaces, otherwise taken exactly (a member number's case may
// matter, a system is a URI). A leading tag
// keeps it apart from every Presentation digest under the same key.
func ExternalID(key []byte, partner, system, value string) string {
	h := hmac.New(sha256.New, key)
	for _, s := range []string{"external-id", partner, strings.TrimSpace(system), strings.TrimSpace(value)} {
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
	k := [2]string{r.Partner, r.Presentation}
	s.reviews[k] = append(s.reviews[k], r)
	return nil
}

// Reviews returns the decisions on one presentation, oldest first.
func (s *MemoryStore) Reviews(_ context.Context, partner, presentation string) ([]Review, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Review(nil), s.reviews[[2]string{partner, presentation}]...), nil
}
