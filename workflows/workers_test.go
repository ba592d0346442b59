package workflows

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
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

// TestPartnerActivityQueue: downloads go to the partner's downloads queue,
// every other partner call to the partner's queue.
func TestPartnerActivityQueue(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{activities.NameDownloadImportFile, "q-partner-a-downloads"},
		{activities.NameSendExport, "q-partner-a"},
		{activities.NameMatchAtPartner, "q-partner-a"},
		{activities.NamePollImport, "q-partner-a"},
		{activities.NameKickOffImport, "q-partner-a"},
		{activities.NameDeleteImport, "q-partner-a"},
	} {
		if got := PartnerActivityQueue("q", "a", c.name); got != c.want {
			t.Errorf("%s runs on %s, want %s", c.name, got, c.want)
		}
	}
}

// TestPartnerWorkers: each partner gets a worker for its calls and one for
// its downloads, each under its own concurrency; a partner added on reload
// gets both.
func TestPartnerWorkers(t *testing.T) {
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ws := NewWorkers(c, "q", []connectors.Partner{{ID: "a", RateLimit: 1, Concurrency: 3, DownloadConcurrency: 1}}, noDeps(), worker.Options{})
	if err := ws.Ensure([]connectors.Partner{{ID: "a"}, {ID: "b", RateLimit: 1, Concurrency: 1, DownloadConcurrency: 1}}); err != nil {
		t.Fatal(err)
	}
	want := []string{"q", "q-partner-a", "q-partner-a-downloads", "q-partner-b", "q-partner-b-downloads"}
	if got := ws.Queues(); !slices.Equal(got, want) {
		t.Fatalf("queues %v, want %v", got, want)
	}
	reg := ws.Registered().Queues
	for _, p := range []string{"a", "b"} {
		if got := reg[PartnerDownloadQueue("q", p)]; !slices.Equal(got, []string{"activity " + activities.NameDownloadImportFile}) {
			t.Errorf("downloads queue of %s registers %v", p, got)
		}
		// Downloads scheduled on the partner's queue before they had
		// their own still find a worker there.
		if got := reg[PartnerTaskQueue("q", p)]; !slices.Contains(got, "activity "+activities.NameDownloadImportFile) {
			t.Errorf("queue of %s registers %v, without the downloads scheduled there", p, got)
		}
	}
}

// TestPartnerOptions: a partner queue's worker takes its limits from the
// partner and its graceful stop, identity and interceptors from the
// transfers' worker.
func TestPartnerOptions(t *testing.T) {
	o := worker.Options{WorkerStopTimeout: 7 * time.Second, Identity: "w1", MaxConcurrentActivityExecutionSize: 100}
	got := partnerOptions(o, 2.5, 3)
	if got.WorkerStopTimeout != 7*time.Second || got.Identity != "w1" || got.MaxConcurrentActivityExecutionSize != 3 ||
		got.TaskQueueActivitiesPerSecond != 2.5 || !got.DisableWorkflowWorker {
		t.Errorf("partner options %+v", got)
	}
}
