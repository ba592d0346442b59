package devserver_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/devserver"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap/zaptest"
	_ "modernc.org/sqlite"
)

const taskQueue = "devserver-test"

func greet(_ context.Context, name string) (string, error) { return "hello " + name, nil }

// greetWorkflow runs one activity.
func greetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, greet, name).Get(ctx, &out)
	return out, err
}

// waitWorkflow blocks on the "go" signal, then runs one activity.
func waitWorkflow(ctx workflow.Context) (string, error) {
	var name string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &name)
	return greetWorkflow(ctx, name)
}

func start(t *testing.T, dir string) *devserver.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	s, err := devserver.Start(ctx, devserver.Options{DataDir: dir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("server on %s ready in %v", s.Address(), time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// run dials s and runs a worker for both workflows until the test (or stop) ends.
func run(t *testing.T, s *devserver.Server) (client.Client, func()) {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  s.Address(),
		Namespace: s.Namespace(),
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greetWorkflow)
	w.RegisterWorkflow(waitWorkflow)
	w.RegisterActivity(greet)
	if err := w.Start(); err != nil {
		t.Fatalf("worker: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.Stop()
			c.Close()
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func execGreet(t *testing.T, c client.Client, id, name string) {
	t.Helper()
	if err := greetErr(c, id, name); err != nil {
		t.Fatal(err)
	}
}

// greetErr runs greetWorkflow to completion; it is safe off the test goroutine.
func greetErr(c client.Client, id, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, greetWorkflow, name)
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	var out string
	if err := run.Get(ctx, &out); err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	if out != "hello "+name {
		return fmt.Errorf("workflow %s = %q", id, out)
	}
	return nil
}

func nsRequest(s *devserver.Server) *workflowservice.DescribeNamespaceRequest {
	return &workflowservice.DescribeNamespaceRequest{Namespace: s.Namespace()}
}

func TestWorkflowCompletes(t *testing.T) {
	t.Parallel()
	s := start(t, t.TempDir())
	if s.Namespace() != "default" {
		t.Errorf("Namespace() = %q, want default", s.Namespace())
	}
	c, _ := run(t, s)
	execGreet(t, c, "greet-1", "world")

	// Retention defaults to 30 days.
	desc, err := c.WorkflowService().DescribeNamespace(context.Background(), nsRequest(s))
	if err != nil {
		t.Fatal(err)
	}
	if got := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != 30*24*time.Hour {
		t.Errorf("retention = %v, want 720h", got)
	}
}

func TestRestartKeepsWorkflows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, dir)
	c, stopWorker := run(t, s)
	execGreet(t, c, "done-before", "before")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiting", TaskQueue: taskQueue}, waitWorkflow); err != nil {
		t.Fatal(err)
	}
	// Stop only once the workflow is blocked on the signal: a workflow task in
	// flight when the worker stops is lost, and the signal's task then waits
	// out its 10 s start-to-close timeout (normal Temporal behaviour).
	waitIdle(t, c, "waiting")
	stopWorker()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	s = start(t, dir)
	c, _ = run(t, s)
	if err := c.SignalWorkflow(ctx, "waiting", "", "go", "after"); err != nil {
		t.Fatalf("signal after restart: %v", err)
	}
	var out string
	if err := c.GetWorkflow(ctx, "waiting", "").Get(ctx, &out); err != nil || out != "hello after" {
		t.Fatalf("waiting workflow = %q, %v", out, err)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, "done-before", "")
	if err != nil {
		t.Fatalf("describe workflow completed before restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("done-before status = %v", st)
	}
}

// TestSurvivesKilledProcess runs the first server in a child process, kills it
// with SIGKILL while a workflow waits for a signal, and resumes that workflow
// here: the `p2p dev` restart, done the hard way.
func TestSurvivesKilledProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildServer$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != childReady {
	}
	if sc.Err() != nil || sc.Text() != childReady {
		t.Fatalf("child never got ready: %v", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s := start(t, dir)
	c, _ := run(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.SignalWorkflow(ctx, "waiting", "", "go", "after kill"); err != nil {
		t.Fatalf("signal after kill: %v", err)
	}
	var got string
	if err := c.GetWorkflow(ctx, "waiting", "").Get(ctx, &got); err != nil || got != "hello after kill" {
		t.Fatalf("waiting workflow = %q, %v", got, err)
	}
	if _, err := c.DescribeWorkflowExecution(ctx, "done-before", ""); err != nil {
		t.Fatalf("describe workflow completed before kill: %v", err)
	}
}

const (
	childDirEnv = "DEVSERVER_TEST_CHILD_DIR"
	childReady  = "CHILD READY"
)

// TestChildServer is the child half of TestSurvivesKilledProcess; it does
// nothing in a normal run.
func TestChildServer(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("runs only as TestSurvivesKilledProcess's child")
	}
	s := start(t, dir)
	c, _ := run(t, s)
	execGreet(t, c, "done-before", "before")
	if _, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "waiting", TaskQueue: taskQueue}, waitWorkflow); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, c, "waiting")
	fmt.Println(childReady)
	select {} // until killed
}

// waitIdle waits until the workflow has no workflow task scheduled or running.
func waitIdle(t *testing.T, c client.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		desc, err := c.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if desc.GetPendingWorkflowTask() == nil && desc.GetWorkflowExecutionInfo().GetHistoryLength() > 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s still has a workflow task pending", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRetentionChangeAppliesOnRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, want := range []time.Duration{48 * time.Hour, 72 * time.Hour} {
		s, err := devserver.Start(ctx, devserver.Options{DataDir: dir, Namespace: "p2p", Retention: want})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(client.Options{HostPort: s.Address(), Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
		if err != nil {
			t.Fatal(err)
		}
		desc, err := c.WorkflowService().DescribeNamespace(ctx, nsRequest(s))
		c.Close()
		_ = s.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if got := desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != want {
			t.Errorf("retention = %v, want %v", got, want)
		}
	}
}

func TestWAL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, dir)
	path := filepath.Join(dir, devserver.DBFileName)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestTwoServersInOneProcess(t *testing.T) {
	t.Parallel()
	a, b := start(t, t.TempDir()), start(t, t.TempDir())
	if a.Address() == b.Address() {
		t.Fatalf("both on %s", a.Address())
	}
	ca, _ := run(t, a)
	cb, _ := run(t, b)
	errA := make(chan error, 1)
	go func() { errA <- greetErr(ca, "same-id", "a") }()
	execGreet(t, cb, "same-id", "b")
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := devserver.Start(ctx, devserver.Options{}); err == nil {
		t.Error("no DataDir: want error")
	}
	if _, err := devserver.Start(ctx, devserver.Options{DataDir: t.TempDir(), Retention: time.Minute}); err == nil {
		t.Error("retention below an hour: want error")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, devserver.DBFileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// An empty file (first start killed before setup) is set up, not refused.
	s, err := devserver.Start(ctx, devserver.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if _, err := devserver.Start(ctx, devserver.Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on one dir: err = %v, want in use", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}
