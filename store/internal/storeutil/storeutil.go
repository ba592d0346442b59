// Package storeutil holds what the store implementations must do alike:
// validating and completing inputs, normalising times, encoding JSON
// columns and list cursors. Keeping it in one place keeps SQLite and
// Postgres from drifting apart in ways the contract suite might miss.
package storeutil

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Time is t as both stores keep it: UTC, truncated to the microsecond
// (Postgres would round, which no caller expects).
func Time(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// EventKey is the idempotency key of ev: its Key, or for a state event
// without one, transfer.StateKey of its state.
func EventKey(ev transfer.Event) (string, error) {
	switch {
	case ev.Key != "":
		return ev.Key, nil
	case ev.State != "":
		return transfer.StateKey(ev.State), nil
	}
	return "", errors.New("event key is required")
}

// PrepareNew checks nt and fills what it leaves to the store: the
// transfer's client, zero times (now), the first event's key and time. The
// transfer, its idempotency record and its first event share CreatedAt.
func PrepareNew(nt store.NewTransfer) (store.NewTransfer, error) {
	tr := &nt.Transfer
	switch {
	case nt.ClientID == "":
		return nt, errors.New("client id is required")
	case nt.IdempotencyKey == "":
		return nt, errors.New("idempotency key is required")
	case tr.ID == "":
		return nt, errors.New("transfer id is required")
	case tr.ClientID != "" && tr.ClientID != nt.ClientID:
		return nt, errors.New("transfer client differs from the idempotency client")
	case tr.State == "":
		return nt, errors.New("transfer state is required")
	}
	tr.ClientID = nt.ClientID
	if tr.CreatedAt.IsZero() {
		tr.CreatedAt = time.Now()
	}
	tr.CreatedAt = Time(tr.CreatedAt)
	if tr.UpdatedAt.IsZero() {
		tr.UpdatedAt = tr.CreatedAt
	}
	tr.UpdatedAt = Time(tr.UpdatedAt)
	if nt.Event.At.IsZero() {
		nt.Event.At = tr.CreatedAt
	}
	nt.Event.At = Time(nt.Event.At)
	if nt.Event.State == "" && nt.Event.Key == "" {
		nt.Event.State = tr.State
	}
	key, err := EventKey(nt.Event)
	if err != nil {
		return nt, err
	}
	nt.Event.Key = key
	nt.Event.Seq = 1
	return nt, nil
}

// PrepareChange checks ch and fills its event's key and time (now when
// zero): the time the projection's updated_at takes, and the default time
// of its link, review and grant.
func PrepareChange(ch store.Change) (store.Change, error) {
	key, err := EventKey(ch.Event)
	if err != nil {
		return ch, err
	}
	ch.Event.Key = key
	if ch.Event.At.IsZero() {
		ch.Event.At = time.Now()
	}
	ch.Event.At = Time(ch.Event.At)
	if ch.Link != nil {
		l, err := PrepareLink(*ch.Link, ch.Event.At)
		if err != nil {
			return ch, err
		}
		ch.Link = &l
	}
	if ch.Review != nil {
		r, err := PrepareReview(*ch.Review, ch.Event.At)
		if err != nil {
			return ch, err
		}
		ch.Review = &r
	}
	if ch.Grant != nil {
		g, err := PrepareGrant(*ch.Grant, ch.Event.At)
		if err != nil {
			return ch, err
		}
		ch.Grant = &g
	}
	return ch, nil
}

// PrepareChanges prepares each change as PrepareChange does; the error
// names the change at fault by position.
func PrepareChanges(chs []store.Change) ([]store.Change, error) {
	out := make([]store.Change, len(chs))
	for i, ch := range chs {
		var err error
		if out[i], err = PrepareChange(ch); err != nil {
			return nil, fmt.Errorf("change %d: %w", i+1, err)
		}
	}
	return out, nil
}

// PrepareAccess checks accesses and fills their events' times (now when
// zero). An access needs a transfer, a key and no state: it enters none.
// It returns a copy; as is not changed.
func PrepareAccess(as []store.Access) ([]store.Access, error) {
	out := make([]store.Access, len(as))
	now := time.Now()
	for i, a := range as {
		switch {
		case a.TransferID == "":
			return nil, fmt.Errorf("access %d: transfer id is required", i+1)
		case a.Event.Key == "":
			return nil, fmt.Errorf("access %d: event key is required", i+1)
		case a.Event.State != "":
			return nil, fmt.Errorf("access %d: an access enters no state", i+1)
		}
		if a.Event.At.IsZero() {
			a.Event.At = now
		}
		a.Event.At = Time(a.Event.At)
		out[i] = a
	}
	return out, nil
}

// AccessTransfers returns the distinct transfer ids of as, sorted: the
// order in which to lock them, the same in every transaction.
func AccessTransfers(as []store.Access) []string {
	seen := map[string]bool{}
	var ids []string
	for _, a := range as {
		if !seen[a.TransferID] {
			seen[a.TransferID] = true
			ids = append(ids, a.TransferID)
		}
	}
	slices.Sort(ids)
	return ids
}

// PrepareLink checks an identity link record and fills its start (at, when
// zero); times are normalised.
func PrepareLink(l graph.Link, at time.Time) (graph.Link, error) {
	if err := l.Check(); err != nil {
		return l, err
	}
	if l.ValidFrom.IsZero() {
		l.ValidFrom = at
	}
	l.ValidFrom = Time(l.ValidFrom)
	switch {
	case l.Ends != 0 && l.ValidTo.IsZero():
		return l, errors.New("an end record needs its end time")
	case l.Ends == 0 && !l.ValidTo.IsZero():
		return l, errors.New("a link ends by an end record, not by its own end time")
	case l.Ends != 0:
		l.ValidTo = Time(l.ValidTo)
	}
	l.Seq = 0
	return l, nil
}

// PrepareReview checks a remembered review decision and fills its time (at,
// when zero).
func PrepareReview(r graph.Review, at time.Time) (graph.Review, error) {
	switch {
	case r.Partner == "" || r.Presentation == "":
		return r, errors.New("review: partner and presentation are required")
	case r.Decision != transfer.DecisionApprove && r.Decision != transfer.DecisionReject:
		return r, transfer.ErrInvalidDecision
	case r.Decision == transfer.DecisionApprove && r.MemberID == "":
		return r, errors.New("review: an approval names the member")
	case r.Reviewer == "":
		return r, errors.New("review: the reviewer is required")
	}
	if r.At.IsZero() {
		r.At = at
	}
	r.At = Time(r.At)
	return r, nil
}

// CheckMembers refuses a batch with a member without id. The error names
// the position, never the record: it is PHI.
func CheckMembers(ms []member.Record) error {
	for i := range ms {
		if strings.TrimSpace(ms[i].ID) == "" {
			return fmt.Errorf("member %d of the batch has an empty id", i+1)
		}
	}
	return nil
}

// DedupeMembers keeps the last record of each id, where it occurs: one
// statement may not touch a row twice in Postgres, and the last one wins.
func DedupeMembers(ms []member.Record) []member.Record {
	last := make(map[string]int, len(ms))
	for i, m := range ms {
		last[m.ID] = i
	}
	if len(last) == len(ms) {
		return ms
	}
	out := make([]member.Record, 0, len(last))
	for i, m := range ms {
		if last[m.ID] == i {
			out = append(out, m)
		}
	}
	return out
}

// Limits of ListTransfers, from store.ListFilter.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Limit is f.Limit within 1..MaxLimit; zero or less means DefaultLimit.
func Limit(f store.ListFilter) int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

// Cursor is the position after which a page of transfers starts: the
// (created_at, id) of the last item of the page before, in the listing's
// order (created_at desc, id desc).
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// cursorVersion prefixes encoded cursors so their form can change.
const cursorVersion = "1"

// EncodeCursor makes c opaque for clients.
func EncodeCursor(c Cursor) string {
	raw := cursorVersion + "." + strconv.FormatInt(Time(c.CreatedAt).UnixMicro(), 10) + "." + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor from EncodeCursor, or returns
// store.ErrBadCursor.
func DecodeCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, store.ErrBadCursor
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 || parts[0] != cursorVersion || parts[2] == "" {
		return Cursor{}, store.ErrBadCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Cursor{}, store.ErrBadCursor
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// MarshalPart encodes an optional part of the projection; nil stays nil
// (SQL NULL).
func MarshalPart[T any](v *T) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// UnmarshalPart decodes an optional part of the projection; NULL is nil.
func UnmarshalPart[T any](b []byte) (*T, error) {
	if b == nil {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// MarshalDetail encodes an event's detail; nil stays nil (SQL NULL).
func MarshalDetail(d map[string]any) ([]byte, error) {
	if d == nil {
		return nil, nil
	}
	return json.Marshal(d)
}

// UnmarshalDetail decodes an event's detail; NULL is nil.
func UnmarshalDetail(b []byte) (map[string]any, error) {
	if b == nil {
		return nil, nil
	}
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	return d, nil
}

// PrepareGrant checks a match grant and fills its time (at, when zero);
// times are normalised.
func PrepareGrant(g store.MatchGrant, at time.Time) (store.MatchGrant, error) {
	switch {
	case g.Requester == "" || g.MemberID == "":
		return g, errors.New("match grant: requester and member id are required")
	case g.ConsentScope != transfer.ScopeRegular && g.ConsentScope != transfer.ScopeSensitive:
		return g, errors.New("match grant: consent scope must be regular or sensitive")
	case g.ConsentExpires.IsZero():
		return g, errors.New("match grant: the consent's expiry is required")
	}
	if g.GrantedAt.IsZero() {
		g.GrantedAt = at
	}
	g.GrantedAt, g.ConsentExpires, g.Seq = Time(g.GrantedAt), Time(g.ConsentExpires), 0
	return g, nil
}

// Parts are the JSON columns of a transfer's projection; nil for NULL.
type Parts struct{ Identity, Consent, Export, Error []byte }

// MarshalParts encodes the projection's JSON columns.
func MarshalParts(identity *transfer.IdentityOutcome, consent *transfer.ConsentOutcome, export *transfer.ExportInfo, e *transfer.ErrorInfo) (p Parts, err error) {
	if p.Identity, err = MarshalPart(identity); err != nil {
		return p, err
	}
	if p.Consent, err = MarshalPart(consent); err != nil {
		return p, err
	}
	if p.Export, err = MarshalPart(export); err != nil {
		return p, err
	}
	p.Error, err = MarshalPart(e)
	return p, err
}

// EncodedChange is a prepared change with its JSON columns.
type EncodedChange struct {
	Change store.Change
	Parts  Parts
	Detail []byte
	State  any // the new state, or nil for NULL
}

// EncodeChanges prepares chs (PrepareChanges) and encodes their JSON,
// before any transaction.
func EncodeChanges(chs []store.Change) ([]EncodedChange, error) {
	chs, err := PrepareChanges(chs)
	if err != nil {
		return nil, err
	}
	out := make([]EncodedChange, len(chs))
	for i, ch := range chs {
		e := EncodedChange{Change: ch}
		if e.Parts, err = MarshalParts(ch.Identity, ch.Consent, ch.Export, ch.Error); err != nil {
			return nil, fmt.Errorf("change %d: %w", i+1, err)
		}
		if e.Detail, err = MarshalDetail(ch.Event.Detail); err != nil {
			return nil, fmt.Errorf("change %d: event detail: %w", i+1, err)
		}
		if ch.State != "" {
			e.State = string(ch.State)
		}
		out[i] = e
	}
	return out, nil
}
