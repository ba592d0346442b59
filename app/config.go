// Package app assembles p2p's parts into the processes the p2p binary runs:
// configuration from flags and P2P_* environment variables, logging, the
// Temporal client, the API server and the worker.
package app

import (
	"flag"
	"fmt"
	"os"
	"time"
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
	SigningKey        string     // P2P_SIGNING_KEY: private JWK file
	Partners          string     // P2P_PARTNERS: partner registry YAML
	FHIRTrustHeader   string     // P2P_FHIR_TRUST_HEADER: header naming the authenticated partner on /fhir (set by a gateway)
	PayerIdentifier   string     // P2P_PAYER_IDENTIFIER: our organization's identifier, system|value, as consents name us
	ImportDir         string     // P2P_IMPORT_DIR: where imports write the member data they pull (NDJSON)
	SourceFHIR        FHIRServer // P2P_SOURCE_FHIR_*: our FHIR server, which exports read; unset: synthetic data
	ImportFHIR        FHIRServer // P2P_IMPORT_FHIR_*: our FHIR server, which imports write to; unset: NDJSON only
	LogLevel          string     // P2P_LOG_LEVEL: debug, info, warn, error
	ShutdownTimeout   time.Duration
	Retention         Retention // the worker's maintenance schedules
}

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

// RetentionFromEnv reads Retention from the P2P_* variables, with defaults.
func RetentionFromEnv() (Retention, error) {
	var r Retention
	for _, v := range []struct {
		key string
		def time.Duration
		dst *time.Duration
	}{
		{"P2P_AUDIT_CHECKPOINT_INTERVAL", DefaultCheckpointInterval, &r.CheckpointInterval},
		{"P2P_AUDIT_RETENTION", DefaultAuditRetention, &r.AuditRetention},
		{"P2P_PHI_RETENTION", DefaultPHIRetention, &r.PHIRetention},
		{"P2P_PHI_PURGE_INTERVAL", DefaultPurgeInterval, &r.PurgeInterval},
	} {
		d, err := EnvDuration(v.key, v.def)
		if err != nil {
			return r, err
		}
		*v.dst = d
	}
	return r, nil
}

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

// Which flags a subcommand takes.
const (
	FlagDatabase = 1 << iota
	FlagTemporal
	FlagAPI
	FlagWorker
)

// Bind registers the flags of the groups in which on fs, with defaults
// from the environment.
func (c *Config) Bind(fs *flag.FlagSet, which int) {
	fs.StringVar(&c.LogLevel, "log-level", Env("P2P_LOG_LEVEL", "info"), "log level: debug, info, warn, error (P2P_LOG_LEVEL)")
	if which&FlagDatabase != 0 {
		fs.StringVar(&c.DatabaseURL, "database-url", Env("P2P_DATABASE_URL", ""), "postgres://… or a SQLite file path (P2P_DATABASE_URL)")
	}
	if which&FlagTemporal != 0 {
		fs.StringVar(&c.TemporalAddress, "temporal-address", Env("P2P_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port (P2P_TEMPORAL_ADDRESS)")
		fs.StringVar(&c.TemporalNamespace, "temporal-namespace", Env("P2P_TEMPORAL_NAMESPACE", "default"), "Temporal namespace (P2P_TEMPORAL_NAMESPACE)")
		fs.StringVar(&c.TaskQueue, "task-queue", Env("P2P_TASK_QUEUE", "p2p-transfers"), "task queue of transfer workflows (P2P_TASK_QUEUE)")
	}
	if which&FlagAPI != 0 {
		fs.StringVar(&c.Addr, "addr", Env("P2P_ADDR", "127.0.0.1:8080"), "API listen address (P2P_ADDR)")
		fs.StringVar(&c.PublicURL, "public-url", Env("P2P_PUBLIC_URL", ""), "base URL partners use to reach this API (P2P_PUBLIC_URL)")
		fs.StringVar(&c.TLS.CertFile, "tls-cert-file", Env("P2P_TLS_CERT_FILE", ""), "serve TLS with this certificate chain, PEM; unset: plain HTTP (P2P_TLS_CERT_FILE)")
		fs.StringVar(&c.TLS.KeyFile, "tls-key-file", Env("P2P_TLS_KEY_FILE", ""), "private key of --tls-cert-file, PEM (P2P_TLS_KEY_FILE)")
		fs.StringVar(&c.TLS.ClientCAFile, "tls-client-ca-file", Env("P2P_TLS_CLIENT_CA_FILE", ""),
			"CA bundle, PEM, of partners' client certificates: asked for and verified when given; /fhir names mtls requesters by them (P2P_TLS_CLIENT_CA_FILE)")
		fs.StringVar(&c.FHIRTrustHeader, "fhir-trust-header", Env("P2P_FHIR_TRUST_HEADER", ""),
			"request header that names the partner calling /fhir, set by an authenticating gateway; empty refuses every /fhir call until partner auth lands (P2P_FHIR_TRUST_HEADER)")
		fs.StringVar(&c.PayerIdentifier, "payer-identifier", Env("P2P_PAYER_IDENTIFIER", ""),
			"our organization's identifier as consents name us, system|value, e.g. http://hl7.org/fhir/sid/us-npi|1234567893 (P2P_PAYER_IDENTIFIER)")
	}
	if which&(FlagAPI|FlagWorker) != 0 {
		fs.StringVar(&c.SigningKey, "signing-key", Env("P2P_SIGNING_KEY", ""), "private signing key, JWK JSON file (P2P_SIGNING_KEY)")
	}
	if which&FlagWorker != 0 {
		fs.StringVar(&c.Partners, "partners", Env("P2P_PARTNERS", ""), "partner registry YAML file (P2P_PARTNERS)")
		fs.StringVar(&c.SourceFHIR.URL, "source-fhir-url", Env("P2P_SOURCE_FHIR_URL", ""), "base URL of our FHIR R4 server that exports read member data from; unset: synthetic data (P2P_SOURCE_FHIR_URL)")
		fs.StringVar(&c.SourceFHIR.TokenFile, "source-fhir-token-file", Env("P2P_SOURCE_FHIR_TOKEN_FILE", ""), "file holding a bearer token for the source FHIR server (P2P_SOURCE_FHIR_TOKEN_FILE)")
		fs.StringVar(&c.SourceFHIR.MemberIDSystem, "source-fhir-member-id-system", Env("P2P_SOURCE_FHIR_MEMBER_ID_SYSTEM", ""), "identifier system of our member ids on the source FHIR server's Patients; default the payer's (P2P_SOURCE_FHIR_MEMBER_ID_SYSTEM)")
		fs.StringVar(&c.ImportFHIR.URL, "import-fhir-url", Env("P2P_IMPORT_FHIR_URL", ""), "base URL of our FHIR R4 server that imports write to, as batch PUTs (P2P_IMPORT_FHIR_URL)")
		fs.StringVar(&c.ImportFHIR.TokenFile, "import-fhir-token-file", Env("P2P_IMPORT_FHIR_TOKEN_FILE", ""), "file holding a bearer token for the import FHIR server (P2P_IMPORT_FHIR_TOKEN_FILE)")
		fs.StringVar(&c.ImportDir, "import-dir", Env("P2P_IMPORT_DIR", ""), "directory where imports write pulled member data as NDJSON, one directory per transfer (P2P_IMPORT_DIR)")
		if which&FlagAPI == 0 {
			fs.StringVar(&c.PayerIdentifier, "payer-identifier", Env("P2P_PAYER_IDENTIFIER", ""),
				"our organization's identifier as consents name us, system|value (P2P_PAYER_IDENTIFIER)")
		}
		r := &c.Retention
		fs.Var(durationFlag{&r.CheckpointInterval}, "audit-checkpoint-interval", "how often the audit log is checkpointed (P2P_AUDIT_CHECKPOINT_INTERVAL; default 10m)")
		fs.Var(durationFlag{&r.AuditRetention}, "audit-retention", "how long audit rows are kept at least; p2p never deletes them (P2P_AUDIT_RETENTION; default 6y)")
		fs.Var(durationFlag{&r.PHIRetention}, "phi-retention", "how long export PHI is kept after the transfer ended (P2P_PHI_RETENTION; default 30d)")
		fs.Var(durationFlag{&r.PurgeInterval}, "phi-purge-interval", "how often expired PHI is purged (P2P_PHI_PURGE_INTERVAL; default 24h)")
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to wait for in-flight work on SIGINT/SIGTERM")
}
