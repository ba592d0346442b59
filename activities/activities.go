// Package activities holds the steps of a transfer that touch the world:
// the store, the member index, the partner. Each is a method on Activities,
// which holds their dependencies; each has its timeouts, retry policy,
// non-retryable error types and compensation in one table, policy.go.
// Activities receive and return ids, digests and outcomes, never PHI: the
// member's demographics and data stay in the store.
package activities

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Signer signs export manifests with our published key.
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

// ImportLoader writes an import's delivered NDJSON files into our own
// systems (connectors/fhirrest.Sink: our FHIR server).
type ImportLoader interface {
	Load(ctx context.Context, paths []string) (fhirrest.Loaded, error)
}

// Activities holds the dependencies of every activity.
type Activities struct {
	Store    store.Store
	Matcher  Matcher // nil: deterministic matching over the store
	Partners Partners
	Pusher   connectors.Pusher
	Signer   Signer
	Source   export.Source
	// Transmitter is us as the Provenance of served exports names the
	// transmitter; zero: export.DefaultPayerName by display.
	Transmitter fhir.Reference
	Logger      *zap.Logger
	Now         func() time.Time // nil: time.Now
	// PHIRetention is how long PurgePHI keeps an ended transfer's export
	// payloads; 0: DefaultPHIRetention.
	PHIRetention time.Duration
	// Pull builds the clients of imports ($member-match, Bulk Data); nil:
	// imports fail.
	Pull PullClients
	// Payer is us, as the consent and CoverageToLink of an import name us.
	Payer Payer
	// ImportDir is the NDJSON directory sink of imports: each transfer's
	// files land in ImportDir/<transfer id>/, staged under
	// ImportDir/.staging first; "": imports fail (validation).
	ImportDir string
	// ImportFHIR, when set, is where DeliverImport also writes the
	// delivered resources: our own FHIR server. nil: the NDJSON directory
	// is the sink.
	ImportFHIR ImportLoader
	// BulkMatch decides the members of a $bulk-member-match
	// (pdex.Matching); nil: MatchBulkMember fails (validation).
	BulkMatch MemberMatcher

	receiptKeys signing.RemoteKeys // partners' JWKS, to verify their receipts

	keyMu sync.Mutex
	key   []byte // the store's presentation key, once read
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *Activities) log(transferID string) *zap.Logger {
	l := a.Logger
	if l == nil {
		l = zap.NewNop()
	}
	return l.With(zap.String("transfer_id", transferID))
}

// RecordInput is one step of a transfer to record: the event and what it
// changes in the projection.
type RecordInput struct {
	TransferID string
	State      transfer.State // "" for an event that enters no state
	Type       string         // "state" when empty and State is set
	Key        string         // idempotency key; transfer.StateKey(State) when empty
	Actor      string
	Detail     map[string]any // never PHI
	Identity   *transfer.IdentityOutcome
	Consent    *transfer.ConsentOutcome
	Export     *transfer.ExportInfo
	Error      *transfer.ErrorInfo
}

// Step is the RecordInput of event ev (a transfer constructor's): its
// state, type, key, actor and detail.
func Step(ev transfer.Event) RecordInput {
	return RecordInput{State: ev.State, Type: ev.Type, Key: ev.Key, Actor: ev.Actor, Detail: ev.Detail}
}

// RecordState records a step in the timeline and the projection, once: a
// retried or replayed call with the same key records nothing more.
func (a *Activities) RecordState(ctx context.Context, in RecordInput) (bool, error) {
	ev := transfer.Event{At: a.now(), State: in.State, Actor: in.Actor, Type: in.Type, Detail: in.Detail, Key: in.Key}
	if ev.Type == "" {
		ev.Type = transfer.EventState
	}
	if ev.Key == "" {
		ev.Key = transfer.StateKey(in.State)
	}
	if ev.Actor == "" {
		ev.Actor = "workflow"
	}
	// A review's decision goes into the identity graph in the same
	// transaction as the step that records it.
	link, review, err := a.graphChange(ctx, in)
	if err != nil {
		return false, appError(ctx, NameRecordState, err)
	}
	ok, err := a.Store.ApplyChange(ctx, in.TransferID, store.Change{
		Event: ev, State: in.State, Identity: in.Identity, Consent: in.Consent, Export: in.Export, Error: in.Error,
		Link: link, Review: review,
	})
	if err != nil {
		return false, appError(ctx, NameRecordState, err)
	}
	if ok {
		a.log(in.TransferID).Info("transfer step recorded", zap.String("state", string(in.State)), zap.String("event", ev.Type))
	}
	return ok, nil
}
