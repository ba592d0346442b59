//go:build !nodev

package main

import (
	"testing"

	"github.com/p2p-payer/p2p/devstack"
)

// TestDevWitnessDir: `p2p audit verify` looks for the witness directory
// where `p2p dev` keeps it.
func TestDevWitnessDir(t *testing.T) {
	if devstackWitnessDir != devstack.AuditWitnessDir {
		t.Fatalf("audit verify looks in %q, p2p dev writes to %q", devstackWitnessDir, devstack.AuditWitnessDir)
	}
}
