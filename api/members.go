package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
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
	view := Member{
		MemberId: rec.ID, Given: rec.Given, Family: rec.Family, BirthDate: rec.BirthDate, Sex: rec.Sex,
		Street: rec.Street, City: rec.City, State: rec.State, PostalCode: rec.PostalCode, Phone: rec.Phone,
	}
	if created {
		return UpsertMember201JSONResponse(view), nil
	}
	return UpsertMember200JSONResponse(view), nil
}
