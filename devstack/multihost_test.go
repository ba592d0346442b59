package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/internal/blobstage/s3test"
	"github.com/p2p-payer/p2p/transfer"
	"github.com/p2p-payer/p2p/workflows"
)

// Worker identities of the two hosts.
const (
	hostA = "host-a" // polls the partner's queues: downloads
	hostB = "host-b" // polls the transfers' queue: deliveries, discards
)

// TestImportAcrossHosts (issue 13): two workers that share no directory
// complete an import, and discard a failed one's staged files, through an
// S3 bucket (gofakes3 on loopback, through the real s3blob client). Worker
// A is the stack's: its transfers' worker runs workflow tasks but no
// activities (LocalActivityWorkerOnly), its partner workers every call to
// the old payer, downloads included. Worker B is a second app.Worker with
// its own keys and no partner: it polls only the transfers' queue, so
// every DeliverImport and DiscardImport runs there. Neither has an import
// directory.
func TestImportAcrossHosts(t *testing.T) {
	s3 := s3test.Start(t, "p2p-imports")
	bucketURL := s3.BucketURL("p2p-imports")

	old := newOldPayer(t)
	now := time.Now().UTC()
	for typ, n := range map[string]int{"Patient": 1, "Coverage": 2, "ExplanationOfBenefit": 3} {
		for i := range n {
			if err := old.bulk.Add("pt-M1", resourceJSON(typ, fmt.Sprintf("%s-%d", strings.ToLower(typ), i), now.AddDate(0, -i-1, 0))); err != nil {
				t.Fatal(err)
			}
		}
	}
	old.bulk.PollsBeforeDone, old.bulk.RetryAfter = 1, "1"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataA := t.TempDir()
	s, err := Start(ctx, Options{DataDir: dataA, Addr: "127.0.0.1:0", ImportBucket: bucketURL,
		Worker: worker.Options{Identity: hostA, LocalActivityWorkerOnly: true},
		Partners: []connectors.Partner{{
			ID: "oldco", Name: "Old Co Health", Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: old.srv.URL + "/fhir",
			AllowPrivateNetwork: true,
			Auth:                connectors.Auth{Type: connectors.AuthNone, ClientID: "newco"},
			Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if s.ImportDir != "" {
		t.Fatalf("the stack has an import directory %s beside its bucket", s.ImportDir)
	}

	signersB, err := app.DevSigners(t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	none, err := connectors.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	wB, err := app.NewWorker(ctx, app.Config{
		TemporalNamespace: s.Temporal.Namespace(), PayerIdentifier: fhir.SystemNPI + "|" + OurNPI,
		ImportBucket: bucketURL, ShutdownTimeout: time.Second, AuditMaxAge: app.DefaultAuditMaxAge,
	}, app.Deps{
		Store: s.Store, Temporal: s.Client, Partners: none, Logger: zap.NewNop(),
		ManifestSigner: signersB.Manifest, AuditSigner: signersB.Checkpoint,
		Worker: worker.Options{Identity: hostB},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := wB.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wB.Stop)
	if q := wB.Registered().Queues; len(q) != 1 || q[workflows.TaskQueue] == nil {
		t.Fatalf("worker B polls %v, want the transfers' queue only", q)
	}

	bucket, err := blobstage.Open(ctx, bucketURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bucket.Close() }()
	e := &e2e{t: t, s: s}

	// An import: downloaded on A, delivered on B.
	id := e.create("multihost-0001", importRequest("OLD-1", "active"))
	tr := e.await(id, "complete", 90*time.Second)
	ran := startedBy(t, s, id)
	for name, want := range map[string]string{
		activities.NameDownloadImportFile: hostA,
		activities.NameDeliverImport:      hostB,
	} {
		if got := ran[name]; len(got) == 0 || slices.ContainsFunc(got, func(h string) bool { return h != want }) {
			t.Errorf("%s ran on %v, want %s only", name, got, want)
		}
	}
	files := exportFiles(t, tr)
	if len(files) != 3 {
		t.Fatalf("export files %+v, want 3", files)
	}
	for i, f := range files {
		got, err := bucket.Digest(ctx, blobstage.DeliveredKey(id, false, f.Type, 1))
		if err != nil || got != f.SHA256 {
			t.Errorf("file %d (%s): the bucket's digest %s, %v; downloaded %s", i, f.Type, got, err, f.SHA256)
		}
	}
	if sealed, err := bucket.Sealed(ctx, id); err != nil || !sealed {
		t.Errorf("delivery not sealed: %v, %v", sealed, err)
	}
	var marker struct {
		ReceiptID string `json:"receipt_id"`
	}
	if r, err := bucket.Open(ctx, blobstage.MarkerKey(id)); err != nil {
		t.Error(err)
	} else {
		if err := json.NewDecoder(r).Decode(&marker); err != nil {
			t.Error(err)
		}
		_ = r.Close()
	}
	if exp, _ := tr["export"].(map[string]any); exp == nil || exp["receipt_id"] != marker.ReceiptID || marker.ReceiptID == "" {
		t.Errorf("marker receipt %q, transfer's %v", marker.ReceiptID, tr["export"])
	}
	if left := keys(t, bucket, blobstage.StagedPrefix(id)); len(left) != 0 {
		t.Errorf("staged objects left after delivery: %v", left)
	}

	// An import whose file is refused after the others were staged: the
	// compensation, on B, removes everything A staged.
	old.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 200, Body: "this is not JSON\n"})
	req := importRequest("OLD-1", "active")
	// The whole window again, not a run-off pull of what changed since
	// the first import (nothing).
	req["data_scope"].(map[string]any)["since"] = now.AddDate(-5, 0, 0).Format(time.RFC3339)
	id2 := e.create("multihost-0002", req)
	e.await(id2, "failed", 90*time.Second)
	ran = startedBy(t, s, id2)
	if got := ran[activities.NameDiscardImport]; len(got) == 0 || slices.ContainsFunc(got, func(h string) bool { return h != hostB }) {
		t.Errorf("DiscardImport ran on %v, want %s only", got, hostB)
	}
	if got := ran[activities.NameDownloadImportFile]; len(got) < 3 || slices.ContainsFunc(got, func(h string) bool { return h != hostA }) {
		t.Errorf("DownloadImportFile ran on %v, want %s for each of the 3 files", got, hostA)
	}
	tl := e.do("GET", "/v1/transfers/"+id2+"/timeline?limit=1000", "", nil).json(t)
	staged, removed := 0, false
	for _, ev := range tl["events"].([]any) {
		m := ev.(map[string]any)
		switch m["type"] {
		case transfer.EventBulkFile:
			staged++
		case transfer.EventImportDiscard:
			removed = m["detail"].(map[string]any)["staged_files_removed"] == true
		}
	}
	if staged == 0 || !removed {
		t.Errorf("%d files staged, staged files removed %v: want files staged on A and removed on B", staged, removed)
	}
	if left := keys(t, bucket, blobstage.StagedPrefix(id2)); len(left) != 0 {
		t.Errorf("the discard left %v", left)
	}
	if left := keys(t, bucket, blobstage.DeliveredPrefix(id2)); len(left) != 0 {
		t.Errorf("a failed import delivered %v", left)
	}
	// Nothing of either import touched a disk.
	if _, err := os.Stat(filepath.Join(dataA, "imports")); !os.IsNotExist(err) {
		t.Errorf("host A has an import directory: %v", err)
	}
}

// startedBy maps each activity of transfer id's workflow to the
// identities of the workers that started its attempts.
func startedBy(t *testing.T, s *Stack, id string) map[string][]string {
	t.Helper()
	names := map[int64]string{}
	out := map[string][]string{}
	it := s.Client.GetWorkflowHistory(context.Background(), workflows.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			names[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
			name := names[a.GetScheduledEventId()]
			out[name] = append(out[name], a.GetIdentity())
		}
	}
	return out
}

func keys(t *testing.T, b *blobstage.Bucket, prefix string) []string {
	t.Helper()
	ks, err := b.Keys(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
