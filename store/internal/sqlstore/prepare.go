package sqlstore

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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

// encodedNew is a prepared new transfer with its parameters.
type encodedNew struct {
	store.NewTransfer
	transfer []any // of InsertTransfer
	request  any
	// events are its first event, which changes no projection (the row
	// is new), then its changes.
	events []encodedChange
}

// encodeNew checks nt, fills what it leaves to the store (the transfer's
// client, zero times (now), the first event's key and time) and encodes
// it. The transfer, its idempotency record and its first event share
// CreatedAt.
func (d Dialect) encodeNew(nt store.NewTransfer) (encodedNew, error) {
	tr := &nt.Transfer
	switch {
	case nt.ClientID == "":
		return encodedNew{}, errors.New("client id is required")
	case nt.IdempotencyKey == "":
		return encodedNew{}, errors.New("idempotency key is required")
	case tr.ID == "":
		return encodedNew{}, errors.New("transfer id is required")
	case tr.ClientID != "" && tr.ClientID != nt.ClientID:
		return encodedNew{}, errors.New("transfer client differs from the idempotency client")
	case tr.State == "":
		return encodedNew{}, errors.New("transfer state is required")
	}
	tr.ClientID = nt.ClientID
	tr.CreatedAt = normTime(orNow(tr.CreatedAt, time.Now()))
	tr.UpdatedAt = normTime(orNow(tr.UpdatedAt, tr.CreatedAt))
	nt.Event.At = normTime(orNow(nt.Event.At, tr.CreatedAt))
	if nt.Event.State == "" && nt.Event.Key == "" {
		nt.Event.State = tr.State
	}
	key, err := eventKey(nt.Event)
	nt.Event.Key = key
	e := encodedNew{NewTransfer: nt, events: []encodedChange{{Change: store.Change{Event: nt.Event}, transferID: tr.ID}}}
	var parts []any
	if err == nil {
		e.request, err = d.jsonParam(nt.Request)
	}
	if err == nil {
		parts, err = d.parts(tr.Identity, tr.Consent, tr.Export, tr.Error)
	}
	if err == nil {
		e.events[0].detail, err = d.detail(nt.Event.Detail)
	}
	e.transfer = append([]any{tr.ID, tr.ClientID, tr.PartnerID, string(tr.Direction.OrExport()), tr.CorrelationID,
		string(tr.State), d.time(tr.CreatedAt), d.time(tr.UpdatedAt)}, parts...)
	if err == nil {
		var changes []encodedChange
		changes, err = d.encodeChanges(tr.ID, nt.Changes)
		e.events = append(e.events, changes...)
	}
	return e, err
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

// encodeAccess checks accesses, fills their events' times (now when
// zero) and encodes them as changes of no projection. An access needs a
// transfer, a key and no state: it enters none.
func (d Dialect) encodeAccess(as []store.Access) ([]encodedChange, error) {
	out := make([]encodedChange, len(as))
	now := time.Now()
	for i, a := range as {
		var err error
		switch {
		case a.TransferID == "":
			err = errors.New("transfer id is required")
		case a.Event.Key == "":
			err = errors.New("event key is required")
		case a.Event.State != "":
			err = errors.New("an access enters no state")
		}
		a.Event.At = normTime(orNow(a.Event.At, now))
		out[i] = encodedChange{Change: store.Change{Event: a.Event}, transferID: a.TransferID}
		if err == nil {
			out[i].detail, err = d.detail(a.Event.Detail)
		}
		if err != nil {
			return nil, fmt.Errorf("access %d: %w", i+1, err)
		}
	}
	return out, nil
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

// dedupeMembers refuses a batch with a member without id, and keeps the
// last record of each id, where it occurs: one statement may not touch a
// row twice in PostgreSQL, and the last one wins. The error names the
// position, never the record: it is PHI.
func dedupeMembers(ms []member.Record) ([]member.Record, error) {
	last := make(map[string]int, len(ms))
	for i, m := range ms {
		if strings.TrimSpace(m.ID) == "" {
			return nil, fmt.Errorf("member %d of the batch has an empty id", i+1)
		}
		last[m.ID] = i
	}
	out := make([]member.Record, 0, len(last))
	for i, m := range ms {
		if last[m.ID] == i {
			out = append(out, m)
		}
	}
	return out, nil
}

// cursorVersion prefixes encoded cursors so their form can change.
const cursorVersion = "1"

// encodeCursor is the opaque position after which a page of transfers
// starts: the (created_at, id) of the last item of the page before, in the
// listing's order (created_at desc, id desc).
func encodeCursor(createdAt time.Time, id string) string {
	raw := cursorVersion + "." + strconv.FormatInt(normTime(createdAt).UnixMicro(), 10) + "." + id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor parses a cursor from encodeCursor, or returns
// store.ErrBadCursor.
func decodeCursor(s string) (createdAt time.Time, id string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	version, rest, _ := strings.Cut(string(raw), ".")
	micros, id, _ := strings.Cut(rest, ".")
	us, err2 := strconv.ParseInt(micros, 10, 64)
	if err != nil || err2 != nil || version != cursorVersion || id == "" {
		return time.Time{}, "", store.ErrBadCursor
	}
	return time.UnixMicro(us).UTC(), id, nil
}

// jsonParam is the JSON parameter of v: jsonb, or TEXT in SQLite's
// STRICT tables; a nil pointer or map is NULL.
func (d Dialect) jsonParam(v any) (any, error) {
	if rv := reflect.ValueOf(v); (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Map) && rv.IsNil() {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if d.sqlite {
		return string(b), err
	}
	return b, err
}

// parts are the JSON parameters of a projection's identity, consent,
// export and error; nil ones are NULL.
func (d Dialect) parts(identity *transfer.IdentityOutcome, consent *transfer.ConsentOutcome, export *transfer.ExportInfo, e *transfer.ErrorInfo) ([]any, error) {
	out := make([]any, 4)
	for i, v := range []any{identity, consent, export, e} {
		var err error
		if out[i], err = d.jsonParam(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// detail is the JSON parameter of an event's detail; nil is NULL.
func (d Dialect) detail(m map[string]any) (any, error) {
	v, err := d.jsonParam(m)
	if err != nil {
		return nil, fmt.Errorf("event detail: %w", err)
	}
	return v, nil
}

// encodedChange is a prepared event of a transfer with its parameters.
type encodedChange struct {
	store.Change
	transferID string
	// params are UpdateTransfer's after the transfer's id; nil for an
	// event that changes no projection.
	params []any
	detail any
}

// encodeChanges prepares chs of transfer transferID and encodes their
// parameters; the error names the change at fault by position.
func (d Dialect) encodeChanges(transferID string, chs []store.Change) ([]encodedChange, error) {
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
		out[i] = encodedChange{Change: ch, transferID: transferID, params: append([]any{d.time(ch.Event.At), state}, parts...)}
		if err == nil {
			out[i].detail, err = d.detail(ch.Event.Detail)
		}
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", i+1, err)
		}
	}
	return out, nil
}
