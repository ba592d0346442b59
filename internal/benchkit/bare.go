package benchkit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// BareTaskQueue is the bare workflow's own task queue: never p2p's, so
// that p2p's worker and the bare one do not take each other's tasks.
const BareTaskQueue = "benchkit-bare"

// BareActivities is how many no-op activities the bare workflow runs one
// after the other: the baseline shape of shared/MEASURED.md.
const BareActivities = 3

// Names the bare workflow and activity are registered under.
const (
	bareWorkflowName = "benchkit.Bare"
	bareStepName     = "benchkit.BareStep"
)

// Bare is bare Temporal: a workflow of BareActivities no-op activities,
// started with ExecuteWorkflow and run by a worker of its own in this
// process. It is complete when its last activity runs, as a transfer is
// complete when the activity recording that state runs.
type Bare struct {
	client client.Client
	worker worker.Worker
	mu     sync.Mutex
	done   map[string]time.Time // workflow id → when its last activity ran
}

// DialBare dials the plain client Bare wants: no payload codec (bare
// Temporal has none) and no logs.
func DialBare(hostPort, namespace string) (client.Client, error) {
	return client.Dial(client.Options{HostPort: hostPort, Namespace: namespace,
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
}

// StartBare registers the bare workflow on BareTaskQueue and starts its
// worker with the SDK's default options (as p2p's worker has). c is a
// plain client (no payload codec) of the server p2p uses.
func StartBare(c client.Client) (*Bare, error) {
	b := &Bare{client: c, done: map[string]time.Time{}}
	b.worker = worker.New(c, BareTaskQueue, worker.Options{})
	b.worker.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: bareWorkflowName})
	b.worker.RegisterActivityWithOptions(b.step, activity.RegisterOptions{Name: bareStepName})
	if err := b.worker.Start(); err != nil {
		return nil, fmt.Errorf("bare worker: %w", err)
	}
	return b, nil
}

// Stop stops the bare worker (not the client, which is the caller's).
func (b *Bare) Stop() { b.worker.Stop() }

// Start starts a bare workflow with id key; it returns once the server
// has accepted it.
func (b *Bare) Start(ctx context.Context, key string) (string, error) {
	_, err := b.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: key, TaskQueue: BareTaskQueue}, bareWorkflowName)
	return key, err
}

// Completed returns when the last activity of each of ids ran.
func (b *Bare) Completed(_ context.Context, ids []string) (map[string]time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	got := map[string]time.Time{}
	for _, id := range ids {
		if at, ok := b.done[id]; ok {
			got[id] = at
		}
	}
	return got, nil
}

// bareWorkflow runs BareActivities no-op activities in turn.
func bareWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	for step := 1; step <= BareActivities; step++ {
		if err := workflow.ExecuteActivity(ctx, bareStepName, step).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// step does nothing but, at the last step, note when the workflow
// completed.
func (b *Bare) step(ctx context.Context, step int) error {
	if step == BareActivities {
		id := activity.GetInfo(ctx).WorkflowExecution.ID
		b.mu.Lock()
		if _, ok := b.done[id]; !ok { // a retried step completed earlier
			b.done[id] = time.Now()
		}
		b.mu.Unlock()
	}
	return nil
}
