package workflows

import (
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/transfer"
)

// runChain runs the import as the server runs a workflow that continues
// as new: each run to its end, the next with the input the previous one
// asked for, on the clock where the previous one stopped. It returns how
// the import ended, the polls of each run and the inputs that started the
// runs after the first.
func (h *importHarness) runChain(maxRuns int) (Result, []int, []Input) {
	h.t.Helper()
	in := Input{TransferID: "t1", PartnerID: "oldco"}
	var perRun []int
	var resumed []Input
	for run := range maxRuns {
		if run > 0 {
			now := h.env.Now()
			next := newHarness(h.t)
			next.recorded = h.recorded
			h.harness = next
			h.env.SetStartTime(now)
			h.mock()
			resumed = append(resumed, in)
		}
		h.env.SetTestTimeout(time.Minute)
		before := len(h.polls)
		h.env.ExecuteWorkflow(ImportTransfer, in)
		perRun = append(perRun, len(h.polls)-before)
		if !h.env.IsWorkflowCompleted() {
			h.t.Fatalf("run %d did not complete", run+1)
		}
		err := h.env.GetWorkflowError()
		var can *workflow.ContinueAsNewError
		if errors.As(err, &can) {
			if can.WorkflowType.Name != ImportWorkflowName {
				h.t.Fatalf("continued as %q", can.WorkflowType.Name)
			}
			in = Input{}
			if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
				h.t.Fatal(err)
			}
			continue
		}
		if err != nil {
			h.t.Fatalf("run %d: %v", run+1, err)
		}
		var r Result
		if err := h.env.GetWorkflowResult(&r); err != nil {
			h.t.Fatal(err)
		}
		return r, perRun, resumed
	}
	h.t.Fatalf("the import did not end in %d runs", maxRuns)
	return Result{}, nil, nil
}

// setPolling sets the poll bounds for one test.
func setPolling(t *testing.T, perRun int, budget time.Duration) {
	t.Helper()
	oldRun, oldPolicy := ImportPollsPerRun, ImportPollPolicy
	t.Cleanup(func() { ImportPollsPerRun, ImportPollPolicy = oldRun, oldPolicy })
	ImportPollsPerRun = perRun
	if budget > 0 {
		ImportPollPolicy.Budget = budget
	}
}

// A server that keeps answering "Retry-After: 1" is polled no sooner than
// the floor, which grows from 5 s to a minute; a longer Retry-After is
// honoured exactly (TestImportHappyPath), and so is an absent one's
// backoff.
func TestImportPollFloor(t *testing.T) {
	for _, c := range []struct {
		retryAfter string
		want       []time.Duration // least gap after poll 1, 2, ...
	}{
		{"1", []time.Duration{5 * time.Second, 7500 * time.Millisecond, 11250 * time.Millisecond, 16875 * time.Millisecond,
			25312500 * time.Microsecond, 37968750 * time.Microsecond, 56953125 * time.Microsecond, time.Minute, time.Minute, time.Minute}},
		{"0", []time.Duration{5 * time.Second, 7500 * time.Millisecond}},
		{"90", []time.Duration{90 * time.Second, 90 * time.Second, 90 * time.Second}},
	} {
		t.Run("Retry-After "+c.retryAfter, func(t *testing.T) {
			h := newImportHarness(t)
			h.inProgress, h.retryAfter = len(c.want), c.retryAfter
			if r := h.run(); r.State != transfer.StateComplete {
				t.Fatalf("result %+v", r)
			}
			if len(h.polls) != len(c.want)+1 {
				t.Fatalf("polls %d, want %d", len(h.polls), len(c.want)+1)
			}
			for i, want := range c.want {
				if gap := h.polls[i+1].Sub(h.polls[i]); gap < want || gap > want+time.Second {
					t.Errorf("poll %d came %v after poll %d, want %v", i+2, gap, i+1, want)
				}
			}
		})
	}
}

// After ImportPollsPerRun polls the import continues as new with its state
// and polls on in the next run, where it completes: the kick-off is not
// repeated, the floor goes on growing, and nothing is compensated.
func TestImportContinuesAsNewAfterPollsPerRun(t *testing.T) {
	setPolling(t, 4, 0)
	h := newImportHarness(t)
	h.inProgress, h.retryAfter = 10, "1"
	r, perRun, resumed := h.runChain(10)
	if r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	if want := []int{4, 4, 3}; len(perRun) != 3 || perRun[0] != want[0] || perRun[1] != want[1] || perRun[2] != want[2] {
		t.Errorf("polls per run %v, want %v", perRun, want)
	}
	if len(h.kickoffs) != 1 || len(h.deletes) != 1 || h.deletes[0].Reason != "done" || h.discards != 0 {
		t.Errorf("kick-offs %d, deletes %+v, discards %d: want one kick-off and the clean-up only", len(h.kickoffs), h.deletes, h.discards)
	}
	rs := resumed[1].Resume
	if rs == nil || rs.Round != 1 || rs.Polls != 8 || rs.Runs != 2 || rs.State != transfer.StateConsentVerified ||
		rs.KickedOff.StatusURL != h.deletes[0].StatusURL || rs.PatientID != "p1" || rs.Identity.MemberID != "OLD-M1" || len(rs.Plan.Types) != 2 {
		t.Errorf("third run resumed with %+v", rs)
	}
	// The floor did not restart with a run: the gap after poll 8 (the
	// last of run 2) is the 8th floor, a minute.
	if gap := h.polls[8].Sub(h.polls[7]); gap < time.Minute {
		t.Errorf("gap across the runs %v, want a minute", gap)
	}
	h.wantStates(happyPath...)
}

// When the server suggests it (history large), the import continues as
// new after the poll that follows, whatever ImportPollsPerRun says.
func TestImportContinuesAsNewWhenSuggested(t *testing.T) {
	h := newImportHarness(t)
	h.inProgress = 5
	h.env.SetContinueAsNewSuggested(true)
	h.env.ExecuteWorkflow(ImportTransfer, Input{TransferID: "t1", PartnerID: "oldco"})
	var can *workflow.ContinueAsNewError
	if err := h.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want to continue as new", err)
	}
	if len(h.polls) != 1 || len(h.deletes) != 0 {
		t.Errorf("polls %d, deletes %d: want one poll and nothing undone", len(h.polls), len(h.deletes))
	}
}

// A run that resumed a poll still compensates: the export failing at the
// partner in a later run DELETEs the status URL the first run kicked off
// and records the failure with the identity carried over.
func TestImportFailureAfterContinueAsNewCompensates(t *testing.T) {
	setPolling(t, 2, 0)
	h := newImportHarness(t)
	h.inProgress = -1
	h.failAfter = 5 // the 5th poll answers that the export failed
	r, perRun, _ := h.runChain(10)
	if r.State != transfer.StateFailed || r.Error == nil || r.Error.Type != transfer.ErrorExportFailed {
		t.Fatalf("result %+v", r)
	}
	if len(perRun) != 3 {
		t.Errorf("runs %v, want 3", perRun)
	}
	if len(h.deletes) != 1 || h.deletes[0].StatusURL != "https://old.example/fhir/bulkstatus/1" || h.deletes[0].Reason != transfer.ErrorExportFailed {
		t.Errorf("deletes %+v, want the kicked-off export deleted", h.deletes)
	}
	last := h.last()
	if last.State != transfer.StateFailed || last.Identity == nil || last.Identity.MemberID != "OLD-M1" {
		t.Errorf("failure recorded as %+v", last)
	}
}

// The acceptance bound: an import polled 10,000 times completes, no run
// polling more than ImportPollsPerRun times (about 11 history events a
// poll: TestImportHistoryBoundOnServer counts them on a real server).
func TestImportPolledTenThousandTimesCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 polls")
	}
	setPolling(t, ImportPollsPerRun, 30*24*time.Hour)
	h := newImportHarness(t)
	h.inProgress, h.retryAfter = 10000, "1"
	r, perRun, _ := h.runChain(100)
	if r.State != transfer.StateComplete {
		t.Fatalf("result %+v", r)
	}
	total := 0
	for i, n := range perRun {
		total += n
		if n > ImportPollsPerRun {
			t.Errorf("run %d polled %d times", i+1, n)
		}
	}
	if total != 10001 || len(h.kickoffs) != 1 || len(h.deletes) != 1 {
		t.Errorf("polls %d in %d runs, kick-offs %d, deletes %d", total, len(perRun), len(h.kickoffs), len(h.deletes))
	}
}
