package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/transfer"
)

// ServeExport is a FHIR Bulk Data export we serve to a partner that matched
// our members with $member-match (we are the old payer; package pdex
// serves the HTTP side). It walks the transfer state machine:
//
//	initiated (kick-off) → identity_pending → consent_verified (the
//	requester's match grants re-checked) → payload_prepared (files built
//	and stored by digest) → sent (the complete manifest first served) →
//	acknowledged (every file downloaded at least once) → complete
//
// Then the files stay downloadable until they expire (Input.FileTTL after
// they were prepared) and are withdrawn (PHI deleted, digests kept). If the
// requester does not download every file before they expire, the transfer
// fails with ack_timeout; if it deletes the export (DELETE on the status
// URL) before completion, it fails cancelled; both withdraw the files.
//
// Registered under names that are part of its contract with running
// histories: never rename them.
const (
	ServeExportWorkflowName = "ServeExport"
	// SignalManifestServed: the complete manifest was served (no payload).
	SignalManifestServed = "manifest-served"
	// SignalFileDownloaded: a file was downloaded (payload: its digest).
	SignalFileDownloaded = "file-downloaded"
	// UpdateDeleteExport: the requester deleted the export; it completes
	// once the files are withdrawn.
	UpdateDeleteExport = "delete-export"
)

// DefaultFileTTL is how long a served export's files stay downloadable.
const DefaultFileTTL = 24 * time.Hour

// ServeInput starts a served export. It names members by id; the kick-off
// parameters hold no PHI.
type ServeInput struct {
	TransferID      string
	Requester       string // partner id
	MemberIDs       []string
	Types           []string   // Bulk Data _type; empty: every type
	Since           *time.Time // Bulk Data _since
	TransactionTime time.Time
	Request         string        // the kick-off URL
	FileTTL         time.Duration // 0: DefaultFileTTL
}

type serve struct {
	run
	sin        ServeInput
	served     bool
	downloaded map[string]bool
	deleted    bool // the requester asked to delete the export
	closed     bool // the files are withdrawn, or the transfer ended without any
}

// srv names a served export's activities for ExecuteActivity; its steps
// are recorded with rec, and its files withdrawn with push.WithdrawExport.
var srv *activities.Serve

// ServeExport is the served export workflow.
func ServeExport(ctx workflow.Context, in ServeInput) (Result, error) {
	s := &serve{run: run{in: Input{TransferID: in.TransferID, PartnerID: in.Requester}, state: transfer.StateInitiated},
		sin: in, downloaded: map[string]bool{}}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (transfer.State, error) { return s.state, nil }); err != nil {
		return Result{}, err
	}
	if err := workflow.SetUpdateHandler(ctx, UpdateDeleteExport, func(ctx workflow.Context) error {
		s.deleted = true
		return workflow.Await(ctx, func() bool { return s.closed })
	}); err != nil {
		return Result{}, err
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		ch := workflow.GetSignalChannel(ctx, SignalManifestServed)
		for ch.Receive(ctx, nil) {
			s.served = true
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		ch := workflow.GetSignalChannel(ctx, SignalFileDownloaded)
		var digest string
		for ch.Receive(ctx, &digest) {
			s.downloaded[digest] = true
		}
	})

	res, err := s.steps(ctx)
	s.closed = true
	// Let a delete waiting for the withdrawal answer before the workflow
	// ends.
	if werr := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); werr != nil && err == nil {
		err = werr
	}
	return res, err
}

func (s *serve) steps(ctx workflow.Context) (Result, error) {
	failure, err := s.serveSteps(ctx)
	if err != nil {
		failure = failureOf(err, s.state)
	}
	if failure != nil {
		return s.fail(ctx, failure)
	}
	return Result{State: s.state}, nil
}

func (s *serve) serveSteps(ctx workflow.Context) (*transfer.ErrorInfo, error) {
	if err := s.enter(ctx, activities.Step(transfer.ServePending(s.sin.MemberIDs))); err != nil {
		return nil, err
	}
	var g activities.Grants
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NameCheckGrants), srv.CheckGrants,
		activities.GrantsInput{TransferID: s.sin.TransferID, Requester: s.sin.Requester, MemberIDs: s.sin.MemberIDs}).Get(ctx, &g); err != nil {
		return nil, err
	}
	if len(g.Members) == 0 {
		return &transfer.ErrorInfo{Type: transfer.ErrorConsentDenied,
			Detail: "the requester holds no match grant in force for the members asked for"}, nil
	}
	s.identity = transfer.IdentityOutcome{Status: transfer.IdentityResolved, Score: 1,
		Rationale: &transfer.Rationale{Rule: "match_grant", Summary: "members the requester matched with $member-match"}}
	consent := transfer.ConsentOutcome{Status: transfer.ConsentVerified, CheckedAt: workflow.Now(ctx).UTC()}
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.MemberID
	}
	if len(g.Members) == 1 {
		s.identity.MemberID = g.Members[0].MemberID
		consent.ConsentID, consent.Scope = g.Members[0].ConsentID, g.Members[0].ConsentScope
	}
	verified := activities.Step(transfer.ServeVerified(ids, g.Dropped))
	verified.Identity, verified.Consent = &s.identity, &consent
	if err := s.enter(ctx, verified); err != nil {
		return nil, err
	}

	ttl := s.sin.FileTTL
	if ttl <= 0 {
		ttl = DefaultFileTTL
	}
	expires := workflow.Now(ctx).Add(ttl)
	var p activities.Prepared
	if err := workflow.ExecuteActivity(activities.WithOptions(ctx, activities.NamePrepareServedExport), srv.PrepareServedExport,
		activities.ServeInput{TransferID: s.sin.TransferID, Requester: s.sin.Requester, Members: g.Members, Types: s.sin.Types,
			Since: s.sin.Since, TransactionTime: s.sin.TransactionTime, Request: s.sin.Request, Expires: expires}).Get(ctx, &p); err != nil {
		return nil, err
	}
	s.prepared = &p
	prepared := activities.Step(transfer.ServedPrepared(p.Export))
	prepared.Export = &p.Export
	if err := s.enter(ctx, prepared); err != nil {
		return nil, err
	}

	if f, err := s.await(ctx, expires, func() bool { return s.served },
		"the requester did not fetch the manifest before the files expired"); f != nil || err != nil {
		return f, err
	}
	if err := s.enter(ctx, activities.Step(transfer.ManifestFetched(s.sin.Requester, len(p.Export.Files)))); err != nil {
		return nil, err
	}
	all := func() bool {
		for _, f := range p.Export.Files {
			if !s.downloaded[f.SHA256] {
				return false
			}
		}
		return true
	}
	if f, err := s.await(ctx, expires, all, "the requester did not download every file before they expired"); f != nil || err != nil {
		return f, err
	}
	acked := p.Export
	ackStep := activities.Step(transfer.FilesDownloaded(s.sin.Requester, len(p.Export.Files)))
	ackStep.Export = &acked
	if err := s.enter(ctx, ackStep); err != nil {
		return nil, err
	}
	if err := s.enter(ctx, activities.Step(transfer.Entered(transfer.StateComplete, nil))); err != nil {
		return nil, err
	}

	// Complete: the files stay downloadable until they expire or the
	// requester deletes the export, then their PHI is withdrawn.
	_, waitErr := workflow.AwaitWithTimeout(ctx, positive(expires.Sub(workflow.Now(ctx))), func() bool { return s.deleted })
	reason := "expired"
	switch {
	case waitErr != nil:
		reason = "cancelled"
	case s.deleted:
		reason = "deleted"
	}
	// Disconnected: a cancelled workflow still withdraws the PHI.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if err := workflow.ExecuteActivity(activities.WithOptions(dctx, activities.NameWithdrawExport), push.WithdrawExport,
		activities.WithdrawInput{TransferID: s.sin.TransferID, Reason: reason}).Get(dctx, nil); err != nil {
		return nil, err
	}
	return nil, waitErr
}

// await waits for cond until expires. A delete or the expiry ends the
// transfer (cancelled, or ack_timeout with why).
func (s *serve) await(ctx workflow.Context, expires time.Time, cond func() bool, why string) (*transfer.ErrorInfo, error) {
	ok, err := workflow.AwaitWithTimeout(ctx, positive(expires.Sub(workflow.Now(ctx))), func() bool { return cond() || s.deleted })
	switch {
	case err != nil:
		return nil, err
	case s.deleted:
		return &transfer.ErrorInfo{Type: transfer.ErrorCancelled, Detail: "the requester deleted the export"}, nil
	case !ok:
		return &transfer.ErrorInfo{Type: transfer.ErrorAckTimeout, Detail: why}, nil
	}
	return nil, nil
}

// positive keeps a timer's duration above zero (a timer of zero or less
// is refused).
func positive(d time.Duration) time.Duration { return max(d, time.Millisecond) }
