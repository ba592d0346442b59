package activities

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// slowSource is the synthetic source answering after delay, as a remote
// FHIR server under load does; it counts its calls.
type slowSource struct {
	delay time.Duration
	calls atomic.Int32
}

func (s *slowSource) Resources(ctx context.Context, m member.Record) ([]export.Resource, error) {
	s.calls.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return export.SyntheticSource{}.Resources(ctx, m)
}

// runWithPolicy runs activity name once from a workflow, with the options
// of its row of Policies, its heartbeat timeout replaced by heartbeat
// when that is not zero, and at most two attempts: the test environment
// enforces heartbeat timeouts in real time.
func runWithPolicy(t *testing.T, acts any, name string, heartbeat time.Duration, in, out any) error {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	env.RegisterActivity(acts)
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		o := Options(name)
		if heartbeat > 0 {
			o.HeartbeatTimeout = heartbeat
		}
		o.RetryPolicy.MaximumAttempts = 2
		return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, o), name, in).Get(ctx, out)
	}, workflow.RegisterOptions{Name: "once"})
	env.ExecuteWorkflow("once")
	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	return env.GetWorkflowError()
}

// A source slower than the heartbeat timeout exports on the first attempt:
// PrepareExport and PrepareServedExport heartbeat while the source works,
// not only once it has answered. Before they did, every attempt was killed
// by the heartbeat timeout and the transfer failed after two hours.
func TestSlowSourceExportsOnTheFirstAttempt(t *testing.T) {
	cases := []struct {
		name      string
		heartbeat time.Duration // 0: the policy's (20 s)
		delay     time.Duration
	}{
		// A short-timeout copy of the policy: the same shape in a second.
		{"scaled", 200 * time.Millisecond, 700 * time.Millisecond},
		// The acceptance case: the policy's own 20 s, a 25 s source.
		{"policy", 0, 25 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.heartbeat == 0 && testing.Short() {
				t.Skip("a 25 s source takes 25 s per activity")
			}
			if hb := Policies[NamePrepareExport].Heartbeat; c.heartbeat == 0 && c.delay <= hb {
				t.Fatalf("the source (%v) must be slower than the heartbeat timeout (%v)", c.delay, hb)
			}
			t.Run("PrepareExport", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				src := &slowSource{delay: c.delay}
				f.acts.Source = src
				f.create(t, "t1", transfer.Demographics{MemberID: "M1"}, activeConsent)
				var p Prepared
				if err := runWithPolicy(t, f.acts, NamePrepareExport, c.heartbeat, PrepareInput{TransferID: "t1", MemberID: "M1"}, &p); err != nil {
					t.Fatalf("export failed: %v", err)
				}
				if n := src.calls.Load(); n != 1 || p.Export.ManifestSHA256 == "" {
					t.Errorf("source called %d times, manifest %q: want one attempt that exports", n, p.Export.ManifestSHA256)
				}
			})
			t.Run("PrepareServedExport", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				src := &slowSource{delay: c.delay}
				f.create(t, "t1", transfer.Demographics{MemberID: "M1"}, activeConsent)
				acts := &Serve{Env: f.acts.Env, Store: f.st, Source: src}
				in := ServeInput{TransferID: "t1", Requester: "sandbox", TransactionTime: t0, Expires: t0.Add(time.Hour),
					Members: []GrantedMember{{MemberID: "M1", ConsentID: "c1", ConsentScope: transfer.ScopeRegular, Expires: t0.AddDate(1, 0, 0)}}}
				var p Prepared
				if err := runWithPolicy(t, acts, NamePrepareServedExport, c.heartbeat, in, &p); err != nil {
					t.Fatalf("served export failed: %v", err)
				}
				if n := src.calls.Load(); n != 1 || p.Export.ManifestSHA256 == "" {
					t.Errorf("source called %d times, manifest %q: want one attempt that exports", n, p.Export.ManifestSHA256)
				}
				arts, err := f.st.ListArtifacts(context.Background(), "t1")
				if err != nil || len(arts) == 0 {
					t.Errorf("artifacts %v, %v", arts, err)
				}
			})
		})
	}
}
