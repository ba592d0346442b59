// Package prodstack starts p2p's production topology on this machine, as
// separate processes, for the fault suite (make chaos) and the benchmarks
// that measure the production path: a real Temporal server (the module's
// go.temporal.io/server, built from the module proxy) on PostgreSQL, the
// p2p store on PostgreSQL, and any number of `p2p api` and `p2p worker`
// processes built with -tags nodev.
//
// The API, in the order a caller uses it:
//
//	bin, err := prodstack.Build(ctx, prodstack.BuildOptions{})    // temporal-server, temporal-sql-tool, p2p-prod
//	st, err := prodstack.New(ctx, prodstack.Options{Bin: bin, Dir: runDir, Prefix: "chaos", Partners: yaml})
//	defer st.Close()                                             // kills every process it started
//	api, err := st.StartAPI(ctx, "api-1")                        // waits for /readyz
//	w, err := st.StartWorker(ctx, "worker-1")                    // waits for its pollers
//	old, err := st.StartWorkerBin(ctx, "worker-0", prevBin)      // another build (BuildP2P)
//	ts, err := st.AdminTokens(ctx, api.URL())                    // admin bearer tokens (client registered once)
//	w.Kill(); w.Restart(ctx)                                     // SIGKILL, then the same command again
//	st.Temporal.Kill(); st.Temporal.Restart(ctx)                 // the same for the Temporal server
//	out, err := st.P2P(ctx, "audit", "verify", ...)              // a one-shot p2p command on the stack's config
//
// New drops and recreates three databases named after Options.Prefix
// (PREFIX_temporal, PREFIX_temporal_visibility, PREFIX_p2p) on the
// PostgreSQL server of Options.PostgresURL, creates Temporal's schemas from
// the server module's schema/postgresql/v12 directories with
// temporal-sql-tool, starts the server on free loopback ports (below
// 32768: its schema keeps membership ports in a smallint), registers the
// namespace Namespace (the server creates none), migrates the p2p store
// and generates the key sets. Every process writes its output to
// DIR/logs/NAME.log (a restarted one appends), so a failed run leaves its
// evidence behind. Per process, Crashes counts the runs that ended without
// Kill or Stop. Tokens are per api: a token's audience is the api that
// issued it, unless the apis share P2P_PUBLIC_URL (Options.Env).
//
// Nothing here is test-only code in p2p: the processes are configured only
// by the P2P_* variables that docs/configuration.md lists.
package prodstack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is the PostgreSQL server New uses when
// Options.PostgresURL is empty: the local one, user postgres, trust.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Namespace is the Temporal namespace the stack registers and p2p uses.
const Namespace = "p2p"

// NamespaceRetention is the retention of the namespace New registers: as
// long as a transfer's idempotency by workflow id should last at least.
const NamespaceRetention = 72 * time.Hour

// Options configure a stack.
type Options struct {
	Bin Binaries
	// Dir is the run directory: logs/, keys/, the Temporal configuration,
	// the partner registry. Created if missing.
	Dir string
	// PostgresURL is a URL of the PostgreSQL server whose user may create
	// databases; "" = DefaultPostgresURL. Its database part is only where
	// New connects to create the others.
	PostgresURL string
	// Prefix names the databases: PREFIX_temporal,
	// PREFIX_temporal_visibility, PREFIX_p2p. Required, so that two users
	// of one server never drop each other's.
	Prefix string
	// Partners is the partner registry (YAML) the api and workers load
	// (P2P_PARTNERS); WritePartners replaces it later.
	Partners string
	// Env is added to every p2p process's environment, after the stack's
	// own P2P_* settings (so it wins).
	Env []string
	// HistoryShards of the Temporal server; 0 = 4.
	HistoryShards int
	// TemporalMaxConns bounds each of the Temporal server's connection
	// pools to its main database (one per service, four services); 0 =
	// 10. Its visibility pools keep 2. The default leaves room on a
	// PostgreSQL of max_connections 100 for a second stack beside it.
	TemporalMaxConns int
}

// Stack is a running production topology. Its methods are safe for
// concurrent use.
type Stack struct {
	Bin         Binaries
	Dir         string
	DatabaseURL string    // the p2p store (P2P_DATABASE_URL)
	KeysDir     string    // P2P_KEYS_DIR
	Partners    string    // P2P_PARTNERS: the registry file
	Temporal    *Temporal // the Temporal server
	env         []string

	mu     sync.Mutex
	procs  []*Proc
	client bool // the admin client is registered
}

// New builds the stack's databases and starts its Temporal server (see
// the package comment). The caller starts the api and worker processes.
func New(ctx context.Context, o Options) (*Stack, error) {
	if o.Prefix == "" {
		return nil, errors.New("prodstack: Options.Prefix is required")
	}
	if o.Dir == "" {
		return nil, errors.New("prodstack: Options.Dir is required")
	}
	if err := o.Bin.check(); err != nil {
		return nil, err
	}
	pgURL := o.PostgresURL
	if pgURL == "" {
		pgURL = DefaultPostgresURL
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	dbs := []string{o.Prefix + "_temporal", o.Prefix + "_temporal_visibility", o.Prefix + "_p2p"}
	if err := recreateDatabases(ctx, pgURL, dbs); err != nil {
		return nil, err
	}
	s := &Stack{Bin: o.Bin, Dir: o.Dir, KeysDir: filepath.Join(o.Dir, "keys"), Partners: filepath.Join(o.Dir, "partners.yaml")}
	var err error
	if s.DatabaseURL, err = withDatabase(pgURL, dbs[2]); err != nil {
		return nil, err
	}
	if err := s.WritePartners(o.Partners); err != nil {
		return nil, err
	}
	shards := o.HistoryShards
	if shards == 0 {
		shards = 4
	}
	conns := o.TemporalMaxConns
	if conns == 0 {
		conns = 10
	}
	s.Temporal, err = startTemporal(ctx, temporalOptions{bin: o.Bin, dir: o.Dir, pgURL: pgURL, db: dbs[0], visibilityDB: dbs[1], shards: shards, maxConns: conns})
	if err != nil {
		return nil, err
	}
	s.env = append([]string{
		"P2P_DATABASE_URL=" + s.DatabaseURL, "P2P_TEMPORAL_ADDRESS=" + s.Temporal.Address, "P2P_TEMPORAL_NAMESPACE=" + Namespace,
		"P2P_KEYS_DIR=" + s.KeysDir, "P2P_PARTNERS=" + s.Partners, "P2P_LOG_LEVEL=info",
	}, o.Env...)
	if _, err := s.P2P(ctx, "migrate"); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.P2P(ctx, "keys", "generate", "--keys-dir", s.KeysDir); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// WritePartners replaces the partner registry file. Running processes take
// it on SIGHUP (Proc.Signal).
func (s *Stack) WritePartners(yaml string) error {
	return os.WriteFile(s.Partners, []byte(yaml), 0o600)
}

// Env is the environment of the stack's p2p processes (P2P_* settings).
func (s *Stack) Env() []string { return append([]string{}, s.env...) }

// P2P runs a one-shot p2p command (migrate, audit verify, clients add...)
// with the stack's environment and returns its combined output; a failure
// carries the output.
func (s *Stack) P2P(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.Bin.P2P, args...)
	cmd.Env = append(os.Environ(), s.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("p2p %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// StartAPI starts `p2p api` as name, with env added to the stack's, and
// waits until its /readyz answers 200. It listens on a free loopback port
// unless env sets P2P_ADDR.
func (s *Stack) StartAPI(ctx context.Context, name string, env ...string) (*Proc, error) {
	addr := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "P2P_ADDR="); ok {
			addr = v
		}
	}
	if addr == "" {
		var err error
		if addr, err = FreeAddr(); err != nil {
			return nil, err
		}
		env = append([]string{"P2P_ADDR=" + addr}, env...)
	}
	p := s.newProc(name, s.Bin.P2P, []string{"api"}, env)
	p.Addr = addr
	return p, p.Restart(ctx)
}

// StartWorker starts `p2p worker` as name, with env added to the stack's,
// and waits until it polls the transfers' task queue.
func (s *Stack) StartWorker(ctx context.Context, name string, env ...string) (*Proc, error) {
	return s.StartWorkerBin(ctx, name, s.Bin.P2P, env...)
}

// StartWorkerBin is StartWorker with another p2p binary (BuildP2P), e.g.
// an older build of the workflows.
func (s *Stack) StartWorkerBin(ctx context.Context, name, bin string, env ...string) (*Proc, error) {
	p := s.newProc(name, bin, []string{"worker"}, env)
	return p, p.Restart(ctx)
}

func (s *Stack) newProc(name, bin string, args, env []string) *Proc {
	p := &Proc{Name: name, stack: s, bin: bin, args: args, env: env, log: filepath.Join(s.Dir, "logs", name+".log")}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

// Close kills every process the stack started, the Temporal server last.
// The databases stay, for a look after a failed run; New drops them.
func (s *Stack) Close() {
	s.mu.Lock()
	procs := s.procs
	s.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	if s.Temporal != nil {
		s.Temporal.Kill()
		s.Temporal.closeClient()
	}
}

// Proc is one p2p process of the stack (api or worker). Kill and Restart
// may be called any number of times; a Proc is safe for concurrent use.
type Proc struct {
	Name string
	Addr string // listen address of an api; "" for a worker

	stack *Stack
	bin   string
	args  []string
	env   []string
	log   string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	pid      int
	stopping bool // Kill or Stop was called on this run
	crashes  int  // runs that ended without Kill or Stop
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Crashes counts the runs that ended without Kill or Stop: a process
// that exited on its own.
func (p *Proc) Crashes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashes
}

// URL is the base URL of an api process.
func (p *Proc) URL() string { return "http://" + p.Addr }

// LogPath is the file the process's output goes to.
func (p *Proc) LogPath() string { return p.log }

// PID is the process id of the current run; 0 when it is not running.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.pid
}

func (p *Proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Restart starts the process again (or for the first time) if it is not
// running, and waits until it is ready: an api's /readyz answers 200, a
// worker polls the transfers' queue. The output is appended to its log.
func (p *Proc) Restart(ctx context.Context) error {
	p.mu.Lock()
	if p.running() {
		p.mu.Unlock()
		return nil
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	if _, err := fmt.Fprintf(f, "=== prodstack: start %s at %s\n", p.Name, time.Now().Format(time.RFC3339Nano)); err != nil {
		_ = f.Close() // the write failed already
		p.mu.Unlock()
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(append(os.Environ(), p.stack.env...), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close() // nothing was written by the process
		p.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // its exit is seen through done; the log says why
		_ = f.Close()  // the process is gone: nothing more to write
		p.mu.Lock()
		if !p.stopping {
			p.crashes++
		}
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done, p.pid, p.stopping = cmd, done, cmd.Process.Pid, false
	p.mu.Unlock()
	if p.Addr != "" {
		return p.waitReady(ctx, done)
	}
	return p.stack.Temporal.waitPoller(ctx, done, p.pid)
}

func (p *Proc) waitReady(ctx context.Context, done <-chan struct{}) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return poll(ctx, done, p, 90*time.Second, func() bool {
		res, err := c.Get(p.URL() + "/readyz")
		if err != nil {
			return false
		}
		_ = res.Body.Close() // only the status matters
		return res.StatusCode == http.StatusOK
	})
}

// poll calls ok every 100 ms until it is true, the process exits (done),
// or within passes.
func poll(ctx context.Context, done <-chan struct{}, p *Proc, within time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for !ok() {
		select {
		case <-done:
			return fmt.Errorf("prodstack: %s exited while starting:\n%s", p.Name, p.Tail(30))
		case <-ctx.Done():
			return fmt.Errorf("prodstack: %s not ready: %w\n%s", p.Name, ctx.Err(), p.Tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone. A process not
// running is left alone.
func (p *Proc) Kill() { p.stop(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful stop) and waits for the process to exit.
func (p *Proc) Stop() { p.stop(syscall.SIGTERM) }

func (p *Proc) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	running := p.running()
	p.stopping = true
	p.mu.Unlock()
	if !running {
		return
	}
	_ = cmd.Process.Signal(sig) // it may have exited meanwhile: done tells
	<-done
}

// Signal sends sig (e.g. SIGHUP: reload the partner registry) to a running
// process.
func (p *Proc) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return fmt.Errorf("prodstack: %s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return tail(p.log, n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 { // Temporal's lines carry whole stack traces
			lines[i] = l[:400] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// CountLines counts the lines of a process's log that contain s: how many
// times something was logged across its runs.
func (p *Proc) CountLines(s string) (int, error) {
	f, err := os.Open(p.log)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read only
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(s)) {
			n++
		}
	}
	return n, sc.Err()
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// recreateDatabases drops (forcing out any session) and creates dbs.
func recreateDatabases(ctx context.Context, pgURL string, dbs []string) error {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("prodstack: PostgreSQL at %s: %w", redact(pgURL), err)
	}
	defer func() { _ = conn.Close(ctx) }() // DDL is committed statement by statement
	for _, db := range dbs {
		name := pgx.Identifier{db}.Sanitize()
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("prodstack: drop %s: %w", db, err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			return fmt.Errorf("prodstack: create %s: %w", db, err)
		}
	}
	return nil
}

// withDatabase returns pgURL naming database db instead.
func withDatabase(pgURL, db string) (string, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", fmt.Errorf("prodstack: PostgreSQL URL: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

// redact is a URL for an error message: without its password.
func redact(pgURL string) string {
	u, err := url.Parse(pgURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
