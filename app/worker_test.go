package app

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/devserver"
)

// TestWorkerStopsGracefully: with the worker options app builds, an
// activity in flight when the worker stops (SIGTERM) finishes within the
// shutdown timeout; with the SDK's default it is cancelled at once.
func TestWorkerStopsGracefully(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts, err := devserver.Start(ctx, devserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Stop() })
	c, err := client.DialContext(ctx, client.Options{HostPort: ts.Address(), Namespace: ts.Namespace(), Logger: TemporalLogger(zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, tt := range []struct {
		name          string
		o             worker.Options
		wantCancelled bool
	}{
		{"app's", Config{ShutdownTimeout: 10 * time.Second}.workerOptions(worker.Options{}), false},
		{"sdk default", worker.Options{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			queue := "stop-" + t.Name()
			started, done := make(chan struct{}), make(chan error, 1)
			w := worker.New(c, queue, o)
			w.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
				ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
				return workflow.ExecuteActivity(ctx, "Slow").Get(ctx, nil)
			}, workflow.RegisterOptions{Name: "StopWorkflow"})
			w.RegisterActivityWithOptions(func(ctx context.Context) error {
				close(started)
				select {
				case <-time.After(time.Second):
					done <- nil
				case <-ctx.Done():
					done <- ctx.Err()
				}
				return nil
			}, activity.RegisterOptions{Name: "Slow"})
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, "StopWorkflow"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-ctx.Done():
				t.Fatal("the activity never started")
			}
			w.Stop()
			if err := <-done; (err != nil) != tt.wantCancelled {
				t.Errorf("activity ended with %v; cancelled want %v", err, tt.wantCancelled)
			}
		})
	}
}

func TestWorkerOptions(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		o    worker.Options
		want time.Duration
	}{
		{Config{ShutdownTimeout: 30 * time.Second}, worker.Options{}, 30 * time.Second},
		{Config{}, worker.Options{}, DefaultShutdownTimeout},
		{Config{ShutdownTimeout: 30 * time.Second}, worker.Options{WorkerStopTimeout: time.Second}, time.Second},
	} {
		if got := c.cfg.workerOptions(c.o).WorkerStopTimeout; got != c.want {
			t.Errorf("%+v %+v: stop timeout %v, want %v", c.cfg.ShutdownTimeout, c.o.WorkerStopTimeout, got, c.want)
		}
	}
}
