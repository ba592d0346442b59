package workflows

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
)

// noDeps are the activity groups without dependencies: the workflow tests
// mock every activity they run.
func noDeps() Activities {
	return Activities{
		Recorder: &activities.Recorder{}, Transfer: &activities.Transfer{}, Import: &activities.Import{},
		Serve: &activities.Serve{}, BulkMatch: &activities.BulkMatch{}, Maintenance: &activities.Maintenance{},
	}
}

// registerActivities registers every group on env, as Register does on a
// worker.
func registerActivities(env *testsuite.TestWorkflowEnvironment) {
	for _, g := range noDeps().groups() {
		env.RegisterActivity(g)
	}
}

// discard is a worker that registers nothing; recorder keeps the names.
type discard struct{ worker.Worker }

func (discard) RegisterWorkflowWithOptions(any, workflow.RegisterOptions) {}
func (discard) RegisterActivity(any)                                      {}
func (discard) RegisterActivityWithOptions(any, activity.RegisterOptions) {}

// TestActivityNames: the groups register every activity of the policy
// table once, under the name the histories record, on the transfers'
// queue; a partner's queue gets PartnerActivities only.
func TestActivityNames(t *testing.T) {
	activitiesOf := func(names []string) []string {
		var out []string
		for _, n := range names {
			if a, ok := strings.CutPrefix(n, "activity "); ok {
				out = append(out, a)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		queue    string
		register func(w worker.Worker)
		want     []string
	}{
		{"transfers", func(w worker.Worker) { Register(w, noDeps()) }, slices.Sorted(maps.Keys(activities.Policies))},
		{"partner", func(w worker.Worker) { RegisterPartnerActivities(w, noDeps()) }, slices.Sorted(slices.Values(activities.PartnerActivities))},
	} {
		r := &recorder{Worker: discard{}}
		c.register(r)
		if got := activitiesOf(r.names); !slices.Equal(got, c.want) {
			t.Errorf("%s queue registers %v, want %v", c.queue, got, c.want)
		}
	}
}
