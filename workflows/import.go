package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/transfer"
)

// ImportWorkflowName is the registered name of ImportTransfer: part of the
// contract with running histories, never rename.
const ImportWorkflowName = "ImportTransfer"

// MaxKickOffs bounds how often an import kicks the export off: the first
// time, and again each time the export or one of its files expired (404
// or 410) before it was all downloaded.
const MaxKickOffs = 3

// ImportPollPolicy is how an import polls the old payer's export: the
// server's Retry-After (never earlier; nonsense clamped to an hour), else
// exponential backoff from 5 s to 5 min, for at most a day from the
// kick-off; and never sooner than the floor of importPollFloor.
var ImportPollPolicy = bulkdata.PollPolicy{MinDelay: 5 * time.Second}

// ImportPollFloorCap is where the floor between two polls of one export
// stops growing (importPollFloor).
var ImportPollFloorCap = time.Minute

// ImportPollsPerRun bounds the polls of one workflow run: after as many,
// or earlier when the server suggests it, the import continues as new.
// A poll writes about 11 history events, so a run stays near 5,500
// events, far below the server's limit (51,200) and its warning (10,240).
var ImportPollsPerRun = 500

// legacyPollPolicy is the polling of imports whose history predates
// versionImportPollBounded: a 1 s floor and no bound on a run's polls.
var legacyPollPolicy = bulkdata.PollPolicy{}

// versionImportPollBounded is the GetVersion change id of bounded
// polling: a floor that grows from ImportPollPolicy.MinDelay to
// ImportPollFloorCap, and Continue-As-New after ImportPollsPerRun polls
// or when the server suggests it. Histories from before it poll as they
// did.
const versionImportPollBounded = "import-poll-bounded"

// ImportResume is what an import carries into its next run when it
// continues as new while polling: where it stopped, and everything its
// remaining steps and its compensation need (the status URL to DELETE;
// nothing is staged while it polls). Ids and digests only, no PHI.
type ImportResume struct {
	State     transfer.State
	Identity  transfer.IdentityOutcome
	PatientID string
	Plan      activities.Plan
	Round     int                  // the kick-off round being polled
	KickedOff activities.KickedOff // its status URL and kick-off time (the budget starts there)
	Polls     int                  // polls of this round so far: the floor and backoff go on from there
	Runs      int                  // runs of this import before this one
}

// imp names an import's activities for ExecuteActivity (as push does the
// push export's); its steps are recorded with rec.
var imp *activities.Import

// ImportTransfer is the workflow of an import: we are the new payer and
// pull the member's data from the old payer (the transfer's partner), as
// Da Vinci PDex describes it:
//
//	identity_pending   $member-match at the old payer (MatchAtPartner)
//	consent_verified   it matched and honoured the consent (a 422 fails
//	                   the transfer: no_match or consent_denied)
//	                   PlanImport (_type, _since) → KickOffImport (Patient
//	                   $export for the matched patient) → PollImport, one
//	                   per attempt, with durable sleeps of NextPollDelay
//	                   between → DownloadImportFile per output and error file
//	                   (404/410 → DELETE the expired export, best effort,
//	                   and kick off again, at most MaxKickOffs)
//	payload_prepared   every file staged, counted and digested
//	sent               DeliverImport moved them into the sink
//	acknowledged       the sink read them back with the same digests
//	complete           (the export is deleted at the old payer)
//
// On failure or cancellation after the kick-off, DELETE goes to the
// status URL and staged files are removed, on a disconnected context.
//
// A long poll does not grow one history without bound: after
// ImportPollsPerRun polls, or when the server suggests it, the import
// continues as new with its state (Input.Resume) and goes on polling in
// the next run, its compensation intact.
func ImportTransfer(ctx workflow.Context, in Input) (Result, error) {
	r := &importRun{in: in, state: transfer.StateInitiated}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (transfer.State, error) { return r.state, nil }); err != nil {
		return Result{}, err
	}
	var failure *transfer.ErrorInfo
	var err error
	if in.Resume != nil {
		failure, err = r.resume(ctx, *in.Resume)
	} else {
		failure, err = r.steps(ctx)
	}
	var next *workflow.ContinueAsNewError
	if errors.As(err, &next) {
		return Result{}, err // not a failure: the next run goes on
	}
	if err != nil {
		failure = importFailureOf(err, r.state)
	}
	if failure == nil {
		return Result{State: r.state}, nil
	}
	return r.fail(ctx, failure)
}

// importRun is the state of one import workflow.
type importRun struct {
	in        Input
	state     transfer.State
	identity  transfer.IdentityOutcome
	statusURL string // an export live at the partner: DELETE it on failure
	staged    bool   // files downloaded and not delivered: discard them on failure
	patientID string // the matched patient at the partner, for each kick-off
	plan      activities.Plan
	polls     int // polls in this run, toward ImportPollsPerRun
}

func (r *importRun) partnerCtx(ctx workflow.Context, name string) workflow.Context {
	ctx = activities.WithOptions(ctx, name)
	return workflow.WithTaskQueue(ctx, PartnerActivityQueue(workflow.GetInfo(ctx).TaskQueueName, r.in.PartnerID, name))
}

func (r *importRun) enter(ctx workflow.Context, in activities.RecordInput) error {
	in.TransferID = r.in.TransferID
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NameRecordState), rec.RecordState, in).Get(ctx, nil); err != nil {
		return err
	}
	if in.State != "" {
		r.state = in.State
	}
	return nil
}

// steps runs the import from pending to complete. A failure the import
// ends with is returned as such; an error is an activity that gave up, or
// a cancellation (importFailureOf maps it).
func (r *importRun) steps(ctx workflow.Context) (*transfer.ErrorInfo, error) {
	ids := activities.ImportInput{TransferID: r.in.TransferID, PartnerID: r.in.PartnerID}
	if err := r.enter(ctx, activities.Step(transfer.ImportPending(r.in.PartnerID))); err != nil {
		return nil, err
	}
	var m activities.Matched
	if err := workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NameMatchAtPartner), imp.MatchAtPartner, ids).Get(ctx, &m); err != nil {
		return nil, err
	}
	if f := r.identify(m); f != nil {
		return f, nil
	}
	if err := r.enter(ctx, r.verified(ctx, m)); err != nil {
		return nil, err
	}
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NamePlanImport), imp.PlanImport, ids).Get(ctx, &r.plan); err != nil {
		return nil, err
	}
	r.patientID = m.PatientID
	got, err := r.fetch(ctx, 1, nil)
	if err != nil || got.failure != nil {
		return got.failure, err
	}
	return nil, r.deliver(ctx, got)
}

// resume goes on with an import that continued as new while it polled
// round rs.Round: polls on, then downloads, delivers and completes as
// steps does.
func (r *importRun) resume(ctx workflow.Context, rs ImportResume) (*transfer.ErrorInfo, error) {
	r.state, r.identity, r.patientID, r.plan = rs.State, rs.Identity, rs.PatientID, rs.Plan
	r.statusURL = rs.KickedOff.StatusURL
	got, err := r.fetch(ctx, rs.Round, &rs)
	if err != nil || got.failure != nil {
		return got.failure, err
	}
	return nil, r.deliver(ctx, got)
}

// deliver records the fetched files as the import's payload, moves them
// into the sink, records its receipt, tells the old payer it may drop the
// export and completes the import.
func (r *importRun) deliver(ctx workflow.Context, got fetched) error {
	info := got.info()
	if err := r.enter(ctx, got.prepared(info)); err != nil {
		return err
	}
	var d activities.Delivered
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NameDeliverImport), imp.DeliverImport, activities.DeliverInput{
		TransferID: r.in.TransferID, Round: got.round, Files: got.files,
	}).Get(ctx, &d); err != nil {
		return err
	}
	r.staged = false
	if err := r.enter(ctx, activities.Step(transfer.ImportSent(d.Sink, d.Location, d.Files))); err != nil {
		return err
	}
	acked := info
	acked.ReceiptID = d.ReceiptID
	ackStep := activities.Step(transfer.ImportAcknowledged(d.Sink, d.ReceiptID))
	ackStep.Export = &acked
	if err := r.enter(ctx, ackStep); err != nil {
		return err
	}
	// The files are ours: tell the old payer it may drop the export. A
	// failure here is the partner's to clean up (exports expire); it
	// does not undo a complete import.
	_ = workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NameDeleteImport), imp.DeleteImport, activities.DeleteInput{
		TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, StatusURL: r.statusURL, Reason: "done",
	}).Get(ctx, nil)
	r.statusURL = ""
	return r.enter(ctx, activities.Step(transfer.Entered(transfer.StateComplete, nil)))
}

// identify takes the old payer's $member-match answer as the import's
// identity outcome. Unless it matched, it returns the failure the import
// ends with: the consent refused, or no member (or several) matched.
func (r *importRun) identify(m activities.Matched) *transfer.ErrorInfo {
	switch m.Status {
	case transfer.IdentityResolved:
		r.identity = transfer.IdentityOutcome{Status: transfer.IdentityResolved, MemberID: m.MemberID, Score: 1,
			Rationale: &transfer.Rationale{Rule: "partner_member_match", Summary: "matched by the old payer's $member-match"}}
		return nil
	case transfer.ErrorConsentDenied:
		r.identity = transfer.IdentityOutcome{Status: transfer.IdentityPending}
		return &transfer.ErrorInfo{Type: transfer.ErrorConsentDenied, Detail: "the old payer cannot honour the member's consent"}
	}
	r.identity = transfer.IdentityOutcome{Status: transfer.IdentityNoMatch}
	detail := "no member matches at the old payer"
	if m.Reason != "" && m.Reason != transfer.ErrorNoMatch {
		detail = "the old payer found several members (" + m.Reason + "); send more of the member's details"
	}
	return &transfer.ErrorInfo{Type: transfer.ErrorNoMatch, Detail: detail}
}

// verified is the consent_verified step of a match: the identity outcome
// and the consent the old payer honoured.
func (r *importRun) verified(ctx workflow.Context, m activities.Matched) activities.RecordInput {
	consent := transfer.ConsentOutcome{Status: transfer.ConsentVerified, ConsentID: m.ConsentID, Scope: m.Scope, CheckedAt: workflow.Now(ctx).UTC()}
	step := activities.Step(transfer.ImportVerified(r.in.PartnerID, m.MemberID, m.PatientID, m.ConsentID, m.Scope))
	step.Identity, step.Consent = &r.identity, &consent
	return step
}

// fetched is what fetching the export got: the complete status (its
// manifest and digest) and the downloaded files of one kick-off round,
// unless it ended otherwise: expired (the export, or one of its files, was
// gone at the partner: kick off again) or failure (the import fails with
// it).
type fetched struct {
	round   int
	polled  activities.Polled
	files   []transfer.ExportFile
	expired bool
	failure *transfer.ErrorInfo
}

// complete reports whether nothing cut the round short.
func (f fetched) complete() bool { return !f.expired && f.failure == nil }

// info is the export the fetched files are, as the transfer records it.
func (f fetched) info() transfer.ExportInfo {
	man := f.polled.Status.Complete.Manifest
	tt := man.TransactionTime.UTC()
	return transfer.ExportInfo{ManifestSHA256: f.polled.ManifestSHA256, Files: f.files, TransactionTime: &tt, Partial: len(man.Error) > 0}
}

// prepared is the payload_prepared step of the fetched files: info, and
// how many resources they hold (OperationOutcomes of error files aside).
func (f fetched) prepared(info transfer.ExportInfo) activities.RecordInput {
	resources := 0
	for _, file := range f.files {
		if file.Type != "OperationOutcome" {
			resources += file.Count
		}
	}
	step := activities.Step(transfer.ImportPrepared(info, resources, f.round))
	step.Export = &info
	return step
}

// fetch kicks the export of the member's patient off and fetches it: again
// each time it expires before it is all downloaded, at most MaxKickOffs
// times. It starts at round first; resumed, that round is kicked off
// already and polled on.
func (r *importRun) fetch(ctx workflow.Context, first int, resumed *ImportResume) (fetched, error) {
	for round := first; round <= MaxKickOffs; round++ {
		var got fetched
		var err error
		if resumed != nil && round == resumed.Round {
			got, err = r.fetchRound(ctx, round, resumed.KickedOff, resumed.Polls)
		} else {
			got, err = r.kickOff(ctx, round)
		}
		if err != nil || !got.expired {
			return got, err
		}
	}
	return fetched{failure: &transfer.ErrorInfo{Type: transfer.ErrorExportExpired,
		Detail: fmt.Sprintf("the export expired at the old payer %d times before it was downloaded", MaxKickOffs)}}, nil
}

// kickOff is one round of fetch: kick the export off, poll it until it is
// complete, record its manifest and download its files. If a file expired,
// the export is DELETEd at the partner (deleteExpired) before the next
// round.
func (r *importRun) kickOff(ctx workflow.Context, round int) (fetched, error) {
	if round > 1 {
		if err := r.enter(ctx, activities.Step(transfer.BulkRekicked(round))); err != nil {
			return fetched{}, err
		}
	}
	var k activities.KickedOff
	if err := workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NameKickOffImport), imp.KickOffImport, activities.KickOffInput{
		TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, PatientID: r.patientID, Types: r.plan.Types, Since: r.plan.Since, Round: round,
	}).Get(ctx, &k); err != nil {
		return fetched{}, err
	}
	return r.fetchRound(ctx, round, k, 0)
}

// fetchRound is the rest of a round once the export is kicked off (k):
// poll it (polled times so far) until complete, record its manifest and
// download its files.
func (r *importRun) fetchRound(ctx workflow.Context, round int, k activities.KickedOff, polled int) (fetched, error) {
	r.statusURL = k.StatusURL
	got, err := r.poll(ctx, round, k, polled)
	if err != nil || !got.complete() {
		return got, err
	}
	got.round = round
	if err := r.recordManifest(ctx, got); err != nil {
		return fetched{}, err
	}
	if got, err = r.download(ctx, got); err != nil || !got.expired {
		return got, err
	}
	return got, r.deleteExpired(ctx, round, k.StatusURL)
}

// poll polls the export until it is complete, failed, gone or past the
// budget, sleeping on durable timers between polls for as long as the
// server asked (NextPollDelay from the answer's own time: never earlier),
// and at least the floor (pollDelay). Complete, it returns the status
// with the manifest. polled is how many polls of round came before (in
// earlier runs). After ImportPollsPerRun polls in this run, or when the
// server suggests it, it returns a ContinueAsNewError to go on in a new
// run; only between polls, after the sleep, so that the next run may
// poll at once.
func (r *importRun) poll(ctx workflow.Context, round int, k activities.KickedOff, polled int) (fetched, error) {
	bounded := workflow.GetVersion(ctx, versionImportPollBounded, workflow.DefaultVersion, 1) >= 1
	perRun := ImportPollsPerRun
	if bounded {
		// Recorded, so that a deploy changing the bound cannot make
		// a replay of this run take another branch.
		if err := workflow.SideEffect(ctx, func(workflow.Context) any { return ImportPollsPerRun }).Get(&perRun); err != nil {
			return fetched{}, err
		}
	}
	for n := polled + 1; ; n++ {
		if bounded && n > polled+1 && (r.polls >= perRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) {
			return fetched{}, r.continueAsNew(ctx, round, k, n-1)
		}
		r.polls++
		var p activities.Polled
		err := workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NamePollImport), imp.PollImport, activities.PollInput{
			TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, StatusURL: k.StatusURL,
		}).Get(ctx, &p)
		if isErrType(err, fault.TypeExportExpired) {
			r.statusURL = "" // nothing left to delete
			return fetched{expired: true}, nil
		}
		if err != nil {
			return fetched{}, err
		}
		switch p.Status.State {
		case bulkdata.StateComplete:
			return fetched{polled: p}, nil
		case bulkdata.StateFailed:
			detail := "the old payer's export failed"
			if fl := p.Status.Failed; fl != nil {
				detail += fmt.Sprintf(" (HTTP %d, OperationOutcome %s)", fl.StatusCode, fl.Outcome.Codes())
			}
			return fetched{failure: &transfer.ErrorInfo{Type: transfer.ErrorExportFailed, Detail: detail}}, nil
		}
		if ImportPollPolicy.Exhausted(k.At, workflow.Now(ctx)) {
			return fetched{failure: &transfer.ErrorInfo{Type: transfer.ErrorExportTimeout, Detail: "the old payer's export stayed in progress past the polling budget"}}, nil
		}
		ip := p.Status.InProgress
		if ip == nil {
			return fetched{}, errors.New("poll answered in progress without its details")
		}
		if err := workflow.Sleep(ctx, pollDelay(bounded, ip, n)); err != nil {
			return fetched{}, err
		}
	}
}

// pollDelay is how long to wait after the n-th poll of an export answered
// in progress (ip). Bounded, it is what the server asked (Retry-After,
// never less; else backoff from 5 s to 5 min), but at least the floor of
// importPollFloor; legacy, what the server asked with a 1 s floor.
func pollDelay(bounded bool, ip *bulkdata.InProgress, n int) time.Duration {
	if !bounded {
		return bulkdata.NextPollDelay(ip.RetryAfter, ip.ReceivedAt, n, legacyPollPolicy)
	}
	return max(bulkdata.NextPollDelay(ip.RetryAfter, ip.ReceivedAt, n, ImportPollPolicy), importPollFloor(n))
}

// importPollFloor is the least wait after the n-th poll of one export:
// ImportPollPolicy.MinDelay after the first, growing by half each poll up
// to ImportPollFloorCap (5 s, 7.5 s, 11 s, ... 1 min from the 9th poll).
// A server that answers "Retry-After: 1" for hours is then asked about
// once a minute, not every second: at most ~1,450 polls a day.
func importPollFloor(n int) time.Duration {
	d := ImportPollPolicy.MinDelay
	if d <= 0 {
		d = bulkdata.DefaultPollPolicy.MinDelay
	}
	for i := 1; i < n && d < ImportPollFloorCap; i++ {
		d += d / 2
	}
	return min(d, max(ImportPollFloorCap, ImportPollPolicy.MinDelay))
}

// continueAsNew is the error that ends this run of the import, polled
// times into round (kicked off as k), and starts the next with the
// import's state.
func (r *importRun) continueAsNew(ctx workflow.Context, round int, k activities.KickedOff, polled int) error {
	runs := 1
	if r.in.Resume != nil {
		runs += r.in.Resume.Runs
	}
	next := Input{TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, Resume: &ImportResume{
		State: r.state, Identity: r.identity, PatientID: r.patientID, Plan: r.plan,
		Round: round, KickedOff: k, Polls: polled, Runs: runs,
	}}
	return workflow.NewContinueAsNewError(ctx, ImportWorkflowName, next)
}

// recordManifest records the complete export's manifest, and that it
// reports errors if it does.
func (r *importRun) recordManifest(ctx workflow.Context, got fetched) error {
	m := got.polled.Status.Complete.Manifest
	ev := transfer.BulkManifest(got.round, got.polled.ManifestSHA256, len(m.Output), len(m.Error), m.TransactionTime, m.RequiresAccessToken)
	if err := r.enter(ctx, activities.Step(ev)); err != nil {
		return err
	}
	if len(m.Error) == 0 {
		return nil
	}
	// Partial data is kept and flagged (ExportInfo.Partial); the error
	// files themselves are downloaded beside the data.
	return r.enter(ctx, activities.Step(transfer.BulkErrors(got.round, len(m.Error))))
}

// download fetches every output and error file of got's manifest, in
// parallel (the partner's task queue bounds how many at once), and returns
// got with them; expired if a file was gone: kick off again.
func (r *importRun) download(ctx workflow.Context, got fetched) (fetched, error) {
	m := got.polled.Status.Complete.Manifest
	r.staged = true
	type job struct {
		f   bulkdata.OutputFile
		n   int
		err bool
	}
	var jobs []job
	for i, n := range bulkdata.OutputSeq(m.Output) {
		jobs = append(jobs, job{m.Output[i], n, false})
	}
	for i, n := range bulkdata.OutputSeq(m.Error) {
		jobs = append(jobs, job{m.Error[i], n, true})
	}
	futures := make([]workflow.Future, len(jobs))
	for i, j := range jobs {
		futures[i] = workflow.ExecuteActivity(r.partnerCtx(ctx, activities.NameDownloadImportFile), imp.DownloadImportFile, activities.DownloadInput{
			TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, Round: got.round, File: j.f, N: j.n, Error: j.err,
			RequiresAccessToken: m.RequiresAccessToken,
		})
	}
	got.files = make([]transfer.ExportFile, len(jobs))
	var firstErr error
	for i, fu := range futures {
		err := fu.Get(ctx, &got.files[i])
		switch {
		case isErrType(err, fault.TypeExportExpired):
			got.expired = true
		case err != nil && firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return fetched{}, firstErr
	}
	if got.expired {
		r.statusURL = "" // the export is gone at the partner
	}
	return got, nil
}

// versionImportDeleteExpired is the GetVersion change id of the DELETE of
// an export whose files expired: histories from before it kick off again
// without it.
const versionImportDeleteExpired = "import-delete-expired"

// expiredDeleteBudget bounds the DELETE of an expired export (its
// attempts included): a courtesy that must not hold up the kick-off that
// follows, unlike the DELETE of a failed import, which has its policy's
// hours.
const expiredDeleteBudget = 2 * time.Minute

// deleteExpired DELETEs the status URL of an export whose files expired
// before we had them all, before the next kick-off: the old payer may
// otherwise keep the job, and the member's data, until its own clean-up.
// Best effort: a DELETE that fails within expiredDeleteBudget is recorded
// (bulk_delete_failed) and the import goes on; one that succeeds is
// recorded by DeleteImport (bulk_deleted). Only a cancellation is an
// error.
func (r *importRun) deleteExpired(ctx workflow.Context, round int, statusURL string) error {
	if workflow.GetVersion(ctx, versionImportDeleteExpired, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	dctx := workflow.WithScheduleToCloseTimeout(r.partnerCtx(ctx, activities.NameDeleteImport), expiredDeleteBudget)
	err := workflow.ExecuteActivity(dctx, imp.DeleteImport, activities.DeleteInput{
		TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, StatusURL: statusURL, Reason: "file_expired",
	}).Get(ctx, nil)
	if err == nil {
		return nil
	}
	if temporal.IsCanceledError(err) {
		return err
	}
	return r.enter(ctx, activities.Step(transfer.BulkDeleteFailed(round, errorType(err))))
}

// errorType is the type of an activity's failure: "timeout" when its
// budget ran out (whatever the last attempt's error), else its
// application error type, else "error". No message: it may quote a
// server.
func errorType(err error) string {
	var ae *temporal.ApplicationError
	var te *temporal.TimeoutError
	switch {
	case errors.As(err, &te):
		return "timeout"
	case errors.As(err, &ae):
		return ae.Type()
	}
	return "error"
}

// fail undoes what must be undone, on a disconnected context so that a
// cancelled import is compensated too: DELETE the export at the partner,
// remove staged files; then records the failure.
func (r *importRun) fail(ctx workflow.Context, f *transfer.ErrorInfo) (Result, error) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	detail := transfer.ImportFailedDetail{ErrorType: f.Type, AfterState: r.state}
	if r.statusURL != "" {
		comp := activities.Policies[activities.NameKickOffImport].Compensation
		err := workflow.ExecuteActivity(r.partnerCtx(dctx, comp), imp.DeleteImport, activities.DeleteInput{
			TransferID: r.in.TransferID, PartnerID: r.in.PartnerID, StatusURL: r.statusURL, Reason: f.Type,
		}).Get(dctx, nil)
		// An export nobody could delete expires at the partner: the
		// failure is recorded either way.
		deleted := err == nil
		detail.ExportDeleted = &deleted
	}
	if r.staged {
		comp := activities.Policies[activities.NameDownloadImportFile].Compensation
		if err := workflow.ExecuteActivity(activities.WithOptions(dctx, comp), imp.DiscardImport, activities.DiscardInput{
			TransferID: r.in.TransferID, Reason: f.Type,
		}).Get(dctx, nil); err != nil {
			return Result{}, err
		}
		detail.StagedDiscarded = true
	}
	failed := activities.Step(transfer.ImportFailed(detail))
	failed.Error = f
	if r.identity.Status != "" {
		failed.Identity = &r.identity
	}
	if err := r.enter(dctx, failed); err != nil {
		return Result{}, err
	}
	return Result{State: transfer.StateFailed, Error: f}, nil
}

func isErrType(err error, typ string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == typ
}

// importFailureOf maps an error an import's activity gave up with to the
// transfer's failure.
func importFailureOf(err error, state transfer.State) *transfer.ErrorInfo {
	if ae, class := activityFault(err); ae != nil {
		switch {
		case passesThrough(ae.Type()):
			return &transfer.ErrorInfo{Type: ae.Type(), Detail: ae.Message()}
		case class == fault.Auth:
			return &transfer.ErrorInfo{Type: transfer.ErrorPartnerAuth, Detail: ae.Message()}
		case class == fault.Validation:
			return &transfer.ErrorInfo{Type: transfer.ErrorPartnerBadResponse, Detail: ae.Message()}
		case class.Retryable():
			return &transfer.ErrorInfo{Type: transfer.ErrorPartnerUnavailable, Detail: "the old payer could not be reached: " + ae.Message()}
		}
	}
	if temporal.IsCanceledError(err) {
		return &transfer.ErrorInfo{Type: transfer.ErrorCancelled, Detail: "the transfer was cancelled"}
	}
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		return &transfer.ErrorInfo{Type: transfer.ErrorPartnerUnavailable, Detail: "the old payer did not answer in time: " + err.Error()}
	}
	return &transfer.ErrorInfo{Type: transfer.ErrorInternal, Detail: "step after " + string(state) + " failed: " + err.Error()}
}
