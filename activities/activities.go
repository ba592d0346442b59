// Package activities holds the steps of p2p's workflows that touch the
// world: the store, the member index, the partners, the import directory.
// They are grouped by the workflows that run them, one struct per family,
// each holding only the dependencies its methods use and naming the store
// roles it uses (its …Store interface):
//
//   - Recorder: RecordState, the step every workflow records;
//   - Transfer: the push export (workflows.Transfer), whose compensation
//     WithdrawExport also undoes a served export;
//   - Import: the pull from an old payer (workflows.ImportTransfer);
//   - Serve: the bulk export we serve (workflows.ServeExport);
//   - BulkMatch: $bulk-member-match (workflows.BulkMemberMatch);
//   - Maintenance: audit checkpoints and the PHI purge.
//
// Temporal registers a group's exported methods under their names, which
// the workflows' histories record: no two groups have a method of the
// same name, and a group has no exported method that is not an activity.
// Each activity has its timeouts, retry policy, non-retryable error types
// and compensation in one table, policy.go. Activities receive and return
// ids, digests and outcomes, never PHI: the member's demographics and data
// stay in the store.
package activities

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Signer signs export manifests and audit checkpoints with our published
// key.
type Signer interface {
	KID() string
	Sign(payload []byte) (string, error)
}

// Partners looks partners up in the partner registry.
type Partners interface {
	Get(id string) (connectors.Partner, bool)
}

// Matcher resolves a requesting partner's demographics to a member of our
// index.
type Matcher interface {
	Resolve(ctx context.Context, q transfer.Demographics) (identity.Decision, error)
}

// ImportLoader writes an import's delivered NDJSON files, opened with
// open (from the import bucket), into our own systems
// (connectors/fhirrest.Sink: our FHIR server).
type ImportLoader interface {
	Load(ctx context.Context, open fhirrest.Opener, names []string) (fhirrest.Loaded, error)
}

// Env is what every group has: its logger and its clock. Its methods are
// unexported, so embedding it adds no activity to a group.
type Env struct {
	Logger *zap.Logger      // nil: no logs
	Now    func() time.Time // nil: time.Now
}

func (e Env) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e Env) logger() *zap.Logger {
	if e.Logger == nil {
		return zap.NewNop()
	}
	return e.Logger
}

func (e Env) log(transferID string) *zap.Logger {
	return e.logger().With(zap.String("transfer_id", transferID))
}

// record appends an event (and the projection parts of ch) to the
// transfer on st as the worker, at the group's clock unless the event
// says when.
func (e Env) record(ctx context.Context, st store.Transfers, transferID string, ch store.Change) error {
	if ch.Event.At.IsZero() {
		ch.Event.At = e.now()
	}
	if ch.Event.Actor == "" {
		ch.Event.Actor = "workflow"
	}
	_, err := st.ApplyChange(ctx, transferID, ch)
	return err
}

// presentationKey is the store's presentation key (the key of
// graph.Presentation and graph.ExternalID), read once per group.
type presentationKey struct {
	mu  sync.Mutex
	key []byte
}

func (k *presentationKey) get(ctx context.Context, st store.IdentityGraph) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == nil {
		key, err := st.PresentationKey(ctx)
		if err != nil {
			return nil, err
		}
		k.key = key
	}
	return k.key, nil
}

// presentation is the keyed digest of what the partner presented
// (graph.Presentation).
func (k *presentationKey) presentation(ctx context.Context, st store.IdentityGraph, req transfer.Request) (string, error) {
	key, err := k.get(ctx, st)
	if err != nil {
		return "", err
	}
	return graph.Presentation(key, req.PartnerID, req.Member), nil
}
