package workflows

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/transfer"
)

// importHarness runs ImportTransfer over mocked activities.
type importHarness struct {
	*harness
	mu        sync.Mutex
	polls     []time.Time // workflow clock at each poll
	deletes   []activities.DeleteInput
	discards  int
	downloads []activities.DownloadInput
	kickoffs  []activities.KickOffInput
	// inProgress is how many polls answer 202 with retryAfter before the
	// manifest; -1: forever.
	inProgress int
	retryAfter string
	errorFiles int
	// expire makes the first expire downloads answer 410.
	expire int
	// match is MatchAtPartner's answer; deliverErr DeliverImport's error.
	match      activities.Matched
	deliverErr error
	// expiredDeleteErr fails the DELETE of an expired export;
	// kickoffsAtDelete is how many kick-offs preceded each DELETE.
	expiredDeleteErr error
	kickoffsAtDelete []int
	// failAfter > 0: that poll answers that the export failed.
	failAfter int
}

var (
	matched = activities.Matched{Status: transfer.IdentityResolved, MemberID: "OLD-M1", PatientID: "p1", HTTPStatus: 200, ConsentID: "c1", Scope: "regular"}
	tt      = time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
)

func count(n int64) *int64 { return &n }

func newImportHarness(t *testing.T) *importHarness {
	h := &importHarness{harness: newHarness(t), retryAfter: "120", inProgress: 2, match: matched}
	h.mock()
	return h
}

// mock registers the import and mocks its activities on h.env.
func (h *importHarness) mock() {
	h.env.RegisterWorkflowWithOptions(ImportTransfer, workflow.RegisterOptions{Name: ImportWorkflowName})
	h.env.OnActivity(imp.MatchAtPartner, mock.Anything, mock.Anything).Return(func(context.Context, activities.ImportInput) (activities.Matched, error) {
		return h.match, nil
	})
	h.env.OnActivity(imp.PlanImport, mock.Anything, mock.Anything).Return(activities.Plan{Types: []string{"Patient", "Coverage"},
		Since: tt.AddDate(-5, 0, 0), SinceSource: "window"}, nil)
	h.env.OnActivity(imp.KickOffImport, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.KickOffInput) (activities.KickedOff, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.kickoffs = append(h.kickoffs, in)
		return activities.KickedOff{StatusURL: "https://old.example/fhir/bulkstatus/" + string(rune('0'+len(h.kickoffs))), At: h.env.Now()}, nil
	})
	h.env.OnActivity(imp.PollImport, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PollInput) (activities.Polled, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		now := h.env.Now()
		h.polls = append(h.polls, now)
		if h.failAfter > 0 && len(h.polls) == h.failAfter {
			return activities.Polled{Status: bulkdata.Status{State: bulkdata.StateFailed, Failed: &bulkdata.Failed{StatusCode: 500}}}, nil
		}
		if h.inProgress < 0 || len(h.polls) <= h.inProgress {
			return activities.Polled{Status: bulkdata.Status{State: bulkdata.StateInProgress,
				InProgress: &bulkdata.InProgress{RetryAfter: h.retryAfter, ReceivedAt: now}}}, nil
		}
		m := bulkdata.Manifest{TransactionTime: tt, Request: "https://old.example/fhir/Patient/$export", RequiresAccessToken: true,
			Output: []bulkdata.OutputFile{
				{Type: "Patient", URL: in.StatusURL + "/f/0", Count: count(1)},
				{Type: "Coverage", URL: in.StatusURL + "/f/1", Count: count(2)},
				{Type: "Coverage", URL: in.StatusURL + "/f/2", Count: count(1)},
			}, Error: []bulkdata.OutputFile{}}
		for i := range h.errorFiles {
			m.Error = append(m.Error, bulkdata.OutputFile{Type: "OperationOutcome", URL: in.StatusURL + "/e/" + string(rune('0'+i))})
		}
		return activities.Polled{Status: bulkdata.Status{State: bulkdata.StateComplete, Complete: &bulkdata.Complete{Manifest: m}}, ManifestSHA256: "man1"}, nil
	})
	h.env.OnActivity(imp.DownloadImportFile, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DownloadInput) (transfer.ExportFile, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.downloads = append(h.downloads, in)
		if h.expire > 0 {
			h.expire--
			return transfer.ExportFile{}, temporal.NewNonRetryableApplicationError("gone", activities.ErrTypeExportExpired, nil)
		}
		n := 1
		if in.File.Count != nil {
			n = int(*in.File.Count)
		}
		return transfer.ExportFile{Type: in.File.Type, Count: n, SHA256: "sha-" + in.File.URL, Bytes: 10}, nil
	})
	h.env.OnActivity(imp.DeliverImport, mock.Anything, mock.Anything).Return(func(context.Context, activities.DeliverInput) (activities.Delivered, error) {
		if h.deliverErr != nil {
			return activities.Delivered{}, h.deliverErr
		}
		return activities.Delivered{Sink: "ndjson-dir", Location: "t1", ReceiptID: "rcpt", Files: 3}, nil
	})
	h.env.OnActivity(imp.DeleteImport, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteInput) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.deletes = append(h.deletes, in)
		h.kickoffsAtDelete = append(h.kickoffsAtDelete, len(h.kickoffs))
		if in.Reason == "file_expired" {
			return h.expiredDeleteErr
		}
		return nil
	})
	h.env.OnActivity(imp.DiscardImport, mock.Anything, mock.Anything).Return(func(context.Context, activities.DiscardInput) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.discards++
		return true, nil
	})
}

func (h *importHarness) run() Result {
	h.env.ExecuteWorkflow(ImportTransfer, Input{TransferID: "t1", PartnerID: "oldco"})
	if !h.env.IsWorkflowCompleted() {
		h.t.Fatal("workflow did not complete")
	}
	if err := h.env.GetWorkflowError(); err != nil {
		h.t.Fatalf("workflow error: %v", err)
	}
	var r Result
	if err := h.env.GetWorkflowResult(&r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *importHarness) events(typ string) []activities.RecordInput {
	var out []activities.RecordInput
	for _, r := range h.recorded {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func (h *importHarness) last() activities.RecordInput { return h.recorded[len(h.recorded)-1] }

func TestImportHappyPath(t *testing.T) {
	h := newImportHarness(t)
	r := h.run()
	if r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	h.wantStates(happyPath...)
	// Polls are apart by at least the Retry-After: never earlier.
	if len(h.polls) != 3 {
		t.Fatalf("polls %d, want 3", len(h.polls))
	}
	for i := 1; i < len(h.polls); i++ {
		if gap := h.polls[i].Sub(h.polls[i-1]); gap < 120*time.Second {
			t.Errorf("poll %d came %v after the previous one; Retry-After was 120 s", i+1, gap)
		}
	}
	k := h.kickoffs[0]
	if len(h.kickoffs) != 1 || k.PatientID != "p1" || k.Round != 1 || len(k.Types) != 2 || !k.Since.Equal(tt.AddDate(-5, 0, 0)) {
		t.Errorf("kick-offs %+v", h.kickoffs)
	}
	// Coverage has two files: ranks 1 and 2.
	rank := map[string]int{}
	for _, d := range h.downloads {
		if d.RequiresAccessToken {
			rank[d.File.URL[len(d.File.URL)-3:]] = d.N
		}
	}
	if len(h.downloads) != 3 || rank["f/0"] != 1 || rank["f/1"] != 1 || rank["f/2"] != 2 {
		t.Errorf("downloads %+v: want ranks 1 (Patient), 1 and 2 (Coverage), with the token", h.downloads)
	}
	var prepared *transfer.ExportInfo
	for _, rec := range h.recorded {
		if rec.State == transfer.StatePayloadPrepared {
			prepared = rec.Export
		}
	}
	if prepared == nil || len(prepared.Files) != 3 || prepared.TransactionTime == nil || !prepared.TransactionTime.Equal(tt) || prepared.Partial || prepared.ManifestSHA256 != "man1" {
		t.Fatalf("payload_prepared export = %+v", prepared)
	}
	for _, rec := range h.recorded {
		if rec.State == transfer.StateAcknowledged && (rec.Export == nil || rec.Export.ReceiptID != "rcpt") {
			t.Errorf("acknowledged without the sink's receipt: %+v", rec.Export)
		}
		if rec.State == transfer.StateConsentVerified && (rec.Identity == nil || rec.Identity.MemberID != "OLD-M1" || rec.Consent == nil || rec.Consent.Status != transfer.ConsentVerified) {
			t.Errorf("consent_verified record %+v", rec)
		}
	}
	// The export is deleted at the partner once the files are ours.
	if len(h.deletes) != 1 || h.deletes[0].Reason != "done" {
		t.Errorf("deletes %+v, want one clean-up", h.deletes)
	}
	if h.discards != 0 {
		t.Errorf("staged files discarded on success")
	}
}

func TestImportRefusedMatchFails(t *testing.T) {
	for _, c := range []struct {
		name    string
		matched activities.Matched
		want    string
	}{
		{"no match", activities.Matched{Status: transfer.ErrorNoMatch, Reason: "no_match", HTTPStatus: 422}, transfer.ErrorNoMatch},
		{"several", activities.Matched{Status: transfer.ErrorNoMatch, Reason: "multiple_matches", HTTPStatus: 422}, transfer.ErrorNoMatch},
		{"consent", activities.Matched{Status: transfer.ErrorConsentDenied, Reason: "consent_denied", HTTPStatus: 422}, transfer.ErrorConsentDenied},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newImportHarness(t)
			h.match = c.matched
			r := h.run()
			if r.State != transfer.StateFailed || r.Error == nil || r.Error.Type != c.want {
				t.Fatalf("result %+v, want failed %s", r, c.want)
			}
			h.wantStates(transfer.StateIdentityPending, transfer.StateFailed)
			h.wantCalls(activities.NameKickOffImport, 0)
			if len(h.deletes) != 0 || h.discards != 0 {
				t.Errorf("compensations ran with nothing to undo: deletes %d, discards %d", len(h.deletes), h.discards)
			}
			if c.matched.Reason == "multiple_matches" && r.Error.Detail == "no member matches at the old payer" {
				t.Errorf("detail does not say several matched: %q", r.Error.Detail)
			}
		})
	}
}

func TestImportGoneFileKicksOffAgain(t *testing.T) {
	h := newImportHarness(t)
	h.expire = 1
	r := h.run()
	if r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	if len(h.kickoffs) != 2 || h.kickoffs[1].Round != 2 {
		t.Fatalf("kick-offs %+v, want a second round", h.kickoffs)
	}
	if ev := h.events(transfer.EventImportRekicked); len(ev) != 1 {
		t.Errorf("re-kick-off events %d, want 1", len(ev))
	}
	// The expired export is deleted at the old payer before the second
	// kick-off; the second is deleted once its files are ours.
	if len(h.deletes) != 2 || h.deletes[0].StatusURL != "https://old.example/fhir/bulkstatus/1" || h.deletes[0].Reason != "file_expired" ||
		h.kickoffsAtDelete[0] != 1 || h.deletes[1].StatusURL != "https://old.example/fhir/bulkstatus/2" || h.deletes[1].Reason != "done" {
		t.Errorf("deletes %+v after %v kick-offs", h.deletes, h.kickoffsAtDelete)
	}
	if ev := h.events(transfer.EventBulkDeleteFailed); len(ev) != 0 {
		t.Errorf("delete failures recorded: %+v", ev)
	}
	// The second round's files are what was delivered.
	var deliveredRound int
	for _, d := range h.downloads[len(h.downloads)-3:] {
		deliveredRound = d.Round
	}
	if deliveredRound != 2 {
		t.Errorf("last downloads are of round %d", deliveredRound)
	}
}

// A DELETE of the expired export that fails does not stop the import:
// the failure is recorded and the export kicked off again.
func TestImportExpiredDeleteFailsGoesOn(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		wantType    string
		maxAttempts int
	}{
		{"refused", temporal.NewNonRetryableApplicationError("401", activities.ErrTypeAuth, nil), activities.ErrTypeAuth, 1},
		// Retried (2 s, 4 s, ... ) only within expiredDeleteBudget, not the
		// policy's two hours (some 30 attempts).
		{"down past the budget", temporal.NewApplicationError("503", activities.ErrTypeDownstream), activities.ErrTypeDownstream, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newImportHarness(t)
			h.expire = 1
			h.expiredDeleteErr = tc.err
			if r := h.run(); r.State != transfer.StateComplete {
				t.Fatalf("result %+v", r)
			}
			if len(h.kickoffs) != 2 {
				t.Errorf("kick-offs %d, want 2", len(h.kickoffs))
			}
			attempts := 0
			for _, d := range h.deletes {
				if d.Reason == "file_expired" {
					attempts++
				}
			}
			t.Logf("%d attempts to delete", attempts)
			if attempts < 1 || attempts > tc.maxAttempts {
				t.Errorf("%d attempts to delete, want 1 to %d", attempts, tc.maxAttempts)
			}
			ev := h.events(transfer.EventBulkDeleteFailed)
			if len(ev) != 1 || ev[0].Detail["round"] != float64(1) || ev[0].Detail["error_type"] != tc.wantType || ev[0].Detail["reason"] != "file_expired" {
				t.Errorf("delete failure events %+v, want one of type %s", ev, tc.wantType)
			}
		})
	}
}

func TestImportExpiringForeverFails(t *testing.T) {
	h := newImportHarness(t)
	h.expire = 100
	r := h.run()
	if r.State != transfer.StateFailed || r.Error.Type != transfer.ErrorExportExpired {
		t.Fatalf("result %+v", r)
	}
	if len(h.kickoffs) != MaxKickOffs {
		t.Errorf("kick-offs %d, want %d", len(h.kickoffs), MaxKickOffs)
	}
	// Every expired export is deleted, the last one too.
	if len(h.deletes) != MaxKickOffs {
		t.Errorf("deletes %+v, want one per expired export", h.deletes)
	}
	for i, d := range h.deletes {
		if d.Reason != "file_expired" || d.StatusURL != "https://old.example/fhir/bulkstatus/"+strconv.Itoa(i+1) {
			t.Errorf("delete %d: %+v", i, d)
		}
	}
	if h.discards != 1 {
		t.Errorf("discards %d, want the staged files removed once", h.discards)
	}
}

func TestImportManifestErrorsArePartial(t *testing.T) {
	h := newImportHarness(t)
	h.errorFiles = 1
	r := h.run()
	if r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	if ev := h.events(transfer.EventBulkErrors); len(ev) != 1 || ev[0].Detail["error_files"] != float64(1) {
		t.Fatalf("bulk_errors events %+v", ev)
	}
	var errorDownloads int
	for _, d := range h.downloads {
		if d.Error {
			errorDownloads++
		}
	}
	if errorDownloads != 1 {
		t.Errorf("error files downloaded %d, want 1", errorDownloads)
	}
	for _, rec := range h.recorded {
		if rec.State == transfer.StatePayloadPrepared && (rec.Export == nil || !rec.Export.Partial || len(rec.Export.Files) != 4) {
			t.Errorf("payload_prepared export %+v, want partial with 4 files", rec.Export)
		}
	}
}

func TestImportCancelledWhilePollingDeletesTheExport(t *testing.T) {
	h := newImportHarness(t)
	h.inProgress = -1
	h.env.RegisterDelayedCallback(h.env.CancelWorkflow, 10*time.Minute)
	r := h.run()
	if r.State != transfer.StateFailed || r.Error.Type != transfer.ErrorCancelled {
		t.Fatalf("result %+v", r)
	}
	if len(h.deletes) != 1 || h.deletes[0].Reason != transfer.ErrorCancelled || h.deletes[0].StatusURL != "https://old.example/fhir/bulkstatus/1" {
		t.Fatalf("deletes %+v, want the compensation", h.deletes)
	}
	if last := h.last(); last.State != transfer.StateFailed || last.Detail["export_deleted"] != true {
		t.Errorf("failure record %+v", last)
	}
}

func TestImportPollBudgetFails(t *testing.T) {
	h := newImportHarness(t)
	h.inProgress, h.retryAfter = -1, "3600"
	r := h.run()
	if r.State != transfer.StateFailed || r.Error.Type != transfer.ErrorExportTimeout {
		t.Fatalf("result %+v", r)
	}
	if n := len(h.polls); n < 24 || n > 26 {
		t.Errorf("polls %d over a day of hourly Retry-After", n)
	}
	if len(h.deletes) != 1 {
		t.Errorf("deletes %d, want the compensation", len(h.deletes))
	}
}

func TestImportDeliveryFailureUndoesBoth(t *testing.T) {
	h := newImportHarness(t)
	h.deliverErr = temporal.NewNonRetryableApplicationError("digest mismatch", activities.ErrTypeValidation, nil)
	r := h.run()
	if r.State != transfer.StateFailed || r.Error.Type != transfer.ErrorPartnerBadResponse {
		t.Fatalf("result %+v", r)
	}
	if len(h.deletes) != 1 || h.discards != 1 {
		t.Fatalf("deletes %d, discards %d: want both compensations", len(h.deletes), h.discards)
	}
}
