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
// Every field but position and hash is one the leaf covers, and together
// they are all the leaf encodes: a reader can recompute the hash.
type auditLine struct {
	Position    int64          `json:"position"`
	TransferID  string         `json:"transfer_id"`
	PartnerID   string         `json:"partner_id,omitempty"` // "" only in version 1, which does not cover it
	Seq         int64          `json:"seq"`
	At          time.Time      `json:"at"`
	State       string         `json:"state,omitempty"`
	Actor       string         `json:"actor"`
	Type        string         `json:"type"`
	Detail      map[string]any `json:"detail"` // null and {} hash differently
	EventKey    string         `json:"event_key"`
	LeafVersion int            `json:"leaf_version"`
	Hash        []byte         `json:"hash"`
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
				EventKey: e.Key, LeafVersion: ae.LeafVersion, Hash: ae.LeafHash[:],
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

// checkpoint returns a checkpoint that covers the log as it is now: the
// latest one while the log has not grown and it is recent, else a new one,
// signed only once the log verifies from the last signed checkpoint (an
// audit-inconsistent problem when it does not).
func (s *Server) checkpoint(ctx context.Context, reuse time.Duration) (store.Checkpoint, error) {
	if s.checkpoints == nil {
		return store.Checkpoint{}, errors.New("no audit signer configured")
	}
	size, err := s.store.AuditSize(ctx)
	if err != nil {
		return store.Checkpoint{}, err
	}
	now := s.now()
	latest, err := s.store.LatestCheckpoint(ctx)
	switch {
	case err == nil && latest.Size == size && now.Sub(latest.At) < reuse && latest.KID == s.checkpoints.Signer.KID():
		return latest, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return store.Checkpoint{}, err
	}
	c, err := s.checkpoints.Sign(ctx, now)
	var ie *audit.InconsistentError
	if errors.As(err, &ie) {
		// The refusal is logged by the Checkpointer; the detail names
		// sizes and positions only.
		return c, newProblem(http.StatusInternalServerError, ProblemAuditInconsistent, "Audit log inconsistent",
			"the audit log does not verify from its last signed checkpoint, so no checkpoint was signed: "+ie.Error())
	}
	return c, err
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

// GetAuditConsistency answers the RFC 6962 consistency proof between two
// tree sizes of the stored tree, with the checkpoint that signs the newer
// one, if any. to defaults to the latest checkpoint's size.
func (s *Server) GetAuditConsistency(ctx context.Context, req GetAuditConsistencyRequestObject) (GetAuditConsistencyResponseObject, error) {
	from := req.Params.From
	var signed *store.Checkpoint
	var to int64
	if req.Params.To != nil {
		to = *req.Params.To
	} else {
		c, err := s.store.LatestCheckpoint(ctx)
		if errors.Is(err, store.ErrNotFound) {
			c, err = s.checkpoint(ctx, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("audit consistency: checkpoint: %w", err)
		}
		to, signed = c.Size, &c
	}
	size, err := s.store.AuditSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit consistency: %w", err)
	}
	switch {
	case from > to:
		return nil, invalid("from is larger than to", FieldProblem{Field: "from", Reason: "larger than to"})
	case to > size:
		return nil, invalid(fmt.Sprintf("the log holds %d entries", size), FieldProblem{Field: "to", Reason: "beyond the log's size"})
	}
	hashes := audit.Hashes(ctx, s.store)
	proof, err := tlog.ProveTree(to, from, hashes)
	if err != nil {
		return nil, fmt.Errorf("audit consistency: prove %d in %d: %w", from, to, err)
	}
	fromHead, err := audit.HeadAt(ctx, s.store, from)
	if err != nil {
		return nil, fmt.Errorf("audit consistency: %w", err)
	}
	toHead, err := audit.HeadAt(ctx, s.store, to)
	if err != nil {
		return nil, fmt.Errorf("audit consistency: %w", err)
	}
	if signed == nil {
		if signed, err = s.checkpointOfSize(ctx, to); err != nil {
			return nil, fmt.Errorf("audit consistency: %w", err)
		}
	}
	path := make([][]byte, len(proof))
	for i := range proof {
		path[i] = proof[i][:]
	}
	out := ConsistencyProof{From: from, To: to, FromRoot: fromHead.Root[:], ToRoot: toHead.Root[:], Path: path}
	if signed != nil {
		v := checkpointView(*signed)
		out.Checkpoint = &v
	}
	return GetAuditConsistency200JSONResponse(out), nil
}

// checkpointOfSize is the latest stored checkpoint of size n, or nil.
func (s *Server) checkpointOfSize(ctx context.Context, n int64) (*store.Checkpoint, error) {
	if c, err := s.store.LatestCheckpoint(ctx); err != nil || c.Size == n {
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return &c, err
	}
	cps, err := s.store.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		if cps[i].Size == n {
			return &cps[i], nil
		}
	}
	return nil, nil
}
