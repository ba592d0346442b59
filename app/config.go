// Package app assembles p2p's parts into the processes the p2p binary runs:
// configuration from flags and P2P_* environment variables, logging, the
// Temporal client, the API server and the worker.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/internal/ratelimit"
	"github.com/p2p-payer/p2p/pdex"
)

// Config is the configuration shared by the p2p subcommands. Every field
// has a flag and a P2P_* environment variable; the flag wins.
type Config struct {
	DatabaseURL       string     // P2P_DATABASE_URL: postgres://… (pgx) or a SQLite file path
	TemporalAddress   string     // P2P_TEMPORAL_ADDRESS
	TemporalNamespace string     // P2P_TEMPORAL_NAMESPACE
	TaskQueue         string     // P2P_TASK_QUEUE
	Addr              string     // P2P_ADDR: the API's listen address
	TLS               ServerTLS  // P2P_TLS_*: the API's certificate and partners' client CAs; unset: plain HTTP
	PublicURL         string     // P2P_PUBLIC_URL: how partners reach the API (JWKS); default http://Addr
	Partners          string     // P2P_PARTNERS: partner registry YAML
	FHIRTrustHeader   string     // P2P_FHIR_TRUST_HEADER: header naming the authenticated partner on /fhir (set by a gateway)
	PayerIdentifier   string     // P2P_PAYER_IDENTIFIER: our organization's identifier, system|value, as consents name us
	ImportDir         string     // P2P_IMPORT_DIR: where imports write the member data they pull (NDJSON), a file bucket
	ImportBucket      string     // P2P_IMPORT_BUCKET: the bucket imports stage and deliver in, s3://… or file:///…; instead of ImportDir
	IdentitySnapshot  string     // P2P_IDENTITY_SNAPSHOT: file the identity index is snapshotted to and restored from
	SourceFHIR        FHIRServer // P2P_SOURCE_FHIR_*: our FHIR server, which exports read; unset: synthetic data
	ImportFHIR        FHIRServer // P2P_IMPORT_FHIR_*: our FHIR server, which imports write to; unset: NDJSON only
	LogLevel          string     // P2P_LOG_LEVEL: debug, info, warn, error
	// StatusRetryAfter (P2P_STATUS_RETRY_AFTER) is the Retry-After of a
	// bulk export in progress; p2p dev polls on loopback and sets 1s.
	StatusRetryAfter time.Duration
	// ShutdownTimeout (P2P_SHUTDOWN_TIMEOUT) is the drain on SIGINT/SIGTERM:
	// the API's in-flight requests, the worker's in-flight activities
	// (worker.Options.WorkerStopTimeout).
	ShutdownTimeout time.Duration
	// StartupTimeout (P2P_STARTUP_TIMEOUT): how long api and worker retry
	// at start while the database or Temporal is not up yet; 0: one try.
	StartupTimeout time.Duration
	// ResumeInterval (P2P_RESUME_INTERVAL): how often the API starts the
	// workflows of transfers it accepted but could not start
	// (API.ResumeLoop).
	ResumeInterval time.Duration
	Retention      Retention // the worker's maintenance schedules

	// authn (issue 11): client authentication of /v1 and /fhir
	// (docs/authentication.md).
	//
	// FHIRAddr (P2P_FHIR_ADDR) is the partner-facing listen address:
	// set, /fhir (with its token endpoint and SMART configuration), the
	// JWKS and partners' acknowledgements are served there and /fhir no
	// longer on Addr. FHIRPublicURL (P2P_FHIR_PUBLIC_URL) is how
	// partners reach it; default http(s)://FHIRAddr.
	FHIRAddr      string
	FHIRPublicURL string
	// ClientsFile (P2P_CLIENTS_FILE) registers /v1 clients at start
	// (ApplyClientsFile).
	ClientsFile string
	// TokenLifetime (P2P_ACCESS_TOKEN_LIFETIME) is how long the access
	// tokens we issue last; 0: smartauth.DefaultTokenLifetime (5m).
	TokenLifetime time.Duration
	// Resource limits (issue 11, limits).
	Limits Limits // P2P_RATE_*, P2P_PUBLIC_RATE_*: the request rates the API admits
	// Egress (issue 11): the caps of what one import pulls from an old
	// payer (activities.ImportLimits). Outbound calls themselves are
	// constrained per partner in the registry (allow_private_network,
	// allowed_hosts, token_hosts).
	ImportMaxFileBytes int64 // P2P_IMPORT_MAX_FILE_BYTES: one downloaded file
	ImportMaxBytes     int64 // P2P_IMPORT_MAX_BYTES: every file of one import together
	ImportMaxFiles     int64 // P2P_IMPORT_MAX_FILES: files one manifest may list
	// Signing keys and Temporal authentication (issue 11, keys).

	// Keys (P2P_KEYS_DIR, P2P_*_KEY_RETENTION, P2P_*_KEY): the signing
	// keys of each purpose.
	Keys Keys
	// TemporalAuth (P2P_TEMPORAL_TLS_*, P2P_TEMPORAL_API_KEY*): how the
	// API and the worker authenticate to the Temporal frontend.
	TemporalAuth TemporalAuth
	// --- auditev (issue 11): audit evidence outside the database ---

	// AuditWitness (P2P_AUDIT_WITNESS): a directory, or an http(s) URL,
	// that gets a copy of every audit checkpoint the API and the worker
	// sign, where the database's users cannot write; a directory is also
	// read back as the last signed checkpoint to extend, and by `p2p
	// audit verify`. Empty: none (`p2p dev`: <data dir>/audit-witness).
	AuditWitness string
	// AuditMaxAge (P2P_AUDIT_CHECKPOINT_MAX_AGE): `p2p audit verify`
	// fails when the newest checkpoint is older; the worker signs a log
	// that has not grown again after half of it. Default 24h.
	AuditMaxAge time.Duration
	// CodecOrigins (P2P_CODEC_CORS_ORIGINS): the web origins, comma
	// separated, of the Temporal Web UIs that may call the codec server
	// from a browser (CORS); empty: none (the CLI needs none).
	CodecOrigins string
}

// Limits are the request rates the API admits, each a token bucket per
// key in this process's memory: N API processes behind a balancer admit N
// times them. A zero field takes its Default*; a negative rate turns that
// limit off.
type Limits struct {
	// ClientRate (P2P_RATE_LIMIT) and ClientBurst (P2P_RATE_BURST): /v1
	// requests per second per authenticated client (per remote address
	// for a request without one), sustained and at once.
	ClientRate  float64
	ClientBurst int
	// PublicRate (P2P_PUBLIC_RATE_LIMIT) and PublicBurst
	// (P2P_PUBLIC_RATE_BURST): requests per second per remote address to
	// what callers reach before authenticating: the token endpoints
	// and partners' POST /v1/transfers/{id}/ack.
	PublicRate  float64
	PublicBurst int
}

// Defaults of Limits. A payer system submitting transfers is far below
// DefaultClientRate (the dev stack accepts about 160 transfers/s in all,
// docs/benchmarks.md); a partner fetches a token every few minutes and
// acknowledges each delivery once.
const (
	DefaultClientRate  = 50
	DefaultClientBurst = 100
	DefaultPublicRate  = 5
	DefaultPublicBurst = 20
)

// withDefaults returns l with its zero fields set to the defaults.
func (l Limits) withDefaults() Limits {
	if l.ClientRate == 0 {
		l.ClientRate = DefaultClientRate
	}
	if l.ClientBurst <= 0 {
		l.ClientBurst = DefaultClientBurst
	}
	if l.PublicRate == 0 {
		l.PublicRate = DefaultPublicRate
	}
	if l.PublicBurst <= 0 {
		l.PublicBurst = DefaultPublicBurst
	}
	return l
}

// client is the per-client limit of /v1; public the per-address limit of
// the token endpoints and acknowledgements. A negative rate is no limit.
func (l Limits) client() ratelimit.Limit {
	l = l.withDefaults()
	return ratelimit.Limit{Rate: l.ClientRate, Burst: l.ClientBurst}
}

func (l Limits) public() ratelimit.Limit {
	l = l.withDefaults()
	return ratelimit.Limit{Rate: l.PublicRate, Burst: l.PublicBurst}
}

// ImportLimits is the import caps of c, defaults filled in.
func (c Config) ImportLimits() activities.ImportLimits {
	return activities.ImportLimits{FileBytes: c.ImportMaxFileBytes, TransferBytes: c.ImportMaxBytes, Files: int(c.ImportMaxFiles)}.WithDefaults()
}

// ValidateImportLimits reports a negative cap or a per-file cap above the
// per-import one.
func (c Config) ValidateImportLimits() error {
	if c.ImportMaxFiles < 0 || c.ImportMaxFiles > 1<<31-1 {
		return fmt.Errorf("P2P_IMPORT_MAX_FILES %d: want 0 (the default) to %d", c.ImportMaxFiles, 1<<31-1)
	}
	return activities.ImportLimits{FileBytes: c.ImportMaxFileBytes, TransferBytes: c.ImportMaxBytes, Files: int(c.ImportMaxFiles)}.Validate()
}

// ImportFileDir is the local directory imports write to, when they write
// to one: ImportDir, or the directory of a file:// ImportBucket; "" for
// S3. Keys must stay out of it.
func (c Config) ImportFileDir() string {
	if c.ImportDir != "" {
		return c.ImportDir
	}
	if u, err := url.Parse(c.ImportBucket); err == nil && u.Scheme == "file" {
		return filepath.FromSlash(u.Path)
	}
	return ""
}

// importBucketCheck bounds the start-up check that the import bucket can
// be reached.
const importBucketCheck = 30 * time.Second

// OpenImportBucket opens the bucket imports stage and deliver in:
// ImportBucket, else a file bucket at ImportDir; nil, nil with neither
// (imports fail). Both set is an error: one of them must be the truth.
// The bucket is checked (it exists, the credentials reach it), so that a
// wrong name fails the start, not the first import.
func (c Config) OpenImportBucket(ctx context.Context) (*blobstage.Bucket, error) {
	var b *blobstage.Bucket
	var err error
	switch {
	case c.ImportBucket != "" && c.ImportDir != "":
		return nil, errors.New("both --import-bucket and --import-dir (P2P_IMPORT_BUCKET, P2P_IMPORT_DIR) are set: set one")
	case c.ImportBucket != "":
		b, err = blobstage.Open(ctx, c.ImportBucket)
	case c.ImportDir != "":
		b, err = blobstage.OpenDir(c.ImportDir)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, importBucketCheck)
	defer cancel()
	if err := b.Check(cctx); err != nil {
		_ = b.Close() // unusable: the check's error is the one to report
		return nil, err
	}
	return b, nil
}

// DefaultAuditMaxAge is AuditMaxAge's default.
const DefaultAuditMaxAge = Day

// FHIRServer is one of our own FHIR servers: its base URL and, if it
// wants one, a file holding a bearer token (read at start and again
// whenever it changes: bulkdata.FileToken).
type FHIRServer struct {
	URL            string
	TokenFile      string
	MemberIDSystem string // the source's: Patient.identifier system of our member ids
}

// Retention is how long p2p keeps what, and how often its maintenance
// runs (Temporal Schedules the worker creates).
type Retention struct {
	// CheckpointInterval (P2P_AUDIT_CHECKPOINT_INTERVAL): how often the
	// audit log's tree head is signed, when it grew. Default 10m.
	CheckpointInterval time.Duration
	// AuditRetention (P2P_AUDIT_RETENTION): how long audit rows are kept
	// at least. p2p never deletes them (the log is append-only and hash
	// linked); the setting records the promise and must not be shorter
	// than PHIRetention. Default 6y (HIPAA's six years).
	AuditRetention time.Duration
	// PHIRetention (P2P_PHI_RETENTION): how long an export's PHI payloads
	// are kept after its transfer ended (acknowledged, complete or
	// failed). Default 30d.
	PHIRetention time.Duration
	// PurgeInterval (P2P_PHI_PURGE_INTERVAL): how often the purge runs.
	// Default 24h.
	PurgeInterval time.Duration
}

// Defaults of Retention.
const (
	DefaultCheckpointInterval = 10 * time.Minute
	DefaultAuditRetention     = 6 * Year
	DefaultPHIRetention       = 30 * Day
	DefaultPurgeInterval      = Day
)

// Validate checks that the intervals are positive and that audit rows are
// kept at least as long as the PHI they account for.
func (r Retention) Validate() error {
	switch {
	case r.CheckpointInterval < time.Second || r.PurgeInterval < time.Second:
		return fmt.Errorf("the checkpoint interval (%v) and the purge interval (%v) must be at least 1s", r.CheckpointInterval, r.PurgeInterval)
	case r.PHIRetention <= 0:
		return fmt.Errorf("P2P_PHI_RETENTION must be positive, not %v", r.PHIRetention)
	case r.AuditRetention < r.PHIRetention:
		return fmt.Errorf("P2P_AUDIT_RETENTION (%s) is shorter than P2P_PHI_RETENTION (%s): the audit log must outlive the data", FormatDuration(r.AuditRetention), FormatDuration(r.PHIRetention))
	}
	return nil
}

// Env returns the environment variable key, or def when it is unset.
func Env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// Which flags a subcommand takes: a subcommand binds the flags of every
// group it names.
const (
	FlagDatabase = 1 << iota // the store
	FlagTemporal             // the Temporal frontend
	FlagAPI                  // the API server
	FlagWorker               // the worker
	FlagDev                  // what p2p dev shares with api and worker
)

// DefaultTokenLifetime is how long our access tokens last (authn).
const DefaultTokenLifetime = 5 * time.Minute

// DefaultShutdownTimeout is how long api and worker drain on
// SIGINT/SIGTERM.
const DefaultShutdownTimeout = 20 * time.Second

// DefaultStartupTimeout is how long api and worker wait at start for the
// database and Temporal to come up.
const DefaultStartupTimeout = time.Minute

// Bind registers on fs the flags of the groups in which. A flag's default
// is its P2P_* environment variable when set, else what c already holds
// (how p2p dev sets its own defaults), else the built-in default. A
// malformed duration in the environment is an error.
func (c *Config) Bind(fs *flag.FlagSet, which int) error {
	b := binder{fs: fs, which: which}
	b.str(^0, &c.LogLevel, "log-level", "P2P_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	b.str(FlagDatabase, &c.DatabaseURL, "database-url", "P2P_DATABASE_URL", "", "postgres://… or a SQLite file path")
	b.str(FlagTemporal, &c.TemporalAddress, "temporal-address", "P2P_TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port")
	b.str(FlagTemporal, &c.TemporalNamespace, "temporal-namespace", "P2P_TEMPORAL_NAMESPACE", "default", "Temporal namespace")
	b.str(FlagTemporal, &c.TaskQueue, "task-queue", "P2P_TASK_QUEUE", "p2p-transfers", "task queue of transfer workflows")
	b.str(FlagAPI|FlagDev, &c.Addr, "addr", "P2P_ADDR", "127.0.0.1:8080", "API listen address")
	b.str(FlagAPI|FlagDev, &c.PublicURL, "public-url", "P2P_PUBLIC_URL", "",
		"base URL partners use to reach this API, when a proxy stands in front of it: the base of the URLs /fhir hands out and the audience of SMART client assertions; empty: http(s)://ADDR")
	b.str(FlagAPI, &c.TLS.CertFile, "tls-cert-file", "P2P_TLS_CERT_FILE", "", "serve TLS with this certificate chain, PEM; empty: plain HTTP")
	b.str(FlagAPI, &c.TLS.KeyFile, "tls-key-file", "P2P_TLS_KEY_FILE", "", "private key of --tls-cert-file, PEM")
	b.str(FlagAPI, &c.TLS.ClientCAFile, "tls-client-ca-file", "P2P_TLS_CLIENT_CA_FILE", "",
		"CA bundle, PEM, of partners' client certificates: asked for and verified when given; /fhir names mtls requesters by them")
	b.str(FlagAPI, &c.FHIRTrustHeader, "fhir-trust-header", "P2P_FHIR_TRUST_HEADER", "",
		"request header that names the partner calling /fhir, set by an authenticating gateway; empty: partners are named by SMART tokens and client certificates only")
	b.str(FlagAPI|FlagWorker, &c.PayerIdentifier, "payer-identifier", "P2P_PAYER_IDENTIFIER", "",
		"our organization's identifier as consents name us, system|value, e.g. http://hl7.org/fhir/sid/us-npi|1234567893")
	b.dur(FlagAPI|FlagDev, &c.StatusRetryAfter, "status-retry-after", "P2P_STATUS_RETRY_AFTER", pdex.DefaultStatusRetryAfter,
		"Retry-After of a bulk export's status while it runs: how soon partners poll again")
	b.str(FlagAPI|FlagWorker, &c.Partners, "partners", "P2P_PARTNERS", "", "partner registry YAML file (required): the partners we exchange with; the API refuses transfers to any other")
	b.str(FlagWorker|FlagDev, &c.SourceFHIR.URL, "source-fhir-url", "P2P_SOURCE_FHIR_URL", "", "base URL of our FHIR R4 server that exports read member data from; empty: synthetic data")
	b.str(FlagWorker|FlagDev, &c.SourceFHIR.TokenFile, "source-fhir-token-file", "P2P_SOURCE_FHIR_TOKEN_FILE", "", "file holding a bearer token for the source FHIR server")
	b.str(FlagWorker|FlagDev, &c.SourceFHIR.MemberIDSystem, "source-fhir-member-id-system", "P2P_SOURCE_FHIR_MEMBER_ID_SYSTEM", "",
		"identifier system of our member ids on the source FHIR server's Patients; empty: the payer's")
	b.str(FlagWorker|FlagDev, &c.ImportFHIR.URL, "import-fhir-url", "P2P_IMPORT_FHIR_URL", "", "base URL of our FHIR R4 server that imports write to, as batch PUTs; empty: NDJSON only")
	b.str(FlagWorker|FlagDev, &c.ImportFHIR.TokenFile, "import-fhir-token-file", "P2P_IMPORT_FHIR_TOKEN_FILE", "", "file holding a bearer token for the import FHIR server")
	b.str(FlagAPI|FlagWorker, &c.IdentitySnapshot, "identity-snapshot", "P2P_IDENTITY_SNAPSHOT", "",
		"file the identity index is written to once built and at stop, and restored from at start (then only later member writes are read); holds PHI, mode 0600; one per process; empty: built from the store at every start")
	b.str(FlagWorker, &c.ImportDir, "import-dir", "P2P_IMPORT_DIR", "",
		"directory where imports stage and write pulled member data as NDJSON, one directory per transfer: every worker must see the same one (one host); empty: --import-bucket, else imports fail")
	b.str(FlagWorker|FlagDev, &c.ImportBucket, "import-bucket", "P2P_IMPORT_BUCKET", "",
		"bucket where imports stage and write pulled member data, for workers on several hosts: s3://BUCKET?region=R (options: endpoint, use_path_style, ssetype, kmskeyid; credentials from the AWS chain, never the URL) or file:///DIR; instead of --import-dir (p2p dev: DATA-DIR/imports)")
	r := &c.Retention
	b.dur(FlagWorker|FlagDev, &r.CheckpointInterval, "audit-checkpoint-interval", "P2P_AUDIT_CHECKPOINT_INTERVAL", DefaultCheckpointInterval, "how often the audit log is checkpointed")
	b.dur(FlagWorker|FlagDev, &r.AuditRetention, "audit-retention", "P2P_AUDIT_RETENTION", DefaultAuditRetention, "how long audit rows are kept at least; p2p never deletes them")
	b.dur(FlagWorker|FlagDev, &r.PHIRetention, "phi-retention", "P2P_PHI_RETENTION", DefaultPHIRetention, "how long export PHI is kept after the transfer ended")
	b.dur(FlagWorker|FlagDev, &r.PurgeInterval, "phi-purge-interval", "P2P_PHI_PURGE_INTERVAL", DefaultPurgeInterval, "how often expired PHI is purged")
	// authn (issue 11)
	b.str(FlagAPI, &c.FHIRAddr, "fhir-addr", "P2P_FHIR_ADDR", "",
		"partner-facing listen address of /fhir, its token endpoint, the JWKS and acknowledgements; empty: /fhir is served on --addr")
	b.str(FlagAPI, &c.FHIRPublicURL, "fhir-public-url", "P2P_FHIR_PUBLIC_URL", "",
		"base URL partners use to reach --fhir-addr (the audience of /fhir tokens); empty: http(s)://FHIR_ADDR, or --public-url without --fhir-addr")
	b.str(FlagAPI, &c.ClientsFile, "clients-file", "P2P_CLIENTS_FILE", "", "YAML file of /v1 API clients registered (or updated) at start")
	b.dur(FlagAPI|FlagDev, &c.TokenLifetime, "access-token-lifetime", "P2P_ACCESS_TOKEN_LIFETIME", DefaultTokenLifetime,
		"how long the access tokens of /oauth/token and /fhir/auth/token last")

	// Resource limits (issue 11, limits).
	l := &c.Limits
	b.float(FlagAPI|FlagDev, &l.ClientRate, "rate-limit", "P2P_RATE_LIMIT", DefaultClientRate,
		"/v1 requests per second per client (per remote address without credentials), in this process; negative: no limit")
	b.integer(FlagAPI|FlagDev, &l.ClientBurst, "rate-burst", "P2P_RATE_BURST", DefaultClientBurst, "/v1 requests per client at once, above --rate-limit")
	b.float(FlagAPI|FlagDev, &l.PublicRate, "public-rate-limit", "P2P_PUBLIC_RATE_LIMIT", DefaultPublicRate,
		"requests per second per remote address to each token endpoint (/oauth/token, /fhir/auth/token) and to acknowledgements, in this process; negative: no limit")
	b.integer(FlagAPI|FlagDev, &l.PublicBurst, "public-rate-burst", "P2P_PUBLIC_RATE_BURST", DefaultPublicBurst, "requests per remote address at once, above --public-rate-limit")
	// Egress (issue 11): import caps.
	b.int(FlagWorker|FlagDev, &c.ImportMaxFileBytes, "import-max-file-bytes", "P2P_IMPORT_MAX_FILE_BYTES", activities.DefaultImportFileBytes,
		"largest file an import downloads, in bytes; a larger one fails the import (import_file_too_large)")
	b.int(FlagWorker|FlagDev, &c.ImportMaxBytes, "import-max-bytes", "P2P_IMPORT_MAX_BYTES", activities.DefaultImportTransferBytes,
		"most bytes one import downloads, all its files together; more fails the import (import_too_large)")
	b.int(FlagWorker|FlagDev, &c.ImportMaxFiles, "import-max-files", "P2P_IMPORT_MAX_FILES", activities.DefaultImportFiles,
		"most files (output and error) an old payer's manifest may list; more fails the import (import_too_many_files)")
	b.dur(FlagAPI|FlagWorker|FlagDev, &c.ShutdownTimeout, "shutdown-timeout", "P2P_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout,
		"how long to wait for in-flight work on SIGINT/SIGTERM: the API's requests, the worker's activities (then cancelled)")
	b.dur(FlagAPI|FlagWorker, &c.StartupTimeout, "startup-timeout", "P2P_STARTUP_TIMEOUT", DefaultStartupTimeout,
		"how long to retry, with backoff, while the database or Temporal is not up yet at start; 0: fail at the first refusal")
	b.dur(FlagAPI, &c.ResumeInterval, "resume-interval", "P2P_RESUME_INTERVAL", DefaultResumeInterval,
		"how often to start the workflows of transfers accepted but not started (Temporal was down), older than 30s")

	// Signing keys and Temporal authentication (issue 11, keys).
	k := &c.Keys
	b.str(FlagAPI|FlagWorker, &k.Dir, "keys-dir", "P2P_KEYS_DIR", "",
		"directory of the key sets (manifest-keys.json, checkpoint-keys.json, token-keys.json, payload-keys.json; p2p keys generate), outside the data; P2P_MANIFEST_KEY, P2P_CHECKPOINT_KEY, P2P_TOKEN_KEY, P2P_PAYLOAD_KEY in the environment win")
	b.dur(FlagAPI, &k.ManifestRetention, "manifest-key-retention", "P2P_MANIFEST_KEY_RETENTION", DefaultManifestKeyRetention,
		"how long a retired manifest key stays in the JWKS (at least the export file TTL; 0: for ever)")
	b.dur(FlagAPI, &k.CheckpointRetention, "checkpoint-key-retention", "P2P_CHECKPOINT_KEY_RETENTION", 0,
		"how long a retired audit checkpoint key stays in the JWKS (0: for ever, as long as the log)")
	b.dur(FlagAPI, &k.TokenRetention, "token-key-retention", "P2P_TOKEN_KEY_RETENTION", DefaultTokenKeyRetention,
		"how long a retired access token key stays in the JWKS (at least the token lifetime; 0: for ever)")
	a := &c.TemporalAuth
	b.str(FlagTemporal, &a.CertFile, "temporal-tls-cert-file", "P2P_TEMPORAL_TLS_CERT_FILE", "", "client certificate chain, PEM, for mTLS to the Temporal frontend; any P2P_TEMPORAL_TLS_* or API key turns TLS on")
	b.str(FlagTemporal, &a.KeyFile, "temporal-tls-key-file", "P2P_TEMPORAL_TLS_KEY_FILE", "", "private key of --temporal-tls-cert-file, PEM")
	b.str(FlagTemporal, &a.CAFile, "temporal-tls-ca-file", "P2P_TEMPORAL_TLS_CA_FILE", "", "CA bundle, PEM, that the Temporal frontend's certificate must chain to; empty: the system's")
	b.str(FlagTemporal, &a.ServerName, "temporal-tls-server-name", "P2P_TEMPORAL_TLS_SERVER_NAME", "", "name the Temporal frontend's certificate must carry; empty: the host of --temporal-address")
	b.str(FlagTemporal, &a.APIKeyFile, "temporal-api-key-file", "P2P_TEMPORAL_API_KEY_FILE", "", "file holding a Temporal Cloud API key, read again when it changes (or P2P_TEMPORAL_API_KEY in the environment)")
	if b.which&FlagTemporal != 0 {
		a.APIKey = Env(TemporalAPIKeyEnv, a.APIKey)
	}
	// auditev (issue 11): audit evidence outside the database.
	b.str(FlagAPI|FlagWorker|FlagDev, &c.AuditWitness, "audit-witness", "P2P_AUDIT_WITNESS", "",
		"directory or http(s) URL that gets a copy of every audit checkpoint signed, out of the database's reach; empty: none (p2p dev: DATA-DIR/audit-witness)")
	b.dur(FlagWorker|FlagDev, &c.AuditMaxAge, "audit-checkpoint-max-age", "P2P_AUDIT_CHECKPOINT_MAX_AGE", DefaultAuditMaxAge,
		"p2p audit verify fails when the newest checkpoint is older; the worker re-signs a log that has not grown after half of it")
	b.str(FlagAPI|FlagDev, &c.CodecOrigins, "codec-cors-origins", "P2P_CODEC_CORS_ORIGINS", "",
		"origins (scheme://host:port, comma separated) of Temporal Web UIs that may call the codec server /codec from a browser; empty: none")
	return b.err
}

// binder registers the flags of one subcommand.
type binder struct {
	fs    *flag.FlagSet
	which int
	err   error
}

// str binds a string flag if the subcommand takes one of groups.
func (b *binder) str(groups int, p *string, name, env, def, usage string) {
	if b.which&groups == 0 {
		return
	}
	if *p != "" {
		def = *p
	}
	b.fs.StringVar(p, name, Env(env, def), usage+" ("+env+")")
}

// int binds an integer flag.
func (b *binder) int(groups int, p *int64, name, env string, def int64, usage string) {
	if b.which&groups == 0 {
		return
	}
	if *p != 0 {
		def = *p
	}
	if v, ok := os.LookupEnv(env); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("%s=%q: want an integer", env, v)
		}
		if err == nil {
			def = n
		}
	}
	b.fs.Int64Var(p, name, def, usage+" ("+env+")")
}

// dur binds a duration flag (ParseDuration: 30s, 10m, 36h, 30d, 6y).
func (b *binder) dur(groups int, p *time.Duration, name, env string, def time.Duration, usage string) {
	if b.which&groups == 0 {
		return
	}
	if *p != 0 {
		def = *p
	}
	d, err := EnvDuration(env, def)
	if err != nil && b.err == nil {
		b.err = err
	}
	*p = d
	b.fs.Var(durationFlag{p}, name, usage+" ("+env+")")
}

// float binds a float flag; a malformed value in the environment is an
// error.
func (b *binder) float(groups int, p *float64, name, env string, def float64, usage string) {
	if b.which&groups == 0 {
		return
	}
	if *p != 0 {
		def = *p
	}
	if v := Env(env, ""); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("%s: %q is not a number", env, v)
		}
		def = f
	}
	b.fs.Float64Var(p, name, def, usage+" ("+env+")")
}

// integer binds an integer flag; a malformed value in the environment is an
// error.
func (b *binder) integer(groups int, p *int, name, env string, def int, usage string) {
	if b.which&groups == 0 {
		return
	}
	if *p != 0 {
		def = *p
	}
	if v := Env(env, ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("%s: %q is not an integer", env, v)
		}
		def = n
	}
	b.fs.IntVar(p, name, def, usage+" ("+env+")")
}
