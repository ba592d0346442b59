package app

import (
	"flag"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/pdex"
)

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"10m", 10 * time.Minute, true},
		{"36h", 36 * time.Hour, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"6y", 6 * 8766 * time.Hour, true},
		{"0d", 0, true},
		{"1.5d", 0, false},
		{"-1y", 0, false},
		{"forever", 0, false},
	} {
		got, err := ParseDuration(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v", c.in, got, err)
		}
	}
	if FormatDuration(6*Year) != "6y" || FormatDuration(30*Day) != "30d" || FormatDuration(10*time.Minute) != "10m0s" {
		t.Error("FormatDuration")
	}
}

// TestBind: a flag wins over its P2P_* variable, which wins over what
// the Config holds (p2p dev's defaults), which wins over the built-in
// default; a malformed variable is an error.
func TestBind(t *testing.T) {
	t.Setenv("P2P_PHI_RETENTION", "45d")
	t.Setenv("P2P_AUDIT_CHECKPOINT_INTERVAL", "")
	t.Setenv("P2P_STATUS_RETRY_AFTER", "")
	t.Setenv("P2P_ADDR", "127.0.0.1:9000")
	for _, tt := range []struct {
		name  string
		which int
		held  Config
		args  []string
		check func(Config) bool
	}{
		{"built-in defaults", FlagWorker, Config{}, nil, func(c Config) bool {
			r := c.Retention
			return r.CheckpointInterval == DefaultCheckpointInterval && r.AuditRetention == 6*Year && r.PurgeInterval == Day &&
				c.ShutdownTimeout == DefaultShutdownTimeout
		}},
		{"environment over default", FlagWorker, Config{}, nil, func(c Config) bool { return c.Retention.PHIRetention == 45*Day }},
		{"flag over environment", FlagWorker, Config{}, []string{"--phi-retention", "10d"}, func(c Config) bool { return c.Retention.PHIRetention == 10*Day }},
		{"held value over default", FlagDev, Config{StatusRetryAfter: time.Second}, nil, func(c Config) bool { return c.StatusRetryAfter == time.Second }},
		{"environment over held value", FlagDev, Config{Addr: "127.0.0.1:0"}, nil, func(c Config) bool { return c.Addr == "127.0.0.1:9000" }},
		{"api default", FlagAPI, Config{}, nil, func(c Config) bool { return c.StatusRetryAfter == pdex.DefaultStatusRetryAfter }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.held
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			if err := c.Bind(fs, tt.which); err != nil {
				t.Fatal(err)
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("%+v", c)
			}
		})
	}
	t.Setenv("P2P_AUDIT_RETENTION", "six years")
	var c Config
	if err := c.Bind(flag.NewFlagSet("test", flag.ContinueOnError), FlagWorker); err == nil {
		t.Error("a bad P2P_AUDIT_RETENTION is accepted")
	}
}

func TestRetentionValidate(t *testing.T) {
	good := Retention{CheckpointInterval: DefaultCheckpointInterval, AuditRetention: DefaultAuditRetention, PHIRetention: DefaultPHIRetention, PurgeInterval: DefaultPurgeInterval}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Retention{
		{CheckpointInterval: time.Minute, PurgeInterval: Day, PHIRetention: 7 * Year, AuditRetention: 6 * Year},
		{CheckpointInterval: 0, PurgeInterval: Day, PHIRetention: Day, AuditRetention: Year},
		{CheckpointInterval: time.Minute, PurgeInterval: Day, PHIRetention: 0, AuditRetention: Year},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validates", bad)
		}
	}
}
