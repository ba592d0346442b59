//go:build !nodev

package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/devstack"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/workflows"
)

// TestDevAndProductionServeTheSame builds the API and the worker as
// `p2p api` and `p2p worker` build them (newAPI, newWorker: flags, files,
// the store, Temporal) and as `p2p dev` does (devstack.Start), with the
// same partner, and compares what each serves: the HTTP routes, the
// workflows and activities of every task queue, the schedules.
func TestDevAndProductionServeTheSame(t *testing.T) {
	ctx := context.Background()
	devDir := t.TempDir()
	dev, err := devstack.Start(ctx, devstack.Options{DataDir: devDir, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Stop)

	dir := t.TempDir()
	keys := t.TempDir() // outside the data: the database's directory and the import directory
	if _, err := signing.CreateKeySets(keys, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	// One payload key set per namespace: every process reads what the
	// others wrote (the schedules the dev stack made, say).
	payloadKeys, err := os.ReadFile(filepath.Join(devDir, app.DevKeysDir, payloadcodec.KeySetFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, payloadcodec.KeySetFile), payloadKeys, 0o600); err != nil {
		t.Fatal(err)
	}
	registry := filepath.Join(dir, "partners.yaml")
	if err := os.WriteFile(registry, []byte("partners:\n- {id: "+devstack.SandboxPartnerID+", roles: [push, requester], push_url: '"+
		dev.SandboxURL+"/exports', jwks_url: '"+dev.SandboxURL+"/.well-known/jwks.json', allow_private_network: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--database-url", filepath.Join(dir, "p2p.db"), "--keys-dir", keys, "--partners", registry,
		"--temporal-address", dev.Temporal.Address(), "--temporal-namespace", dev.Temporal.Namespace(), "--log-level", "error"}

	api, o, _, err := newAPI(ctx, args, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	worker, wo, err := newWorker(ctx, append(args, "--import-dir", dir), io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wo.Close)
	// Start ensures the schedules (idempotent: the dev stack's are there).
	if err := worker.Start(ctx); err != nil {
		t.Fatal(err)
	}
	worker.Stop()

	routes, devRoutes := api.Routes(), dev.API.Routes()
	for _, r := range []string{"POST /v1/transfers", "GET /v1/transfers/{id}", "POST /fhir/auth/token", "* /fhir"} {
		if !slices.Contains(devRoutes, r) {
			t.Errorf("dev serves no %q: %v", r, devRoutes)
		}
	}
	if !slices.Equal(devRoutes, routes) {
		t.Errorf("routes differ:\ndev        %v\nproduction %v", devRoutes, routes)
	}
	reg, devReg := worker.Registered(), dev.Worker.Registered()
	transfers := devReg.Queues[workflows.TaskQueue]
	for _, n := range []string{"workflow " + workflows.TransferWorkflowName, "workflow " + workflows.BulkMemberMatchWorkflowName, "activity PrepareExport"} {
		if !slices.Contains(transfers, n) {
			t.Errorf("dev's %s queue has no %q: %v", workflows.TaskQueue, n, transfers)
		}
	}
	if q := workflows.PartnerTaskQueue(workflows.TaskQueue, devstack.SandboxPartnerID); len(devReg.Queues[q]) == 0 {
		t.Errorf("dev has no worker on %s: %v", q, devReg.Queues)
	}
	if len(devReg.Schedules) != 2 || !strings.Contains(devReg.Schedules[0], workflows.AuditCheckpointScheduleID) {
		t.Errorf("dev's schedules: %v", devReg.Schedules)
	}
	if !reflect.DeepEqual(devReg, reg) {
		t.Errorf("workers differ:\ndev        %+v\nproduction %+v", devReg, reg)
	}
}
