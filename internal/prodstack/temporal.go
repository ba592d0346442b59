package prodstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TransfersQueue is the task queue whose pollers tell that a worker is up
// (p2p's default P2P_TASK_QUEUE).
const TransfersQueue = "p2p-transfers"

// Temporal is the stack's Temporal server process.
type Temporal struct {
	// Address is the frontend's host:port.
	Address string

	bin    string
	config string // the server's configuration file
	log    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	client client.Client // for readiness checks; dialled lazily
}

type temporalOptions struct {
	bin              Binaries
	dir, pgURL       string
	db, visibilityDB string
	shards           int
	maxConns         int
}

// startTemporal creates the server's schemas in the (empty) databases,
// writes its configuration, starts it and registers Namespace.
func startTemporal(ctx context.Context, o temporalOptions) (*Temporal, error) {
	u, err := url.Parse(o.pgURL)
	if err != nil {
		return nil, fmt.Errorf("prodstack: PostgreSQL URL: %w", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	logPath := filepath.Join(o.dir, "logs", "temporal-server.log")
	for _, s := range []struct{ db, schema string }{{o.db, "temporal"}, {o.visibilityDB, "visibility"}} {
		common := []string{"--plugin", "postgres12", "--ep", host, "-p", port, "-u", user, "--pw", pass, "--db", s.db}
		for _, args := range [][]string{
			append(common, "setup-schema", "-v", "0.0"),
			append(common, "update-schema", "-d", filepath.Join(o.bin.SchemaDir, s.schema, "versioned")),
		} {
			cmd := exec.CommandContext(ctx, o.bin.SQLTool, args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("prodstack: temporal-sql-tool %s: %w\n%s", strings.Join(args[len(common):], " "), err, out)
			}
		}
	}
	ports, err := lowFreePorts(9)
	if err != nil {
		return nil, err
	}
	cfgDir := filepath.Join(o.dir, "temporal-config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return nil, err
	}
	yaml := temporalConfig(o, host, port, user, pass, ports)
	cfgFile := filepath.Join(cfgDir, "temporal.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	t := &Temporal{Address: fmt.Sprintf("127.0.0.1:%d", ports[0]), bin: o.bin.TemporalServer, config: cfgFile, log: logPath}
	if err := t.Restart(ctx); err != nil {
		return nil, err
	}
	if err := t.registerNamespace(ctx); err != nil {
		t.Kill()
		return nil, err
	}
	return t, nil
}

// lowFreePorts returns n loopback ports that were free a moment ago, all
// below 32768: Temporal's SQL schema keeps a membership port in a
// smallint, and the kernel's ephemeral ports are above it.
func lowFreePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("prodstack: no free port below 32768")
		}
		p := 20000 + rand.IntN(12000)
		if slices.Contains(ports, p) {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		if err := ln.Close(); err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// temporalConfig is the server's configuration: SQL persistence on
// PostgreSQL, every service on loopback ports, warnings only in its log.
func temporalConfig(o temporalOptions, host, port, user, pass string, p []int) string {
	store := func(db string, conns, idle int) string {
		return fmt.Sprintf(`      sql:
        pluginName: postgres12
        databaseName: %q
        connectAddr: "%s:%s"
        connectProtocol: tcp
        user: %q
        password: %q
        maxConns: %d
        maxIdleConns: %d
        maxConnLifetime: 1h
`, db, host, port, user, pass, conns, idle)
	}
	service := func(name string, grpc, membership int) string {
		return fmt.Sprintf("  %s:\n    rpc:\n      grpcPort: %d\n      membershipPort: %d\n      bindOnLocalHost: true\n", name, grpc, membership)
	}
	return `log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: ` + strconv.Itoa(o.shards) + `
  datastores:
    default:
` + store(o.db, o.maxConns, min(o.maxConns, 4)) + `    visibility:
` + store(o.visibilityDB, 2, 2) + `global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
services:
` + service("frontend", p[0], p[1]) + fmt.Sprintf("      httpPort: %d\n", p[8]) +
		service("history", p[2], p[3]) + service("matching", p[4], p[5]) + service("worker", p[6], p[7]) + `clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:` + strconv.Itoa(p[0]) + `"
dcRedirectionPolicy:
  policy: noop
`
}

// Restart starts the server if it is not running and waits until its
// frontend answers for Namespace (or, before it is registered, answers at
// all).
func (t *Temporal) Restart(ctx context.Context) error {
	t.mu.Lock()
	if t.done != nil {
		select {
		case <-t.done:
		default:
			t.mu.Unlock()
			return nil
		}
	}
	f, err := os.OpenFile(t.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.mu.Unlock()
		return err
	}
	if _, err := fmt.Fprintf(f, "=== prodstack: start temporal-server at %s\n", time.Now().Format(time.RFC3339Nano)); err != nil {
		_ = f.Close() // the write failed already
		t.mu.Unlock()
		return err
	}
	cmd := exec.Command(t.bin, "--config-file", t.config, "--allow-no-auth", "start")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close() // the process never ran
		t.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // seen through done; the log says why
		_ = f.Close()  // the process is gone
		close(done)
	}()
	t.cmd, t.done = cmd, done
	t.mu.Unlock()
	return t.waitUp(ctx, done)
}

// waitUp waits until the frontend describes Namespace, or answers
// NotFound for it (not registered yet).
func (t *Temporal) waitUp(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		c, err := t.sdk()
		if err == nil {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = c.WorkflowService().DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: Namespace})
			ccancel()
			var nf *serviceerror.NamespaceNotFound
			if err == nil || errors.As(err, &nf) {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("prodstack: temporal-server exited while starting:\n%s", tail(t.log, 30))
		case <-ctx.Done():
			return fmt.Errorf("prodstack: temporal-server not up: %v\n%s", err, tail(t.log, 30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sdk returns the readiness client, dialled lazily (the SDK's Dial checks
// the server, so it is retried until the server answers).
func (t *Temporal) sdk() (client.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil {
		return t.client, nil
	}
	c, err := client.Dial(client.Options{HostPort: t.Address, Namespace: Namespace, Logger: quiet{}})
	if err != nil {
		return nil, err
	}
	t.client = c
	return c, nil
}

// closeClient closes the readiness client, if it was dialled.
func (t *Temporal) closeClient() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil {
		t.client.Close()
		t.client = nil
	}
}

// Client is an SDK client of the stack's namespace, for tests that look
// at workflows' histories. Do not close it: the stack owns it.
func (t *Temporal) Client() (client.Client, error) { return t.sdk() }

// registerNamespace registers Namespace with NamespaceRetention and waits
// until the frontend describes it.
func (t *Temporal) registerNamespace(ctx context.Context) error {
	nc, err := client.NewNamespaceClient(client.Options{HostPort: t.Address, Logger: quiet{}})
	if err != nil {
		return fmt.Errorf("prodstack: namespace client: %w", err)
	}
	defer nc.Close()
	err = nc.Register(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: Namespace, WorkflowExecutionRetentionPeriod: durationpb.New(NamespaceRetention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("prodstack: register namespace %s: %w", Namespace, err)
	}
	// The frontend knows the namespace first; the other services learn
	// it on their cache's refresh, and until then the schedules p2p's
	// worker creates at start are refused (NamespaceNotFound) and the
	// worker exits.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := nc.Describe(ctx, Namespace)
		if err == nil {
			err = t.schedulesReady(ctx)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prodstack: namespace %s not visible: %w", Namespace, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// schedulesReady creates a paused schedule and deletes it: what p2p's
// worker does at start, refused until every service knows the namespace.
func (t *Temporal) schedulesReady(ctx context.Context) error {
	c, err := t.sdk()
	if err != nil {
		return err
	}
	h, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:     "prodstack-probe",
		Spec:   client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}}},
		Action: &client.ScheduleWorkflowAction{ID: "prodstack-probe", Workflow: "prodstack-probe", TaskQueue: "prodstack-probe"},
		Paused: true,
	})
	if err != nil {
		return err
	}
	return h.Delete(ctx)
}

// waitPoller waits until a process with pid polls TransfersQueue (the SDK
// names a worker PID@HOST).
func (t *Temporal) waitPoller(ctx context.Context, done <-chan struct{}, pid int) error {
	prefix := strconv.Itoa(pid) + "@"
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		if c, err := t.sdk(); err == nil {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := c.DescribeTaskQueue(cctx, TransfersQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
			ccancel()
			if err == nil && hasPoller(res.GetPollers(), prefix) {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("prodstack: worker %d exited while starting", pid)
		case <-ctx.Done():
			return fmt.Errorf("prodstack: worker %d does not poll %s: %w", pid, TransfersQueue, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func hasPoller(ps []*taskqueuepb.PollerInfo, prefix string) bool {
	for _, p := range ps {
		if strings.HasPrefix(p.GetIdentity(), prefix) {
			return true
		}
	}
	return false
}

// Kill sends SIGKILL to the server and waits until it is gone.
func (t *Temporal) Kill() {
	t.mu.Lock()
	cmd, done := t.cmd, t.done
	t.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // it may be gone already: done tells
	<-done
}

// LogPath is the server's log file.
func (t *Temporal) LogPath() string { return t.log }

// quiet is an SDK logger that drops everything: readiness polling expects
// refusals.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
