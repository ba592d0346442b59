package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/devserver"
	"github.com/p2p-payer/p2p/workflows"
)

// TestAPIOutlivesTemporal runs `p2p api` with its default settings against
// a Temporal server that comes and goes: started before Temporal, the API
// waits for it (start-up retry) instead of exiting; a transfer POSTed while
// Temporal is down is answered 503 and its workflow starts within a minute
// of Temporal coming back, without a restart (ResumeLoop).
func TestAPIOutlivesTemporal(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the resume loop (about 45 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	db := filepath.Join(dir, "p2p.db")
	keys := filepath.Join(t.TempDir(), "keys")
	for _, args := range [][]string{{"migrate", "--database-url", db}, {"keys", "generate", "--keys-dir", keys}} {
		if err := dispatch(ctx, args, io.Discard, io.Discard); err != nil {
			t.Fatalf("p2p %v: %v", args, err)
		}
	}
	registry := filepath.Join(dir, "partners.yaml")
	if err := os.WriteFile(registry, []byte("partners:\n  - id: partner-b\n    push_url: http://127.0.0.1:1/exports\n    allow_private_network: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	temporalAddr := freeAddr(t)
	_, portText, _ := net.SplitHostPort(temporalAddr)
	port, _ := strconv.Atoi(portText)
	temporalDir := t.TempDir()
	var ts *devserver.Server
	startTemporal := func() {
		t.Helper()
		var err error
		if ts, err = devserver.Start(ctx, devserver.Options{DataDir: temporalDir, Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if ts != nil {
			_ = ts.Stop()
		}
	})

	apiAddr := freeAddr(t)
	base := "http://" + apiAddr
	api := child(t, []string{"P2P_DATABASE_URL=" + db, "P2P_TEMPORAL_ADDRESS=" + temporalAddr, "P2P_KEYS_DIR=" + keys,
		"P2P_PARTNERS=" + registry, "P2P_ADDR=" + apiAddr, "P2P_LOG_LEVEL=info"}, "api")
	time.Sleep(2 * time.Second) // the API waits for Temporal meanwhile
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the API serves before Temporal is up")
	}
	if api.ProcessState != nil {
		t.Fatalf("p2p api exited while Temporal was down: %v", api.ProcessState)
	}
	startTemporal()
	awaitReady(t, base, 200, 30*time.Second)
	token := registerAPIClient(t, dir, db, base, "submitter", "admin")

	// Temporal goes down: the API is not ready, and a transfer it accepts
	// cannot start.
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	ts = nil
	awaitReady(t, base, 503, 10*time.Second)
	now := time.Now().UTC()
	consent := fmt.Sprintf(`{"id":"c1","status":"active","scope":"sensitive","period":{"start":%q,"end":%q},"granted_at":%q}`,
		now.AddDate(0, -1, 0).Format(time.RFC3339), now.AddDate(1, 0, 0).Format(time.RFC3339), now.AddDate(0, -1, 0).Format(time.RFC3339))
	post := func() (int, string) {
		req, _ := http.NewRequest("POST", base+"/v1/transfers", strings.NewReader(
			`{"partner_id":"partner-b","member":{"member_id":"P2","birth_date":"1988-08-08"},"consent":`+consent+`}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "outage-0001")
		res, err := http.DefaultClient.Do(authorized(req, token))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	sent := time.Now()
	if code, body := post(); code != 503 {
		t.Fatalf("POST while Temporal is down: %d %s, want 503", code, body)
	}
	t.Logf("POST answered 503 in %v", time.Since(sent).Round(time.Millisecond))
	var list struct{ Items []struct{ ID, State string } }
	getJSON(t, token, base+"/v1/transfers", &list)
	if len(list.Items) != 1 || list.Items[0].State != "initiated" {
		t.Fatalf("transfers %+v, want one initiated", list.Items)
	}
	id := list.Items[0].ID

	// Temporal is back: the workflow starts within a minute, nobody
	// restarting or retrying anything.
	startTemporal()
	back := time.Now()
	c, err := client.DialContext(ctx, client.Options{HostPort: ts.Address(), Namespace: ts.Namespace(), Logger: app.TemporalLogger(zap.NewNop())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		_, err := c.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
		if err == nil {
			break
		}
		if !errors.As(err, new(*serviceerror.NotFound)) {
			t.Fatal(err)
		}
		if time.Since(back) > time.Minute {
			t.Fatalf("transfer %s not started a minute after Temporal came back", id)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("started %v after Temporal came back", time.Since(back).Round(time.Second))
	// The client's retry replays the answer the loop stored.
	if code, body := post(); code != 202 || !strings.Contains(body, id) {
		t.Errorf("retried POST: %d %s, want 202 for %s", code, body, id)
	}
}

// awaitReady waits until /readyz answers want.
func awaitReady(t *testing.T, base string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d: %v", want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
