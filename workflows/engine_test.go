package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/p2p-payer/p2p/devserver"
)

// TestEngineReady: the engine is ready when Temporal answers and serves
// its namespace; a missing namespace and a stopped server each fail with
// a reason that names neither host nor namespace.
func TestEngineReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts, err := devserver.Start(ctx, devserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = ts.Stop()
		}
	})
	c, err := client.DialContext(ctx, client.Options{HostPort: ts.Address(), Namespace: ts.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	reason := func(err error) string {
		var nr *NotReadyError
		if !errors.As(err, &nr) {
			t.Fatalf("error %v is not a NotReadyError", err)
		}
		return nr.PublicReason()
	}
	if err := (&Engine{Client: c, Namespace: ts.Namespace()}).Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
	err = (&Engine{Client: c, Namespace: "no-such-namespace"}).Ready(ctx)
	if r := reason(err); r != "the workflow engine's namespace does not exist" {
		t.Errorf("missing namespace: reason %q (%v)", r, err)
	}
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if r := reason((&Engine{Client: c, Namespace: ts.Namespace()}).Ready(sctx)); r != "the workflow engine is unavailable" {
		t.Errorf("stopped server: reason %q", r)
	}
}
