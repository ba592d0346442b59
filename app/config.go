// Package app assembles p2p's parts into the processes the p2p binary runs:
// configuration from flags and P2P_* environment variables, logging, the
// Temporal client, the API server and the worker.
package app

import (
	"flag"
	"os"
	"time"
)

// Config is the configuration shared by the p2p subcommands. Every field
// has a flag and a P2P_* environment variable; the flag wins.
type Config struct {
	DatabaseURL       string // P2P_DATABASE_URL: postgres://… (pgx) or a SQLite file path
	TemporalAddress   string // P2P_TEMPORAL_ADDRESS
	TemporalNamespace string // P2P_TEMPORAL_NAMESPACE
	TaskQueue         string // P2P_TASK_QUEUE
	Addr              string // P2P_ADDR: the API's listen address
	PublicURL         string // P2P_PUBLIC_URL: how partners reach the API (JWKS); default http://Addr
	SigningKey        string // P2P_SIGNING_KEY: private JWK file
	Partners          string // P2P_PARTNERS: partner registry YAML
	FHIRTrustHeader   string // P2P_FHIR_TRUST_HEADER: header naming the authenticated partner on /fhir (set by a gateway)
	PayerIdentifier   string // P2P_PAYER_IDENTIFIER: our organization's identifier, system|value, as consents name us
	LogLevel          string // P2P_LOG_LEVEL: debug, info, warn, error
	ShutdownTimeout   time.Duration
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
	}
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long to wait for in-flight work on SIGINT/SIGTERM")
}
