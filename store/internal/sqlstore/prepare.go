package sqlstore

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

// This file checks and completes inputs and encodes them, before any
// transaction.

// eventKey is the idempotency key of ev: its Key, or for a state event
// without one, transfer.StateKey of its state.
func eventKey(ev transfer.Event) (string, error) {
	switch {
	case ev.Key != "":
		return ev.Key, nil
	case ev.State != "":
		return transfer.StateKey(ev.State), nil
	}
	return "", errors.New("event key is required")
}

// prepareNew checks nt and fills what it leaves to the store: the
// transfer's client, zero times (now), the first event's key and time. The
// transfer, its idempotency record and its first event share CreatedAt.
func prepareNew(nt store.NewTransfer) (store.NewTransfer, error) {
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
	tr.CreatedAt = normTime(orNow(tr.CreatedAt, time.Now()))
	tr.UpdatedAt = normTime(orNow(tr.UpdatedAt, tr.CreatedAt))
	nt.Event.At = normTime(orNow(nt.Event.At, tr.CreatedAt))
	if nt.Event.State == "" && nt.Event.Key == "" {
		nt.Event.State = tr.State
	}
	key, err := eventKey(nt.Event)
	nt.Event.Key, nt.Event.Seq = key, 1
	return nt, err
}

// orNow is t, or now when t is zero.
func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// prepareChange checks ch and fills its event's key and time (now when
// zero): the time the projection's updated_at takes, and the default time
// of its link, review and grant.
func prepareChange(ch store.Change) (store.Change, error) {
	key, err := eventKey(ch.Event)
	if err != nil {
		return ch, err
	}
	ch.Event.Key, ch.Event.At = key, normTime(orNow(ch.Event.At, time.Now()))
	if err = prepared(&ch.Link, ch.Event.At, prepareLink); err == nil {
		if err = prepared(&ch.Review, ch.Event.At, prepareReview); err == nil {
			err = prepared(&ch.Grant, ch.Event.At, prepareGrant)
		}
	}
	return ch, err
}

// prepared replaces *p, if set, by a prepared copy.
func prepared[T any](p **T, at time.Time, prepare func(T, time.Time) (T, error)) error {
	if *p == nil {
		return nil
	}
	v, err := prepare(**p, at)
	*p = &v
	return err
}

// prepareAccess checks accesses and fills their events' times (now when
// zero). An access needs a transfer, a key and no state: it enters none.
// It returns a copy; as is not changed.
func prepareAccess(as []store.Access) ([]store.Access, error) {
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
		a.Event.At = normTime(orNow(a.Event.At, now))
		out[i] = a
	}
	return out, nil
}

// accessTransfers returns the distinct transfer ids of as, sorted: the
// order in which to lock them, the same in every transaction.
func accessTransfers(as []store.Access) []string {
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.TransferID
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// prepareLink checks an identity link record and fills its start (at, when
// zero); times are normalised.
func prepareLink(l graph.Link, at time.Time) (graph.Link, error) {
	if err := l.Check(); err != nil {
		return l, err
	}
	l.ValidFrom = normTime(orNow(l.ValidFrom, at))
	switch {
	case l.Ends != 0 && l.ValidTo.IsZero():
		return l, errors.New("an end record needs its end time")
	case l.Ends == 0 && !l.ValidTo.IsZero():
		return l, errors.New("a link ends by an end record, not by its own end time")
	case l.Ends != 0:
		l.ValidTo = normTime(l.ValidTo)
	}
	l.Seq = 0
	return l, nil
}

// prepareReview checks a remembered review decision and fills its time (at,
// when zero).
func prepareReview(r graph.Review, at time.Time) (graph.Review, error) {
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
	r.At = normTime(orNow(r.At, at))
	return r, nil
}

// prepareGrant checks a match grant and fills its time (at, when zero);
// times are normalised.
func prepareGrant(g store.MatchGrant, at time.Time) (store.MatchGrant, error) {
	switch {
	case g.Requester == "" || g.MemberID == "":
		return g, errors.New("match grant: requester and member id are required")
	case g.ConsentScope != transfer.ScopeRegular && g.ConsentScope != transfer.ScopeSensitive:
		return g, errors.New("match grant: consent scope must be regular or sensitive")
	case g.ConsentExpires.IsZero():
		return g, errors.New("match grant: the consent's expiry is required")
	}
	g.GrantedAt, g.ConsentExpires, g.Seq = normTime(orNow(g.GrantedAt, at)), normTime(g.ConsentExpires), 0
	return g, nil
}

// checkMembers refuses a batch with a member without id. The error names
// the position, never the record: it is PHI.
func checkMembers(ms []member.Record) error {
	for i := range ms {
		if strings.TrimSpace(ms[i].ID) == "" {
			return fmt.Errorf("member %d of the batch has an empty id", i+1)
		}
	}
	return nil
}

// dedupeMembers keeps the last record of each id, where it occurs: one
// statement may not touch a row twice in PostgreSQL, and the last one
// wins.
func dedupeMembers(ms []member.Record) []member.Record {
	last := make(map[string]int, len(ms))
	for i, m := range ms {
		last[m.ID] = i
	}
	out := make([]member.Record, 0, len(last))
	for i, m := range ms {
		if last[m.ID] == i {
			out = append(out, m)
		}
	}
	return out
}

// pageSize is f.Limit within 1..200; zero or less means 50.
func pageSize(f store.ListFilter) int {
	if f.Limit <= 0 {
		return 50
	}
	return min(f.Limit, 200)
}

// cursor is the position after which a page of transfers starts: the
// (created_at, id) of the last item of the page before, in the listing's
// order (created_at desc, id desc).
type cursor struct {
	CreatedAt time.Time
	ID        string
}

// cursorVersion prefixes encoded cursors so their form can change.
const cursorVersion = "1"

// encode makes c opaque for clients.
func (c cursor) encode() string {
	raw := cursorVersion + "." + strconv.FormatInt(normTime(c.CreatedAt).UnixMicro(), 10) + "." + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor parses a cursor from encode, or returns
// store.ErrBadCursor.
func decodeCursor(s string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, store.ErrBadCursor
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 || parts[0] != cursorVersion || parts[2] == "" {
		return cursor{}, store.ErrBadCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return cursor{}, store.ErrBadCursor
	}
	return cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// jsonParam is the JSON parameter of v, or NULL.
func (d Dialect) jsonParam(v any, null bool) (any, error) {
	if null {
		return nil, nil
	}
	b, err := json.Marshal(v)
	return d.json(b), err
}

// parts are the JSON parameters of a projection's identity, consent,
// export and error; nil ones are NULL.
func (d Dialect) parts(identity *transfer.IdentityOutcome, consent *transfer.ConsentOutcome, export *transfer.ExportInfo, e *transfer.ErrorInfo) ([]any, error) {
	out, errs := make([]any, 4), make([]error, 4)
	out[0], errs[0] = d.jsonParam(identity, identity == nil)
	out[1], errs[1] = d.jsonParam(consent, consent == nil)
	out[2], errs[2] = d.jsonParam(export, export == nil)
	out[3], errs[3] = d.jsonParam(e, e == nil)
	return out, errors.Join(errs...)
}

// detail is the JSON parameter of an event's detail; nil is NULL.
func (d Dialect) detail(m map[string]any) (any, error) {
	v, err := d.jsonParam(m, m == nil)
	if err != nil {
		return nil, fmt.Errorf("event detail: %w", err)
	}
	return v, nil
}

// unmarshalPart decodes an optional JSON column into *v; NULL leaves it
// nil.
func unmarshalPart[T any](b []byte, v **T) error {
	if b == nil {
		return nil
	}
	*v = new(T)
	return json.Unmarshal(b, *v)
}

// encodedChange is a prepared change with its parameters.
type encodedChange struct {
	store.Change
	params []any // of UpdateTransfer, after the transfer's id
	detail any
}

// encodeChanges prepares chs and encodes their parameters; the error names
// the change at fault by position.
func (d Dialect) encodeChanges(chs []store.Change) ([]encodedChange, error) {
	out := make([]encodedChange, len(chs))
	for i, ch := range chs {
		ch, err := prepareChange(ch)
		var parts []any
		if err == nil {
			parts, err = d.parts(ch.Identity, ch.Consent, ch.Export, ch.Error)
		}
		var state any // NULL: unchanged
		if ch.State != "" {
			state = string(ch.State)
		}
		out[i] = encodedChange{Change: ch, params: append([]any{d.time(ch.Event.At), state}, parts...)}
		if err == nil {
			out[i].detail, err = d.detail(ch.Event.Detail)
		}
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", i+1, err)
		}
	}
	return out, nil
}
