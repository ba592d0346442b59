package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/devserver"
	"github.com/p2p-payer/p2p/store/postgres/pgtest"
)

// postgresURL returns the test database URL with search_path set to a
// fresh schema that is dropped after the test. It skips when
// P2P_TEST_DATABASE_URL is unset and fails when it is set but Postgres does
// not answer.
func postgresURL(t *testing.T) string {
	t.Helper()
	return pgtest.Schema(t)
}

// child starts the test binary as `p2p args...` with env.
func child(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "P2P_TEST_RUN_AS_P2P=1"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		reap(t, cmd)
		if t.Failed() {
			t.Logf("p2p %s output:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return cmd
}

// TestProductionTopology runs the production commands as separate
// processes configured only by P2P_* variables: migrate and members import
// against PostgreSQL, then one api and two workers against a Temporal
// server reached over the network, and drives transfers to complete.
func TestProductionTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real p2p processes")
	}
	dbURL := postgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The Temporal cluster: real server code, in this process, reached by
	// the api and workers over gRPC like any cluster.
	ts, err := devserver.Start(ctx, devserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.Stop(); err != nil {
			t.Error(err)
		}
	})

	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	var out bytes.Buffer
	for _, args := range [][]string{
		{"migrate", "--database-url", dbURL},
		{"migrate", "--database-url", dbURL}, // twice: migrations are idempotent
		{"keys", "generate", "--keys-dir", keys},
	} {
		if err := dispatch(ctx, args, &out, &out); err != nil {
			t.Fatalf("p2p %v: %v\n%s", args, err, out.String())
		}
	}
	csv := filepath.Join(dir, "members.csv")
	if err := os.WriteFile(csv, []byte("member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n"+
		"P1,Dana,Whitfield,1979-06-02,F,5 Harbor Road,Duluth,MN,55802,218-555-0111\n"+
		"P2,Eli,Stone,1988-08-08,M,,,,,\n"+
		"P3,Bad,Date,1988-02-31,M,,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = dispatch(ctx, []string{"members", "import", "--file", csv, "--database-url", dbURL}, &out, &out)
	if err == nil || !strings.Contains(out.String(), "2 rows loaded, 1 rows rejected") || !strings.Contains(out.String(), "line 4") {
		t.Fatalf("members import: %v\n%s", err, out.String())
	}

	apiAddr := freeAddr(t)
	base := "http://" + apiAddr
	partner, err := sandbox.New(sandbox.Options{JWKSURL: base + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	sb := httptest.NewServer(partner.Handler())
	t.Cleanup(sb.Close)
	registry := filepath.Join(dir, "partners.yaml")
	if err := os.WriteFile(registry, []byte("partners:\n  - id: partner-b\n    name: Partner B\n    push_url: "+sb.URL+"/exports\n    allow_private_network: true\n    timeout: 10s\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	env := []string{
		"P2P_DATABASE_URL=" + dbURL, "P2P_TEMPORAL_ADDRESS=" + ts.Address(), "P2P_TEMPORAL_NAMESPACE=" + ts.Namespace(),
		"P2P_KEYS_DIR=" + keys, "P2P_PARTNERS=" + registry, "P2P_ADDR=" + apiAddr, "P2P_LOG_LEVEL=warn",
	}
	procs := []*exec.Cmd{child(t, env, "worker"), child(t, env, "worker"), child(t, env, "api")}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("p2p api not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An operator registers the payer system's client; it gets its tokens
	// from /oauth/token.
	token := registerAPIClient(t, dir, dbURL, base, "submitter", "admin")

	now := time.Now().UTC()
	consent := fmt.Sprintf(`{"id":"c1","status":"active","scope":"sensitive","period":{"start":%q,"end":%q},"granted_at":%q}`,
		now.AddDate(0, -1, 0).Format(time.RFC3339), now.AddDate(1, 0, 0).Format(time.RFC3339), now.AddDate(0, -1, 0).Format(time.RFC3339))
	var ids []string
	for i, m := range []string{
		`{"given":"Dana","family":"Whitfield","birth_date":"1979-06-02","sex":"F"}`,
		`{"member_id":"P2","birth_date":"1988-08-08"}`,
	} {
		body := `{"partner_id":"partner-b","member":` + m + `,"consent":` + consent + `}`
		req, _ := http.NewRequest("POST", base+"/v1/transfers", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("prod-topology-%d", i))
		res, err := http.DefaultClient.Do(authorized(req, token))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 202 {
			t.Fatalf("POST: %d %s", res.StatusCode, b)
		}
		ids = append(ids, strings.Split(strings.Split(string(b), `"id":"`)[1], `"`)[0])
	}
	req, _ := http.NewRequest("POST", base+"/v1/transfers", strings.NewReader(
		`{"partner_id":"no-such-partner","member":{"member_id":"P2","birth_date":"1988-08-08"},"consent":`+consent+`}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "prod-topology-unknown")
	if res, err := http.DefaultClient.Do(authorized(req, token)); err != nil || res.StatusCode != 422 {
		t.Errorf("unknown partner: %v %v, want 422", res.StatusCode, err)
	}
	for _, id := range ids {
		awaitState(t, base, token, id, "complete", 30*time.Second)
	}
	if d := partner.Deliveries(); len(d) != len(ids) {
		t.Errorf("partner received %d deliveries, want %d", len(d), len(ids))
	}
	for _, d := range partner.Deliveries() {
		if d.Resources == 0 {
			t.Errorf("delivery %+v has no resources", d)
		}
	}

	// Two identical members PUT through the api, and at once a transfer
	// without member id: the worker, another process with its own index,
	// sends it to review between both (issue 12).
	for _, id := range []string{"P10", "P11"} {
		req, _ := http.NewRequest("PUT", base+"/v1/members/"+id, strings.NewReader(
			`{"given":"Rosalind","family":"Achterberg","birth_date":"1983-07-29","sex":"F","street":"61 Wharf Street","city":"Savannah","state":"GA","postal_code":"31401"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(authorized(req, token))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("PUT member %s: %d", id, res.StatusCode)
		}
	}
	{
		body := `{"partner_id":"partner-b","member":{"given":"Rosalind","family":"Achterberg","birth_date":"1983-07-29"},"consent":` + consent + `}`
		req, _ := http.NewRequest("POST", base+"/v1/transfers", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "prod-topology-twins")
		res, err := http.DefaultClient.Do(authorized(req, token))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 202 {
			t.Fatalf("POST: %d %s", res.StatusCode, b)
		}
		id := strings.Split(strings.Split(string(b), `"id":"`)[1], `"`)[0]
		awaitState(t, base, token, id, "manual_review", 30*time.Second)
		var tr struct{ Identity struct{ Candidates []string } }
		getJSON(t, token, base+"/v1/transfers/"+id, &tr)
		if !slices.Contains(tr.Identity.Candidates, "P10") || !slices.Contains(tr.Identity.Candidates, "P11") {
			t.Errorf("candidates %v, want P10 and P11", tr.Identity.Candidates)
		}
	}

	// A partner added to the registry file is taken on SIGHUP, by the api
	// (which then accepts transfers to it) and by the workers (which then
	// poll its task queue), without a restart.
	partnerC, err := sandbox.New(sandbox.Options{JWKSURL: base + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	sc := httptest.NewServer(partnerC.Handler())
	t.Cleanup(sc.Close)
	if err := os.WriteFile(registry, []byte("partners:\n  - id: partner-b\n    push_url: "+sb.URL+"/exports\n    allow_private_network: true\n  - id: partner-c\n    push_url: "+sc.URL+"/exports\n    allow_private_network: true\n    rate_limit: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if err := p.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	body := `{"partner_id":"partner-c","member":{"member_id":"P2","birth_date":"1988-08-08"},"consent":` + consent + `}`
	var idC string
	for deadline := time.Now().Add(10 * time.Second); idC == ""; {
		req, _ := http.NewRequest("POST", base+"/v1/transfers", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("prod-topology-c-%d", time.Now().UnixNano()))
		res, err := http.DefaultClient.Do(authorized(req, token))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case res.StatusCode == 202:
			idC = strings.Split(strings.Split(string(b), `"id":"`)[1], `"`)[0]
		case res.StatusCode != 422 || time.Now().After(deadline):
			t.Fatalf("POST to partner-c after SIGHUP: %d %s", res.StatusCode, b)
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	awaitState(t, base, token, idC, "complete", 30*time.Second)
	if d := partnerC.Deliveries(); len(d) != 1 {
		t.Errorf("partner-c received %d deliveries, want 1", len(d))
	}
}

// TestAPIRefusesIncompleteTLS: p2p api checks its TLS settings, from flags
// or P2P_TLS_*, before it opens anything.
func TestAPIRefusesIncompleteTLS(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p2p.db")
	err := dispatch(context.Background(), []string{"api", "--database-url", db, "--tls-cert-file", "server.pem"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "P2P_TLS_KEY_FILE") {
		t.Errorf("certificate without key: %v", err)
	}
	t.Setenv("P2P_TLS_CLIENT_CA_FILE", "partners-ca.pem")
	err = dispatch(context.Background(), []string{"api", "--database-url", db}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "P2P_TLS_CERT_FILE") {
		t.Errorf("client CAs without a server certificate: %v", err)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("the database was opened: %v", err)
	}
}

// TestAPIRequiresPartners: without a registry the API could not refuse a
// partner no worker serves, so p2p api does not start without one.
func TestAPIRequiresPartners(t *testing.T) {
	db := filepath.Join(t.TempDir(), "p2p.db")
	err := dispatch(context.Background(), []string{"api", "--database-url", db}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "P2P_PARTNERS is required") || exitCode(err, io.Discard) != 2 {
		t.Errorf("api without partners: %v", err)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("the database was opened: %v", err)
	}
}
