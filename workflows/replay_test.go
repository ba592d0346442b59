package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayCommittedHistories replays histories recorded from real runs
// (testdata/histories, written by the devstack tests with
// P2P_RECORD_HISTORIES set) against the current workflow code. A change
// that would break running transfers after a deploy fails here; guard such
// changes with workflow.GetVersion.
func TestReplayCommittedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d committed histories, want at least 4", len(files))
	}
	imports, _ := filepath.Glob("testdata/histories/import_*.json")
	if len(imports) < 3 {
		t.Fatalf("found %d import histories, want complete, no_match and consent_denied", len(imports))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replaying %s: %v", f, err)
			}
		})
	}
}
