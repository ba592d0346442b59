package devserver

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/types/known/durationpb"
)

const clusterName = "active"

// schemaMarker is the last object the SQLite schema setup creates (visibility
// schema, last trigger): present means the setup ran to the end.
const schemaMarker = "executions_visibility_au"

// sqliteAttrs are the SQLite connection attributes. The plugin turns every
// name it does not know as a URI parameter into a pragma, and SQLite ignores
// unknown pragmas: lite_server's "_journal_mode" is such a name and WAL never
// turns on, so these carry no "_" prefix. WAL with synchronous=normal nearly
// triples throughput over the defaults and survives a killed process (not a
// power cut).
func sqliteAttrs() map[string]string {
	return map[string]string{
		"mode":         "rwc",
		"journal_mode": "wal",
		"synchronous":  "normal",
	}
}

func buildConfig(o Options, p ports) *config.Config {
	sqlCfg := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      filepath.Join(o.DataDir, DBFileName),
		ConnectAttributes: sqliteAttrs(),
		// One connection: four gave 31,000 SQLITE_BUSY errors and a quarter of
		// the throughput. 1 is also the plugin's default; say it anyway.
		MaxConns:     1,
		MaxIdleConns: 1,
	}
	frontendAddr := p.frontendAddr()

	var cfg config.Config
	cfg.Global.Membership = config.Membership{BroadcastAddress: defaultHost}
	// No Global.Metrics and no PProf port: both would listen on fixed ports,
	// and the server has no use for them in dev.
	cfg.Persistence = config.Persistence{
		DefaultStore:     sqliteplugin.PluginName,
		VisibilityStore:  sqliteplugin.PluginName,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlCfg}},
	}
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontendAddr},
		},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = map[string]config.Service{
		string(primitives.FrontendService): {RPC: config.RPC{GRPCPort: p.frontend, BindOnIP: p.host}},
		string(primitives.HistoryService):  {RPC: config.RPC{GRPCPort: p.history, BindOnIP: defaultHost}},
		string(primitives.MatchingService): {RPC: config.RPC{GRPCPort: p.matching, BindOnIP: defaultHost}},
		string(primitives.WorkerService):   {RPC: config.RPC{GRPCPort: p.worker, BindOnIP: defaultHost}},
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The server's own system workers dial the frontend through this.
	cfg.PublicClient.HostPort = frontendAddr
	return &cfg
}

func serverOptions(cfg *config.Config, p ports, logger log.Logger) []temporal.ServerOption {
	local := func(port int) static.Hosts {
		return static.SingleLocalHost(net.JoinHostPort(defaultHost, strconv.Itoa(port)))
	}
	frontend := static.SingleLocalHost(p.frontendAddr())
	return []temporal.ServerOption{
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		// Static hosts instead of ringpop: no membership ports, no join wait,
		// and two servers in one process cannot discover each other.
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: frontend,
			primitives.HistoryService:  local(p.history),
			primitives.MatchingService: local(p.matching),
			primitives.WorkerService:   local(p.worker),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorization.NewNoopAuthorizer()),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper {
			return authorization.NewNoopClaimMapper()
		}),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// Search attributes that p2p dev adds at startup are usable at
			// once instead of after the cache's next refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		}),
	}
}

// prepareDB sets up the schema in a new file and registers the namespace if
// absent, before the server starts (the server does not create namespaces).
func prepareDB(sqlCfg *config.SQL, o Options, cluster string) error {
	ok, err := schemaReady(sqlCfg.DatabaseName)
	if err != nil {
		return err
	}
	if !ok {
		// Same config, hence same connection, as the server uses afterwards.
		if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
			return fmt.Errorf("devserver: set up schema in %s: %w", sqlCfg.DatabaseName, err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(cluster, o.Namespace, false, nil)
	if err != nil {
		return fmt.Errorf("devserver: namespace config: %w", err)
	}
	ns.Detail.Config.Retention = durationpb.New(o.Retention)
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return fmt.Errorf("devserver: register namespace %q: %w", o.Namespace, err)
	}
	return nil
}

// schemaReady reports whether the file holds a complete schema (true) or is
// missing or empty (false). A partial schema, left by a process killed during
// the first start, is an error: setup cannot resume it.
func schemaReady(path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("devserver: %w", err)
	}
	// A separate read-only connection, closed at once; modernc's SQLite keeps
	// the server's locks intact when another connection to the file closes.
	db, err := sql.Open("sqlite", "file:"+path+"?"+url.Values{"mode": {"ro"}}.Encode())
	if err != nil {
		return false, fmt.Errorf("devserver: open %s: %w", path, err)
	}
	defer func() { _ = db.Close() }()
	var objects, marker int
	err = db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE name = ?) FROM sqlite_master`, schemaMarker).
		Scan(&objects, &marker)
	if err != nil {
		return false, fmt.Errorf("devserver: read schema of %s: %w", path, err)
	}
	switch {
	case marker == 1:
		return true, nil
	case objects == 0:
		return false, nil
	default:
		return false, fmt.Errorf("devserver: %s holds an incomplete Temporal schema (first start interrupted?); delete it to start over", path)
	}
}

// serverLogger adapts the caller's zap logger for the server: error level
// only, and nothing at all once quiet is switched on. With no logger the
// server is silent except for a fatal error, after which it exits the process.
func serverLogger(zl *zap.Logger) (log.Logger, *quietSwitch) {
	q := &quietSwitch{}
	if zl == nil {
		enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
		zl = zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.FatalLevel))
	} else if zl.Core().Enabled(zapcore.ErrorLevel) {
		// Guarded: IncreaseLevel complains on stderr when the core is already
		// above error.
		zl = zl.WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel))
	}
	zl = zl.Named("temporal").WithOptions(
		zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{Core: c, q: q} }),
	)
	return log.NewZapLogger(zl), q
}

// quietSwitch silences the server's logs from the moment Stop begins.
type quietSwitch struct{ quiet atomic.Bool }

func (q *quietSwitch) on() { q.quiet.Store(true) }

// quietCore drops every entry below fatal once its switch is on.
type quietCore struct {
	zapcore.Core
	q *quietSwitch
}

func (c quietCore) Enabled(l zapcore.Level) bool {
	if c.q.quiet.Load() && l < zapcore.FatalLevel {
		return false
	}
	return c.Core.Enabled(l)
}

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !c.Enabled(e.Level) {
		return ce
	}
	return c.Core.Check(e, ce)
}

func (c quietCore) With(f []zapcore.Field) zapcore.Core {
	return quietCore{Core: c.Core.With(f), q: c.q}
}
