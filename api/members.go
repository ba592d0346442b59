package api

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// UpsertMember inserts or replaces one member of the index. It answers 201
// when the member did not exist before and 200 when it replaced one; two
// concurrent first writes of one member may both answer 201.
func (s *Server) UpsertMember(ctx context.Context, req UpsertMemberRequestObject) (UpsertMemberResponseObject, error) {
	if req.Body == nil {
		return nil, fieldInvalid("body", "is required")
	}
	b := *req.Body
	if b.MemberId != nil && *b.MemberId != req.MemberId {
		return nil, fieldInvalid("member_id", "must equal the member_id of the path")
	}
	rec := member.Record{
		ID: req.MemberId, Given: deref(b.Given), Family: deref(b.Family), BirthDate: b.BirthDate.String(),
		Street: deref(b.Street), City: deref(b.City), State: deref(b.State), PostalCode: deref(b.PostalCode),
		Phone: deref(b.Phone),
	}
	if b.Sex != nil {
		rec.Sex = string(*b.Sex)
	}
	if err := rec.Validate(); err != nil {
		var fe *member.FieldError
		if errors.As(err, &fe) {
			return nil, fieldInvalid(fe.Field, fe.Reason)
		}
		return nil, invalid("the member is invalid")
	}

	_, err := s.store.GetMember(ctx, rec.ID)
	created := errors.Is(err, store.ErrNotFound)
	if err != nil && !created {
		return nil, fmt.Errorf("get member: %w", err)
	}
	if err := s.store.UpsertMembers(ctx, []member.Record{rec}); err != nil {
		return nil, fmt.Errorf("upsert member: %w", err)
	}
	view := memberView(rec)
	if created {
		return UpsertMember201JSONResponse(view), nil
	}
	return UpsertMember200JSONResponse(view), nil
}

func memberView(rec member.Record) Member {
	return Member{
		MemberId: rec.ID, Given: rec.Given, Family: rec.Family, BirthDate: rec.BirthDate, Sex: rec.Sex,
		Street: rec.Street, City: rec.City, State: rec.State, PostalCode: rec.PostalCode, Phone: rec.Phone,
	}
}

// GetMember answers a member's demographics, read for a transfer: the
// read is recorded on the transfer's timeline before the member is
// answered. A caller without members:read (a reviewer) reads only the
// members the transfer names; any other is not found, as is an unknown
// member or transfer.
func (s *Server) GetMember(ctx context.Context, req GetMemberRequestObject) (GetMemberResponseObject, error) {
	tid := req.Params.TransferId
	noteTransfer(ctx, tid)
	if err := s.visible(ctx, tid); err != nil {
		return nil, err
	}
	t, err := s.store.GetTransfer(ctx, tid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the transfer")
	}
	if err != nil {
		return nil, fmt.Errorf("get transfer: %w", err)
	}
	if !principal(ctx).Has(caller.MembersRead) && !names(t, req.MemberId) {
		return nil, notFound("the member")
	}
	rec, err := s.store.GetMember(ctx, req.MemberId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("the member")
	}
	if err != nil {
		return nil, fmt.Errorf("get member: %w", err)
	}
	if err := s.recordMemberRead(ctx, t.ID, rec.ID); err != nil {
		return nil, err
	}
	return GetMember200JSONResponse(memberView(rec)), nil
}

// names reports whether transfer t names member id: among its identity
// candidates, as its runner-up, or as the member it resolved to.
func names(t transfer.Transfer, id string) bool {
	i := t.Identity
	if i == nil {
		return false
	}
	if i.MemberID == id || slices.Contains(i.Candidates, id) {
		return true
	}
	return i.Rationale != nil && i.Rationale.RunnerUp != nil && i.Rationale.RunnerUp.MemberID == id
}
