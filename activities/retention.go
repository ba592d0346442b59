package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// MaintenanceStore is what the maintenance activities use of the store.
type MaintenanceStore interface {
	store.AuditLog  // the log checkpointed
	store.Artifacts // the payloads purged
	store.Transfers // each purge recorded on its transfer
}

// Maintenance holds the activities of the maintenance workflows:
// AuditCheckpoint and PurgePHI.
type Maintenance struct {
	Env
	Store  MaintenanceStore
	Signer Signer // signs the checkpoints
	// PHIRetention is how long PurgePHI keeps an ended transfer's export
	// payloads; 0: DefaultPHIRetention.
	PHIRetention time.Duration
	// Checkpoints signs the checkpoints, only of a log that verifies from
	// the last signed one, and publishes them to its witness; nil: one
	// over Store and Signer, without a witness or a memory of the last
	// signing.
	Checkpoints *audit.Checkpointer
	// CheckpointRefresh: a log that has not grown is signed again once
	// its latest checkpoint is this old, so that a quiet log still has a
	// recent checkpoint (`p2p audit verify --max-age`); 0: only when it
	// grows.
	CheckpointRefresh time.Duration
}

// DefaultPHIRetention is how long the PHI payloads of an export are kept
// after the transfer ended (acknowledged, complete or failed): long enough
// to answer a partner's question about a delivery, short enough that a
// copy of a member's record does not linger.
const DefaultPHIRetention = 30 * 24 * time.Hour

// EndedStates are the states after which an export's PHI is no longer
// needed: the partner has it, or it was never delivered.
var EndedStates = []transfer.State{transfer.StateAcknowledged, transfer.StateComplete, transfer.StateFailed}

// purgeBatch is how many transfers one store query of PurgePHI lists.
const purgeBatch = 100

// ErrTypeAuditInconsistent is the type of AuditCheckpoint's error when the
// audit log does not verify from its last signed checkpoint (an
// audit.InconsistentError): not retried, since only a person can resolve
// it.
const ErrTypeAuditInconsistent = "audit_inconsistent"

// CheckpointResult is what AuditCheckpoint did.
type CheckpointResult struct {
	Size   int64  // the entries the latest checkpoint covers
	Signed bool   // false: the latest checkpoint already covered the log
	KID    string // the key of the latest checkpoint
}

// AuditCheckpoint signs and stores a checkpoint of the audit log when it
// grew since the latest one, that one was signed by another key, or it is
// older than CheckpointRefresh. The periodic checkpoints bound how much of
// the log an attacker with database access could rewrite unseen: only
// what came after the latest. A log that does not verify from its last
// signed checkpoint is not signed: the activity fails with
// ErrTypeAuditInconsistent, which is not retried.
func (a *Maintenance) AuditCheckpoint(ctx context.Context) (CheckpointResult, error) {
	fail := func(err error) (CheckpointResult, error) {
		return CheckpointResult{}, appError(ctx, NameAuditCheckpoint, err)
	}
	size, err := a.Store.AuditSize(ctx)
	if err != nil {
		return fail(err)
	}
	latest, err := a.Store.LatestCheckpoint(ctx)
	now := a.now()
	switch {
	case err == nil && latest.Size == size && latest.KID == a.Signer.KID() &&
		(a.CheckpointRefresh <= 0 || now.Sub(latest.At) < a.CheckpointRefresh):
		return CheckpointResult{Size: size, KID: latest.KID}, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fail(err)
	}
	cp := a.Checkpoints
	if cp == nil {
		cp = &audit.Checkpointer{Store: a.Store, Signer: a.Signer, Log: a.logger()}
	}
	c, err := cp.Sign(ctx, now)
	if errors.Is(err, audit.ErrInconsistent) {
		// Retrying cannot help: the log must be examined (p2p audit verify).
		return CheckpointResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeAuditInconsistent, nil)
	}
	if err != nil {
		return fail(err)
	}
	a.logger().Info("audit checkpoint signed", zap.Int64("size", c.Size), zap.String("kid", c.KID))
	return CheckpointResult{Size: c.Size, Signed: true, KID: c.KID}, nil
}

// PurgeResult is what PurgePHI did.
type PurgeResult struct {
	Transfers int       // transfers whose PHI was purged
	Artifacts int       // payloads deleted
	Cutoff    time.Time // transfers that ended before this
}

// PurgePHI deletes the PHI payloads (the FHIR NDJSON files) of exports
// whose transfer ended more than PHIRetention ago. The artifacts' rows,
// digests and sizes stay, and so do the signed manifest and its signature:
// they are the evidence of what was sent; the audit log is never touched
// but to record, per transfer, that its PHI was purged. The event is
// recorded before the payloads go, under a fixed key: a purge that fails
// half-way is retried, finds the transfer again and finishes it, and the
// log holds one event per transfer.
func (a *Maintenance) PurgePHI(ctx context.Context) (PurgeResult, error) {
	retention := a.PHIRetention
	if retention <= 0 {
		retention = DefaultPHIRetention
	}
	now := a.now()
	res := PurgeResult{Cutoff: now.Add(-retention)}
	for {
		batch, err := a.Store.ExpiredArtifacts(ctx, store.ArtifactPurge{
			ContentType: contentTypeNDJSON, States: EndedStates, Before: res.Cutoff, Limit: purgeBatch,
		})
		if err != nil {
			return res, appError(ctx, NamePurgePHI, err)
		}
		for _, e := range batch {
			if activity.IsActivity(ctx) {
				activity.RecordHeartbeat(ctx, e.TransferID)
			}
			ev := transfer.PHIPurged(e.Artifacts, retention).Stamped(now)
			if _, err := a.Store.ApplyChange(ctx, e.TransferID, store.Change{Event: ev}); err != nil {
				return res, appError(ctx, NamePurgePHI, err)
			}
			n, err := a.Store.PurgeArtifacts(ctx, e.TransferID, contentTypeNDJSON, now)
			if err != nil {
				return res, appError(ctx, NamePurgePHI, err)
			}
			res.Transfers++
			res.Artifacts += n
		}
		if len(batch) < purgeBatch {
			break
		}
	}
	if res.Transfers > 0 {
		a.logger().Info("PHI purged", zap.Int("transfers", res.Transfers), zap.Int("artifacts", res.Artifacts),
			zap.Time("ended_before", res.Cutoff))
	}
	return res, nil
}
