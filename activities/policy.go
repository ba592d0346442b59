package activities

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/connectors/fhirrest"
	"github.com/p2p-payer/p2p/fault"
)

// Activity names, as registered with the worker and named by the workflow.
const (
	NameRecordState     = "RecordState"
	NameResolveIdentity = "ResolveIdentity"
	NameCheckConsent    = "CheckConsent"
	NamePrepareExport   = "PrepareExport"
	NameSendExport      = "SendExport"
	NameWithdrawExport  = "WithdrawExport"
	NameAuditCheckpoint = "AuditCheckpoint"
	NamePurgePHI        = "PurgePHI"

	NameCheckGrants         = "CheckGrants"
	NameMatchBulkMember     = "MatchBulkMember"
	NameFinishBulkMatch     = "FinishBulkMatch"
	NameCancelBulkMatch     = "CancelBulkMatch"
	NamePrepareServedExport = "PrepareServedExport"
	// An import's steps (import.go).
	NameMatchAtPartner     = "MatchAtPartner"
	NamePlanImport         = "PlanImport"
	NameKickOffImport      = "KickOffImport"
	NamePollImport         = "PollImport"
	NameDownloadImportFile = "DownloadImportFile"
	NameDeliverImport      = "DeliverImport"
	NameDeleteImport       = "DeleteImport"
	NameDiscardImport      = "DiscardImport"
)

// PartnerActivities are the activities that call a partner: they run on
// the partner's own task queue, under its rate and concurrency limits.
var PartnerActivities = []string{
	NameSendExport, NameMatchAtPartner, NameKickOffImport, NamePollImport, NameDownloadImportFile, NameDeleteImport,
}

// What the rows of Policies name as final (NonRetryableErrorTypes): the
// fault types (fault.Type*, fhirrest.ErrType*) and, for a whole class, its
// name, which is also the type such errors failed with before they kept
// their connector's type (recorded retry policies still name them).
const (
	ErrTypeTransport  = string(fault.Transport)
	ErrTypeDownstream = string(fault.Downstream)
	ErrTypeAuth       = string(fault.Auth)
	ErrTypeValidation = string(fault.Validation)

	ErrTypeNotFound        = fault.TypeNotFound
	ErrTypePartnerRejected = fault.TypePartnerRejected
	ErrTypeUnknownPartner  = fault.TypeUnknownPartner
)

// Policy is everything the workflow needs to schedule one activity: its
// timeouts, its retry policy (Temporal's backoff; the activity adds jitter
// to retryable failures, see retryDelay), the error types that must not be
// retried, and the activity that undoes it, if any.
type Policy struct {
	StartToClose    time.Duration
	ScheduleToClose time.Duration // bounds all attempts together
	Heartbeat       time.Duration // 0: the activity is short and does not heartbeat
	Retry           temporal.RetryPolicy
	// Compensation names the activity that undoes this one when the
	// transfer fails after it succeeded ("" when nothing needs undoing).
	Compensation string
	// Local: a workflow may run this step as a local activity
	// (LocalOptions): it is short, touches only our own store and the
	// in-memory member index, is idempotent (a local activity runs again
	// when the workflow task that ran it is lost) and does not heartbeat.
	// Its history is then one marker instead of an activity's three
	// events and a workflow task's three more. Which steps a workflow
	// runs locally is the workflow's (versioned) choice; this says which
	// it may.
	Local bool
}

// Policies is the one table of activity options. The reasons behind each
// row are in its comment; change them here and nowhere else.
var Policies = map[string]Policy{
	// Local bookkeeping in our own store: retry for as long as the store
	// is down (a transfer never skips recording a state), quickly.
	NameRecordState: {
		StartToClose:    10 * time.Second,
		ScheduleToClose: 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
		Local: true, // one transaction, once per key
	},
	// Reads the request and the member index; a miss is a decision, not an
	// error, so only infrastructure failures are retried.
	NameResolveIdentity: {
		StartToClose:    15 * time.Second,
		ScheduleToClose: time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
		Local: true, // a run again answers the decision first recorded
	},
	// Pure check over the stored consent and the clock.
	NameCheckConsent: {
		StartToClose:    10 * time.Second,
		ScheduleToClose: time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
		Local: true, // a run again answers the check first recorded for its phase
	},
	// Builds, stores and signs the export. Deterministic, so a retry
	// stores the same digests. Undone by WithdrawExport.
	NamePrepareExport: {
		StartToClose:    5 * time.Minute,
		ScheduleToClose: 2 * time.Hour,
		Heartbeat:       20 * time.Second,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute,
			// Auth and the source's business refusals (a FHIR source
			// refused the token, answered 4xx, has no such Patient)
			// need a person, not a retry.
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation, ErrTypeAuth, fhirrest.ErrTypeRejected, fhirrest.ErrTypeNoPatient},
		},
		Compensation: NameWithdrawExport,
	},
	// Talks to the partner. Transport and 5xx/429 failures retry with
	// backoff (Retry-After honoured exactly) for up to a day: CMS-0057-F
	// gives the old payer one business day. The partner recognises a
	// retried delivery by its idempotency key, so a retry never delivers
	// twice. A rejection, an auth failure or an unknown partner is final.
	// A partner's registry entry may set its own intervals and attempts
	// (connectors.RetryOverride); they act through the activity's error
	// (partnerAppError), within this row's ScheduleToClose.
	NameSendExport: {
		StartToClose:    2 * time.Minute,
		ScheduleToClose: 24 * time.Hour,
		Heartbeat:       10 * time.Second, // a worker that dies mid-send is noticed in seconds, not minutes
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypePartnerRejected, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation, ErrTypeNotFound},
		},
	},
	// $member-match at the old payer. A 422 (no match, consent refused)
	// is an answer, not an error; 429/5xx and transport failures retry
	// with backoff, Retry-After honoured, for up to a day (the old payer
	// has one business day); auth, validation and a partner that is not
	// ours to pull from are final.
	NameMatchAtPartner: {
		StartToClose:    time.Minute,
		ScheduleToClose: 24 * time.Hour,
		Heartbeat:       10 * time.Second,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypePartnerRejected, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation, ErrTypeNotFound},
		},
	},
	// Reads our store: _type and _since of the export.
	NamePlanImport: {
		StartToClose:    30 * time.Second,
		ScheduleToClose: time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
	},
	// Starts the export at the old payer. Retried like the match; a
	// kick-off the partner refuses (4xx) is final. A retry after a 202
	// that was lost starts a second export: the first one expires on its
	// own (the IG gives no idempotency key). Undone by DeleteImport.
	NameKickOffImport: {
		StartToClose:    time.Minute,
		ScheduleToClose: 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypePartnerRejected, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation, ErrTypeNotFound},
		},
		Compensation: NameDeleteImport,
	},
	// One status request; the workflow sleeps between polls on a durable
	// timer. A failed request (5xx, transport) is retried here, Retry-After
	// honoured; an export that is gone (bulk_export_expired) goes back to
	// the workflow, which kicks it off again.
	NamePollImport: {
		StartToClose:    time.Minute,
		ScheduleToClose: 6 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeExportExpired, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation, ErrTypeNotFound},
		},
	},
	// One file, streamed to the staging directory; long files heartbeat
	// every few seconds, so a dead worker is noticed in half a minute. A
	// cut connection or a 5xx retries the file from the start (the sink
	// replaces a partial file); a 410 goes back to the workflow (re-kick-off).
	// Undone by DiscardImport.
	NameDownloadImportFile: {
		StartToClose:    2 * time.Hour,
		ScheduleToClose: 12 * time.Hour,
		Heartbeat:       30 * time.Second,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeExportExpired, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation, ErrTypeNotFound},
		},
		Compensation: NameDiscardImport,
	},
	// Moves the staged files into the sink and reads them back; with a
	// FHIR sink, writes them to our FHIR server too (upserts, so a retry
	// is safe). Retried while the disk or the server is unwell; a refused
	// token or a rejected resource is final.
	NameDeliverImport: {
		StartToClose:    30 * time.Minute,
		ScheduleToClose: 6 * time.Hour,
		Heartbeat:       time.Minute,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeValidation, ErrTypeNotFound, ErrTypeAuth},
		},
	},
	// Compensation of KickOffImport (and clean-up after the download):
	// tells the old payer to drop the export. Bounded: an export nobody
	// deletes expires at the partner anyway. A refusal (a 405 from a
	// server that does not support DELETE, a 4xx) is final: asking again
	// for two hours changes nothing.
	NameDeleteImport: {
		StartToClose:    time.Minute,
		ScheduleToClose: 2 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
			NonRetryableErrorTypes: []string{ErrTypePartnerRejected, ErrTypeUnknownPartner, ErrTypeAuth, ErrTypeValidation},
		},
	},
	// Compensation of DownloadImportFile: PHI on our disk that will not be
	// delivered goes, however long the disk takes to let it.
	NameDiscardImport: {
		StartToClose:    5 * time.Minute,
		ScheduleToClose: 7 * 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
		},
	},
	// The compensation itself must not give up: PHI is deleted eventually
	// even if the store is down for a while.
	NameWithdrawExport: {
		StartToClose:    time.Minute,
		ScheduleToClose: 7 * 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
		},
	},
	// Served exports (workflows.ServeExport). The grant check reads our
	// own store and the clock, like CheckConsent.
	NameCheckGrants: {
		StartToClose:    10 * time.Second,
		ScheduleToClose: time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
	},
	// Builds and stores a served export's files, like PrepareExport (no
	// signature: the partner fetches them over an authenticated channel).
	// Deterministic, so a retry stores the same digests. Undone by
	// WithdrawExport, which also withdraws the files when they expire.
	NamePrepareServedExport: {
		StartToClose:    5 * time.Minute,
		ScheduleToClose: 2 * time.Hour,
		Heartbeat:       20 * time.Second,
		Retry: temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute,
			// Auth and the source's business refusals (a FHIR source
			// refused the token, answered 4xx, has no such Patient)
			// need a person, not a retry.
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation, ErrTypeAuth, fhirrest.ErrTypeRejected, fhirrest.ErrTypeNoPatient},
		},
		Compensation: NameWithdrawExport,
	},
	// One member of a $bulk-member-match: reads the member index and our
	// store. A store or index failure is retried for a few minutes; after
	// that the member lands in NonMatchedMembers as an error and the batch
	// goes on (workflows.BulkMemberMatch). A member whose stored request is
	// gone is final.
	NameMatchBulkMember: {
		StartToClose:    30 * time.Second,
		ScheduleToClose: 10 * time.Minute,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{ErrTypeNotFound, ErrTypeValidation},
		},
	},
	// Stores a batch's result and withdraws its members' demographics:
	// local bookkeeping, retried like RecordState for as long as the store
	// is down, since the PHI must go.
	NameFinishBulkMatch: {
		StartToClose:    30 * time.Second,
		ScheduleToClose: 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeValidation},
		},
	},
	// Withdraws a deleted or cancelled batch's members and records why:
	// retried like FinishBulkMatch, since the PHI must go.
	NameCancelBulkMatch: {
		StartToClose:    30 * time.Second,
		ScheduleToClose: 24 * time.Hour,
		Retry: temporal.RetryPolicy{
			InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: []string{ErrTypeValidation},
		},
	},
	// Signs a tree head: a few reads and one insert. A checkpoint that
	// cannot be signed now is worth little later (the next run signs a
	// newer one), so the attempts stop well before the next run.
	NameAuditCheckpoint: {
		StartToClose:    30 * time.Second,
		ScheduleToClose: 5 * time.Minute,
		Retry: temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
		},
	},
	// Deletes expired PHI in batches, heartbeating per transfer. It
	// resumes where it stopped (what is purged is no longer listed), so it
	// retries for most of a day, until the next daily run.
	NamePurgePHI: {
		StartToClose:    30 * time.Minute,
		ScheduleToClose: 20 * time.Hour,
		Heartbeat:       time.Minute,
		Retry: temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
		},
	},
}

// Options returns the workflow activity options of the named activity. It
// panics on a name missing from Policies: that is a programming error that
// every workflow test would hit at once.
func Options(name string) workflow.ActivityOptions {
	p, ok := Policies[name]
	if !ok {
		panic("activities: no policy for " + name)
	}
	retry := p.Retry
	return workflow.ActivityOptions{
		StartToCloseTimeout:    p.StartToClose,
		ScheduleToCloseTimeout: p.ScheduleToClose,
		HeartbeatTimeout:       p.Heartbeat,
		RetryPolicy:            &retry,
	}
}

// WithOptions returns ctx with the options of the named activity.
func WithOptions(ctx workflow.Context, name string) workflow.Context {
	return workflow.WithActivityOptions(ctx, Options(name))
}

// LocalOptions returns the local activity options of the named activity:
// the same row's timeouts and retry policy (non-retryable types
// included) as Options. It panics on a name missing from Policies or
// whose row is not Local, a programming error like Options'.
func LocalOptions(name string) workflow.LocalActivityOptions {
	p, ok := Policies[name]
	if !ok || !p.Local {
		panic("activities: " + name + " may not run as a local activity")
	}
	o := Options(name)
	return workflow.LocalActivityOptions{
		StartToCloseTimeout:    o.StartToCloseTimeout,
		ScheduleToCloseTimeout: o.ScheduleToCloseTimeout,
		RetryPolicy:            o.RetryPolicy,
	}
}

// WithLocalOptions returns ctx with the local activity options of the
// named activity.
func WithLocalOptions(ctx workflow.Context, name string) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, LocalOptions(name))
}
