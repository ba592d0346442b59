package api

import (
	"context"
	"fmt"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// The routes whose answers show a transfer (member ids, identity and
// consent outcomes, export digests): each answer is recorded in the audit
// log as a read by the calling client, before it is sent.
const (
	routeTransfer = "GET /v1/transfers/{id}"
	routeTimeline = "GET /v1/transfers/{id}/timeline"
	routeList     = "GET /v1/transfers"
	routeManifest = "GET /v1/transfers/{id}/manifest"
	routeReview   = "POST /v1/transfers/{id}/review"
	routeMember   = "GET /v1/members/{member_id}" // a member's demographics, read for a transfer
)

// recordReads records that the calling client (and the person acting
// through it, if any) read the transfers ids through route, in one
// transaction that changes nothing of them. A read that cannot be
// recorded is not answered. The key is the request's id, so that one
// request is one read of each transfer it shows.
func (s *Server) recordReads(ctx context.Context, route string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	p, reqID := principal(ctx), requestID(ctx)
	as := make([]store.Access, len(ids))
	at := s.now()
	for i, id := range ids {
		as[i] = store.Access{TransferID: id, Event: transfer.Read(p.ClientID, p.Person, route, reqID).Stamped(at)}
	}
	if _, err := s.store.RecordAccess(ctx, as); err != nil {
		return fmt.Errorf("record read: %w", err)
	}
	return nil
}

// recordMemberRead records, on the timeline of the transfer it is read
// for, that the caller read member memberID's demographics.
func (s *Server) recordMemberRead(ctx context.Context, transferID, memberID string) error {
	p := principal(ctx)
	ev := transfer.MemberRead(p.ClientID, p.Person, routeMember, requestID(ctx), memberID).Stamped(s.now())
	if _, err := s.store.RecordAccess(ctx, []store.Access{{TransferID: transferID, Event: ev}}); err != nil {
		return fmt.Errorf("record member read: %w", err)
	}
	return nil
}

// requestID returns the id of the request ctx belongs to, or a new one
// for a call outside the HTTP stack.
func requestID(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil && info.requestID != "" {
		return info.requestID
	}
	return newRequestID()
}

// KeyToken is the keyed token of an Idempotency-Key in the audit log:
// transfer.KeyedDigest under the store's token key (store.PresentationKey).
// A key is opaque to us and might carry anything, and a plain hash of a
// guessable key could be confirmed by anyone reading the log; the keyed
// token can be checked only with the database.
func KeyToken(tokenKey []byte, idempotencyKey string) string {
	return transfer.KeyedDigest(tokenKey, idempotencyKey)
}

// tokenKey returns the store's token key, read once.
func (s *Server) tokenKey(ctx context.Context) ([]byte, error) {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	if s.token == nil {
		k, err := s.store.PresentationKey(ctx)
		if err != nil {
			return nil, err
		}
		s.token = k
	}
	return s.token, nil
}

// receivedDetail is the detail of the event that records a request
// received: who sent it, under which key (as its keyed token), with which
// ids to correlate it, and what it asked for. The member's demographics
// stay in the store.
func receivedDetail(ctx context.Context, t transfer.Transfer, tokenKey []byte, idempotencyKey string, body NewTransfer) transfer.RequestDetail {
	d := transfer.RequestDetail{
		PartnerID: t.PartnerID, ClientID: t.ClientID, IdempotencyKeyHMAC: KeyToken(tokenKey, idempotencyKey), RequestID: requestID(ctx),
		ConsentID: body.Consent.Id,
	}
	if t.CorrelationID != "" {
		d.CorrelationIDHMAC = transfer.KeyedDigest(tokenKey, t.CorrelationID)
	}
	if t.Direction == transfer.DirectionImport {
		d.Direction = t.Direction // the member's old card stays in the store
	}
	if ds := body.DataScope; ds != nil && ds.ResourceTypes != nil {
		types := make([]string, len(*ds.ResourceTypes))
		for i, rt := range *ds.ResourceTypes {
			types[i] = string(rt)
		}
		d.ResourceTypes = &types
	}
	if ds := body.DataScope; ds != nil && ds.Since != nil {
		since := ds.Since.UTC()
		d.Since = &since
	}
	return d
}
