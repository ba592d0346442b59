package app

import (
	"testing"
	"time"
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

func TestRetentionFromEnvAndValidate(t *testing.T) {
	t.Setenv("P2P_PHI_RETENTION", "45d")
	t.Setenv("P2P_AUDIT_CHECKPOINT_INTERVAL", "")
	r, err := RetentionFromEnv()
	if err != nil || r.PHIRetention != 45*Day || r.CheckpointInterval != DefaultCheckpointInterval ||
		r.AuditRetention != 6*Year || r.PurgeInterval != Day {
		t.Fatalf("%+v %v", r, err)
	}
	if err := r.Validate(); err != nil {
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
	t.Setenv("P2P_AUDIT_RETENTION", "six years")
	if _, err := RetentionFromEnv(); err == nil {
		t.Error("a bad P2P_AUDIT_RETENTION is accepted")
	}
}
