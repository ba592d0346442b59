package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// The Idempotency-Key header and its length bounds (as in openapi.yaml).
const (
	idempotencyHeader = "Idempotency-Key"
	minKeyLen         = 8
	maxKeyLen         = 255
)

// fingerprint is the SHA-256 (hex) of the canonical JSON of a decoded
// request body: the generated struct re-marshalled, so whitespace and
// member order do not matter, with times in UTC so that one instant
// written with two offsets is one request.
func fingerprint(body NewTransfer) (string, error) {
	c := body
	c.Consent.Period.Start = c.Consent.Period.Start.UTC()
	c.Consent.Period.End = utcPtr(c.Consent.Period.End)
	c.Consent.GrantedAt = utcPtr(c.Consent.GrantedAt)
	if c.DataScope != nil {
		ds := *c.DataScope
		ds.Since = utcPtr(ds.Since)
		c.DataScope = &ds
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// storedResponse answers POST /v1/transfers with the bytes of the
// idempotency record, so that the first answer and every replay are
// identical byte for byte.
type storedResponse struct {
	status   int
	body     []byte
	replayed bool
	self     string
}

// VisitCreateTransferResponse writes the stored status and body.
func (r storedResponse) VisitCreateTransferResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", r.self)
	if r.replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(r.status)
	_, err := w.Write(r.body)
	return err
}

// accept finishes the acceptance of a transfer whose idempotency record is
// pending: it starts the workflow (idempotent, so the first request, its
// concurrent twins and a recovery may all call it), builds the 202 body
// from the transfer as created and stores it. The first body stored wins
// and is returned, so every caller answers the same bytes.
func (s *Server) accept(ctx context.Context, rec store.IdempotencyRecord) (store.IdempotencyRecord, error) {
	if err := s.engine.StartTransfer(ctx, rec.TransferID); err != nil {
		return rec, &startError{err: err}
	}
	t, err := s.store.GetTransfer(ctx, rec.TransferID)
	if err != nil {
		return rec, fmt.Errorf("get accepted transfer %s: %w", rec.TransferID, err)
	}
	body, err := json.Marshal(s.transferView(asCreated(t)))
	if err != nil {
		return rec, fmt.Errorf("encode transfer %s: %w", rec.TransferID, err)
	}
	body = append(body, '\n')
	done, err := s.store.CompleteIdempotency(ctx, rec.ClientID, rec.Key, http.StatusAccepted, body)
	if err != nil {
		return rec, fmt.Errorf("complete idempotency record of %s: %w", rec.TransferID, err)
	}
	return done, nil
}

// startError is a failure to start a workflow: the record stays pending
// and a retry (or ResumePending) completes it.
type startError struct{ err error }

func (e *startError) Error() string { return "start transfer workflow: " + e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// asCreated is t as it was when created, whatever its workflow did since:
// the 202 body must not depend on when it was built.
func asCreated(t transfer.Transfer) transfer.Transfer {
	return transfer.Transfer{
		ID: t.ID, ClientID: t.ClientID, PartnerID: t.PartnerID, Direction: t.Direction, CorrelationID: t.CorrelationID,
		State: transfer.StateInitiated, CreatedAt: t.CreatedAt, UpdatedAt: t.CreatedAt,
	}
}

// resumeBatch is how many pending records ResumePending handles at a time.
const resumeBatch = 100

// servedExportClientPrefix starts the client id of the transfers that
// partners' bulk export kick-offs create on /fhir (pdex.ClientID).
const servedExportClientPrefix = "fhir:"

// abandonKickoff closes a served export whose kick-off was interrupted
// before its workflow started: the partner never got its 202, and kicks off
// again, so this transfer ends failed (with the reason on record) rather
// than being started — least of all as a push transfer.
//
// A transfer that had ended (a $member-match decided and recorded, then
// interrupted before its answer was stored) keeps its outcome: only its
// record is completed.
func (s *Server) abandonKickoff(ctx context.Context, rec store.IdempotencyRecord) error {
	now := s.now().UTC()
	tr, err := s.store.GetTransfer(ctx, rec.TransferID)
	if err != nil {
		return err
	}
	if !tr.State.Terminal() {
		// The crash may have come after the workflow started (a served
		// export, a $bulk-member-match batch) and before the 202 was
		// stored: the workflow carries on and the transfer must not be
		// closed under it.
		started, err := s.engine.Started(ctx, rec.TransferID)
		if err != nil {
			return err
		}
		if started {
			_, err = s.store.CompleteIdempotency(ctx, rec.ClientID, rec.Key, http.StatusAccepted, []byte(`{"id":"`+rec.TransferID+`"}`))
			s.log.Info("completed the record of an interrupted kick-off whose workflow runs", zap.String("transfer_id", rec.TransferID))
			return err
		}
		f := &transfer.ErrorInfo{Type: transfer.ErrorCancelled, Detail: "the bulk export kick-off was interrupted before it was answered; the partner kicks off again"}
		if _, err := s.store.ApplyChange(ctx, rec.TransferID, store.Change{
			Event: transfer.KickoffInterrupted().Stamped(now),
			State: transfer.StateFailed, Error: f,
		}); err != nil {
			return err
		}
	}
	_, err = s.store.CompleteIdempotency(ctx, rec.ClientID, rec.Key, http.StatusInternalServerError, []byte(`{"id":"`+rec.TransferID+`"}`))
	s.log.Warn("closed an interrupted bulk export kick-off", zap.String("transfer_id", rec.TransferID))
	return err
}

// ResumePending starts the workflows of transfers whose idempotency record
// is still pending and was created more than olderThan ago, and stores
// their answer: a crash between accepting a transfer and starting its
// workflow then loses nothing. A later retry of such a request replays the
// stored answer. It returns how many it resumed. A record that fails stays
// pending for the next call and does not hold back the ones behind it; a
// run of resumeGiveUp failures in a row ends the pass (Temporal is down:
// each start would wait its full timeout). The error joins the failures.
func (s *Server) ResumePending(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := s.now().Add(-olderThan)
	var (
		n, inARow int
		errs      []error
		after     *store.IdempotencyRecord
	)
	for {
		recs, err := s.store.PendingIdempotency(ctx, cutoff, after, resumeBatch)
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("list pending idempotency records: %w", err))...)
		}
		if len(recs) == 0 {
			return n, errors.Join(errs...)
		}
		after = &recs[len(recs)-1]
		for _, rec := range recs {
			if err := s.resumeOne(ctx, rec); err != nil {
				errs = append(errs, err)
				if inARow++; inARow >= resumeGiveUp || ctx.Err() != nil {
					return n, errors.Join(errs...)
				}
				continue
			}
			inARow = 0
			n++
		}
	}
}

// resumeGiveUp is how many records in a row ResumePending may fail to
// resume before it ends its pass.
const resumeGiveUp = 3

// resumeOne starts the workflow of one pending record, or closes a served
// export's interrupted kick-off.
func (s *Server) resumeOne(ctx context.Context, rec store.IdempotencyRecord) error {
	if strings.HasPrefix(rec.ClientID, servedExportClientPrefix) {
		if err := s.abandonKickoff(ctx, rec); err != nil {
			return fmt.Errorf("close interrupted export %s: %w", rec.TransferID, err)
		}
		return nil
	}
	if _, err := s.accept(ctx, rec); err != nil {
		return fmt.Errorf("resume transfer %s: %w", rec.TransferID, err)
	}
	s.log.Info("resumed pending transfer", zap.String("transfer_id", rec.TransferID))
	return nil
}
