package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/store"
)

// checkpointReuse is how long GET /v1/audit/checkpoint answers the latest
// checkpoint instead of signing a new one, while the log has not grown.
const checkpointReuse = time.Minute

// auditLine is one line of GET /v1/audit/events (AuditEvent in
// openapi.yaml).
type auditLine struct {
	Position   int64          `json:"position"`
	TransferID string         `json:"transfer_id"`
	PartnerID  string         `json:"partner_id"`
	Seq        int64          `json:"seq"`
	At         time.Time      `json:"at"`
	State      string         `json:"state,omitempty"`
	Actor      string         `json:"actor"`
	Type       string         `json:"type"`
	Detail     map[string]any `json:"detail,omitempty"`
	Hash       []byte         `json:"hash"`
}

// auditStream writes the audit events of a filter as NDJSON, FHIR
// NDJSON or a FHIR Bundle while it reads them: memory stays flat however
// many there are.
type auditStream struct {
	ctx    context.Context
	store  store.AuditLog
	filter store.AuditFilter
	format GetAuditEventsParamsFormat
	now    time.Time // the Bundle's timestamp
	log    *zap.Logger
}

// Content types of GET /v1/audit/events.
const (
	contentTypeNDJSON     = "application/x-ndjson"
	contentTypeFHIRNDJSON = "application/fhir+ndjson"
	contentTypeFHIRJSON   = "application/fhir+json"
)

// VisitGetAuditEventsResponse streams the events. Once the first byte is
// sent a failure can no longer be a problem answer: it aborts the
// response, so the client sees a truncated body, never a complete one.
func (a auditStream) VisitGetAuditEventsResponse(w http.ResponseWriter) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var line func(store.AuditEvent) error
	var end string
	switch a.format {
	case GetAuditEventsParamsFormatFhir:
		w.Header().Set("Content-Type", contentTypeFHIRNDJSON)
		line = func(ae store.AuditEvent) error { return enc.Encode(fhirAuditEventOf(ae)) }
	case GetAuditEventsParamsFormatFhirBundle:
		w.Header().Set("Content-Type", contentTypeFHIRJSON)
		fmt.Fprintf(bw, `{"resourceType":"Bundle","type":"collection","timestamp":%q,"entry":[`, a.now.UTC().Format(time.RFC3339Nano))
		first := true
		line = func(ae store.AuditEvent) error {
			if !first {
				bw.WriteByte(',')
			}
			first = false
			bw.WriteString(`{"resource":`)
			if err := enc.Encode(fhirAuditEventOf(ae)); err != nil {
				return err
			}
			return bw.WriteByte('}')
		}
		end = "]}\n"
	default:
		w.Header().Set("Content-Type", contentTypeNDJSON)
		line = func(ae store.AuditEvent) error {
			e := ae.Event
			return enc.Encode(auditLine{
				Position: ae.Position, TransferID: ae.TransferID, PartnerID: ae.PartnerID,
				Seq: e.Seq, At: e.At.UTC(), State: string(e.State), Actor: e.Actor, Type: e.Type, Detail: e.Detail,
				Hash: ae.LeafHash[:],
			})
		}
	}
	w.WriteHeader(http.StatusOK)
	err := a.store.AuditEvents(a.ctx, a.filter, line)
	if err == nil {
		_, err = bw.WriteString(end)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		if a.ctx.Err() == nil {
			a.log.Error("audit events stream failed", zap.Error(err))
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}

// GetAuditEvents streams the audit log as NDJSON or FHIR.
func (s *Server) GetAuditEvents(ctx context.Context, req GetAuditEventsRequestObject) (GetAuditEventsResponseObject, error) {
	p := req.Params
	f := store.AuditFilter{}
	if p.Since != nil {
		f.Since = *p.Since
	}
	if p.Until != nil {
		f.Until = *p.Until
	}
	if p.TransferId != nil {
		f.TransferID = *p.TransferId
	}
	if p.PartnerId != nil {
		f.PartnerID = *p.PartnerId
	}
	if p.Type != nil {
		f.Type = *p.Type
	}
	format := GetAuditEventsParamsFormatNdjson
	if p.Format != nil {
		format = *p.Format
	}
	return auditStream{ctx: ctx, store: s.store, filter: f, format: format, now: s.now(), log: s.logFor(ctx)}, nil
}

// auditSigner is the signer of checkpoints, or an error when the server
// has none.
func (s *Server) auditSigner() (audit.Signer, error) {
	if s.signer == nil {
		return nil, errors.New("no audit signer configured")
	}
	return s.signer, nil
}

// checkpoint returns a checkpoint that covers the log as it is now: the
// latest one while the log has not grown and it is recent, else a new one.
func (s *Server) checkpoint(ctx context.Context, reuse time.Duration) (store.Checkpoint, error) {
	signer, err := s.auditSigner()
	if err != nil {
		return store.Checkpoint{}, err
	}
	size, err := s.store.AuditSize(ctx)
	if err != nil {
		return store.Checkpoint{}, err
	}
	now := s.now()
	latest, err := s.store.LatestCheckpoint(ctx)
	switch {
	case err == nil && latest.Size == size && now.Sub(latest.At) < reuse && latest.KID == signer.KID():
		return latest, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Checkpoint{}, err
	}
	return audit.Checkpoint(ctx, s.store, signer, now)
}

func checkpointView(c store.Checkpoint) Checkpoint {
	return Checkpoint{Size: c.Size, Root: c.Root[:], Time: c.At.UTC(), Kid: c.KID, Jws: c.JWS}
}

// GetAuditCheckpoint answers a signed tree head of the log as it is now.
func (s *Server) GetAuditCheckpoint(ctx context.Context, _ GetAuditCheckpointRequestObject) (GetAuditCheckpointResponseObject, error) {
	c, err := s.checkpoint(ctx, checkpointReuse)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	return GetAuditCheckpoint200JSONResponse(checkpointView(c)), nil
}

// GetAuditProof answers the inclusion proof of the entry at seq to the
// latest checkpoint, signing a new one if the latest does not cover seq.
func (s *Server) GetAuditProof(ctx context.Context, req GetAuditProofRequestObject) (GetAuditProofResponseObject, error) {
	seq := req.Params.Seq
	c, err := s.store.LatestCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) || (err == nil && seq >= c.Size) {
		c, err = s.checkpoint(ctx, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("audit proof: checkpoint: %w", err)
	}
	if seq >= c.Size {
		return nil, notFound("the audit event at this position")
	}
	p, err := audit.Prove(ctx, s.store, seq, c.Size)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	leaf, err := s.store.ReadAuditHashes(ctx, []int64{tlog.StoredHashIndex(0, seq)})
	if err != nil {
		return nil, fmt.Errorf("audit proof: leaf: %w", err)
	}
	path := make([][]byte, len(p))
	for i := range p {
		path[i] = p[i][:]
	}
	return GetAuditProof200JSONResponse(InclusionProof{
		Seq: seq, LeafHash: leaf[0][:], TreeSize: c.Size, Path: path, Checkpoint: checkpointView(c),
	}), nil
}
