// Package devserver runs a Temporal server inside the p2p process, persisted
// to one SQLite file, for `p2p dev`: no Docker, nothing beyond loopback, and a
// restart on the same data directory keeps every workflow and resumes those in
// flight.
//
// It is the only p2p package that imports go.temporal.io/server, so that the
// production binary can leave the server's large dependency tree out.
//
// One server at a time per DataDir: Start takes a lock file there (flock, on
// Unix) and Stop releases it. Stop takes about a second, the frontend's
// minimum drain time.
//
// Limits that come from the server's SQLite plugin, which keeps one connection
// per database file open for the life of the process (it never closes them):
//   - Stop does not close the file; a later Start on the same DataDir in the
//     same process reuses that connection, which is what makes in-process
//     restarts work.
//   - Do not delete a DataDir that has been served and Start on the same path
//     again in the same process: the kept connection still points at the
//     deleted file.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DBFileName is the name of the SQLite file inside Options.DataDir.
const DBFileName = "temporal.db"

// lockFileName, inside Options.DataDir, is held locked while a server runs.
const lockFileName = "temporal.lock"

const (
	defaultNamespace = "default"
	// Closed workflows are kept this long, and a closed workflow's ID is what
	// deduplicates a repeated start with the same idempotency key: shorter
	// retention would let a retried request start a second transfer.
	defaultRetention = 30 * 24 * time.Hour
	// The server refuses a shorter retention for a local namespace
	// (system.namespaceMinRetentionLocal).
	minRetention = time.Hour
	defaultHost  = "127.0.0.1"
	// readyTimeout bounds the wait for a describable namespace when the
	// caller's context has no earlier deadline.
	readyTimeout = 30 * time.Second
)

// Options configure the embedded server.
type Options struct {
	// DataDir holds the SQLite file DataDir/temporal.db; both are created on
	// first start.
	DataDir string
	// Namespace is registered if absent; default "default".
	Namespace string
	// Retention is how long the namespace keeps closed workflows; default 30
	// days, because deduplication of a closed workflow by its ID (our
	// idempotency keys) lasts only this long. At least one hour.
	Retention time.Duration
	// Logger receives the server's error-level logs; nil silences them.
	Logger *zap.Logger
	// Host is the frontend's listen address; default 127.0.0.1. The other
	// services always listen on 127.0.0.1.
	Host string
	// Port is the frontend gRPC port; 0 picks a free port.
	Port int
}

// Server is a running embedded Temporal server.
type Server struct {
	srv       temporal.Server
	address   string
	namespace string
	quiet     *quietSwitch
	unlock    func()

	stopOnce sync.Once
	stopErr  error
}

// Start starts a server on o.DataDir, setting up the schema on first use, and
// returns once a client can dial it and describe the namespace.
func Start(ctx context.Context, o Options) (*Server, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("devserver: create data dir: %w", err)
	}
	unlock, err := lockDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	s, err := start(ctx, o)
	if err != nil {
		unlock()
		return nil, err
	}
	s.unlock = unlock
	return s, nil
}

func start(ctx context.Context, o Options) (*Server, error) {
	ports, err := pickPorts(o.Host, o.Port)
	if err != nil {
		return nil, err
	}
	cfg := buildConfig(o, ports)
	sqlCfg := cfg.Persistence.DataStores[cfg.Persistence.DefaultStore].SQL
	if err := prepareDB(sqlCfg, o, cfg.ClusterMetadata.CurrentClusterName); err != nil {
		return nil, err
	}

	logger, quiet := serverLogger(o.Logger)
	srv, err := temporal.NewServer(serverOptions(cfg, ports, logger)...)
	if err != nil {
		return nil, fmt.Errorf("devserver: build server: %w", err)
	}
	if err := srv.Start(); err != nil {
		quiet.on()
		_ = srv.Stop()
		return nil, fmt.Errorf("devserver: start server: %w", err)
	}
	s := &Server{srv: srv, address: ports.frontendAddr(), namespace: o.Namespace, quiet: quiet}
	if err := s.waitReady(ctx, o.Retention); err != nil {
		quiet.on()
		_ = srv.Stop()
		return nil, err
	}
	return s, nil
}

// Address returns the frontend's host:port for client.Dial.
func (s *Server) Address() string { return s.address }

// Namespace returns the namespace registered at Start.
func (s *Server) Namespace() string { return s.namespace }

// Stop stops all services gracefully. It is safe to call more than once; later
// calls return the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		// Services that stop first make the others log "Not enough hosts"
		// and similar errors that mean nothing here.
		s.quiet.on()
		s.stopErr = s.srv.Stop()
		s.unlock()
	})
	return s.stopErr
}

func (o Options) withDefaults() (Options, error) {
	if o.DataDir == "" {
		return o, errors.New("devserver: DataDir is required")
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return o, fmt.Errorf("devserver: data dir: %w", err)
	}
	o.DataDir = dir
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.Retention == 0 {
		o.Retention = defaultRetention
	}
	if o.Retention < minRetention {
		return o, fmt.Errorf("devserver: retention %v is below the server's minimum %v", o.Retention, minRetention)
	}
	if o.Host == "" || o.Host == "localhost" {
		o.Host = defaultHost
	}
	if net.ParseIP(o.Host) == nil {
		return o, fmt.Errorf("devserver: host %q is not an IP address", o.Host)
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("devserver: port %d out of range", o.Port)
	}
	return o, nil
}

// waitReady polls until the namespace is describable, then brings an existing
// namespace's retention to the requested value.
func (s *Server) waitReady(ctx context.Context, retention time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()

	c, err := s.dialReady(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	desc, err := describeNamespace(ctx, c, s.namespace)
	if err != nil {
		return err
	}
	// CreateNamespaces leaves an existing namespace as it is, so a changed
	// Retention is applied through the API.
	if desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() == retention {
		return nil
	}
	_, err = c.WorkflowService().UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
		Namespace: s.namespace,
		Config: &namespacepb.NamespaceConfig{
			WorkflowExecutionRetentionTtl: durationpb.New(retention),
		},
	})
	if err != nil {
		return fmt.Errorf("devserver: set retention of namespace %q: %w", s.namespace, err)
	}
	return nil
}

// dialReady dials the frontend and describes the namespace until both work or
// ctx ends.
func (s *Server) dialReady(ctx context.Context) (client.Client, error) {
	const poll = 50 * time.Millisecond
	var lastErr error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := client.DialContext(attempt, client.Options{
			HostPort:  s.address,
			Namespace: s.namespace,
			Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
		})
		if err == nil {
			_, err = describeNamespace(attempt, c, s.namespace)
			if err == nil {
				cancel()
				return c, nil
			}
			c.Close()
		}
		cancel()
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("devserver: server at %s not ready: %w (last error: %v)", s.address, ctx.Err(), lastErr)
		case <-time.After(poll):
		}
	}
}

func describeNamespace(ctx context.Context, c client.Client, ns string) (*workflowservice.DescribeNamespaceResponse, error) {
	resp, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	if err != nil {
		return nil, err
	}
	if st := resp.GetNamespaceInfo().GetState(); st != enumspb.NAMESPACE_STATE_REGISTERED {
		return nil, fmt.Errorf("devserver: namespace %q is %v", ns, st)
	}
	return resp, nil
}

// ports are the loopback ports of one server's services.
type ports struct {
	host                                string // frontend listen IP
	frontend, history, matching, worker int
}

// frontendAddr is where clients in this process reach the frontend: loopback
// when the frontend listens on every interface.
func (p ports) frontendAddr() string {
	host := p.host
	if ip := net.ParseIP(host); ip.IsUnspecified() {
		host = defaultHost
	}
	return net.JoinHostPort(host, strconv.Itoa(p.frontend))
}

func pickPorts(host string, frontend int) (ports, error) {
	p := ports{host: host, frontend: frontend}
	if frontend == 0 {
		var err error
		if p.frontend, err = freePort(host); err != nil {
			return p, err
		}
	} else {
		// A taken port would otherwise surface as the server's logger.Fatal,
		// which exits the process.
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(frontend)))
		if err != nil {
			return p, fmt.Errorf("devserver: frontend port: %w", err)
		}
		_ = l.Close()
	}
	for _, port := range []*int{&p.history, &p.matching, &p.worker} {
		var err error
		if *port, err = freePort(defaultHost); err != nil {
			return p, err
		}
	}
	return p, nil
}

// freePort returns a port the OS will not hand to another bind(:0) for a
// while: connecting to it and closing from the server side leaves it in
// TIME_WAIT, which still lets us bind it explicitly (SO_REUSEADDR). Without
// this, two servers started together in one process could draw the same
// port. Same trick as the server's common/testing/freeport.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("devserver: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	addr := l.Addr().(*net.TCPAddr)
	dial := *addr
	if dial.IP.IsUnspecified() {
		dial.IP = net.ParseIP(defaultHost)
	}
	c, err := net.DialTCP("tcp", nil, &dial)
	if err != nil {
		return 0, fmt.Errorf("devserver: free port: %w", err)
	}
	defer func() { _ = c.Close() }()
	sc, err := l.Accept()
	if err != nil {
		return 0, fmt.Errorf("devserver: free port: %w", err)
	}
	_ = sc.Close()
	return addr.Port, nil
}
