package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary run as p2p itself, so that crash tests can
// start and kill -9 a real p2p process without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv("P2P_TEST_RUN_AS_P2P") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(exitCode(err, os.Stderr))
	}
	os.Exit(m.Run())
}

// p2pProcess is a `p2p dev` child process.
type p2pProcess struct {
	cmd        *exec.Cmd
	sandboxURL string
	stdout     *bytes.Buffer
}

var readyLine = regexp.MustCompile(`sandbox partner "sandbox" at (http://[0-9.:]+)`)

func startDev(t *testing.T, dataDir, addr string) *p2pProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "dev", "--data-dir", dataDir, "--addr", addr, "--log-level", "error")
	cmd.Env = append(os.Environ(), "P2P_TEST_RUN_AS_P2P=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reap(t, cmd) })
	p := &p2pProcess{cmd: cmd, stdout: &bytes.Buffer{}}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			p.stdout.WriteString(line + "\n")
			if m := readyLine.FindStringSubmatch(line); m != nil {
				p.sandboxURL = m[1]
			}
			if strings.Contains(line, "p2p dev: ready") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("p2p dev exited before ready: %s %s", p.stdout, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("p2p dev not ready in 60 s: %s %s", p.stdout, stderr.String())
	}
	return p
}

// reap kills cmd, unless a test already waited for it, and waits for it.
func reap(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if cmd.ProcessState != nil {
		return
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill p2p %s: %v", cmd.Args[1], err)
	}
	if err := cmd.Wait(); err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Errorf("wait for p2p %s: %v", cmd.Args[1], err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

var demo = []map[string]any{
	{"member_id": "M100001", "birth_date": "1985-04-12"},
	{"given": "Robert", "family": "Okafor", "birth_date": "1972-11-03"},
	{"given": "Maria", "family": "Garcia", "birth_date": "1990-07-21"},
	{"member_id": "M100004", "birth_date": "2001-01-30"},
	{"given": "Priya", "family": "Patel", "birth_date": "1968-09-15", "sex": "F"},
}

func transferBody(i int) []byte {
	now := time.Now().UTC()
	b, _ := json.Marshal(map[string]any{
		"partner_id": "sandbox",
		"member":     demo[i%len(demo)],
		"consent": map[string]any{"id": fmt.Sprintf("consent-%d", i), "status": "active", "scope": "regular",
			"period":     map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": now.AddDate(1, 0, 0).Format(time.RFC3339)},
			"granted_at": now.AddDate(0, -1, 0).Format(time.RFC3339)},
		"correlation_id": fmt.Sprintf("crash-test-%d", i),
	})
	return b
}

// TestKill9WhileTransfersAreInFlight is the crash acceptance test: clients
// keep submitting transfers while p2p dev is killed with SIGKILL; they retry
// with the same Idempotency-Key until the restarted process answers. Every
// transfer must complete, once, and the partner must have received each
// export exactly once.
func TestKill9WhileTransfersAreInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real p2p processes")
	}
	dir, addr := t.TempDir(), freeAddr(t)
	base := "http://" + addr
	first := startDev(t, dir, addr)
	token := devToken(t, dir, "admin")

	const n = 30
	ids := make([]string, n)
	bodies := make([][]byte, n) // fixed per key: a retry must send the same body
	for i := range bodies {
		bodies[i] = transferBody(i)
	}
	var accepted atomic.Int32
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 3 {
				deadline := time.Now().Add(90 * time.Second)
				for {
					req, _ := http.NewRequest("POST", base+"/v1/transfers", bytes.NewReader(bodies[i]))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Idempotency-Key", fmt.Sprintf("crash-test-key-%03d", i))
					authorized(req, token)
					res, err := client.Do(req)
					if err == nil {
						body, _ := io.ReadAll(res.Body)
						res.Body.Close()
						if res.StatusCode == http.StatusAccepted {
							var tr struct{ ID string }
							if err := json.Unmarshal(body, &tr); err != nil {
								t.Errorf("transfer %d: %v", i, err)
								return
							}
							ids[i] = tr.ID
							accepted.Add(1)
							break
						}
						if res.StatusCode != http.StatusConflict && res.StatusCode != http.StatusServiceUnavailable {
							t.Errorf("transfer %d: %d %s", i, res.StatusCode, body)
							return
						}
					}
					if time.Now().After(deadline) {
						t.Errorf("transfer %d never accepted: %v", i, err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	for accepted.Load() < n/2 {
		if t.Failed() { // a submitter gave up: half will never be accepted
			wg.Wait()
			t.FailNow()
		}
		time.Sleep(5 * time.Millisecond)
	}
	inFlight := countInFlight(t, base, token)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Wait(); !errors.As(err, new(*exec.ExitError)) {
		t.Fatalf("p2p dev after SIGKILL: %v, want its exit status", err)
	}
	t.Logf("killed p2p dev with %d transfers accepted, %d of them in flight", accepted.Load(), inFlight)
	if inFlight == 0 {
		t.Fatal("nothing was in flight at the kill: the test proves nothing")
	}

	second := startDev(t, dir, addr)
	wg.Wait()
	if t.Failed() {
		return
	}
	restarted := time.Now()
	for i, id := range ids {
		if id == "" {
			t.Fatalf("transfer %d has no id", i)
		}
		awaitState(t, base, token, id, "complete", 90*time.Second)
	}
	t.Logf("all %d transfers complete %v after the restart", n, time.Since(restarted).Round(time.Millisecond))

	// Exactly one transfer per key, each state entered once.
	var list struct{ Items []struct{ ID string } }
	getJSON(t, token, base+"/v1/transfers?limit=200", &list)
	if len(list.Items) != n {
		t.Errorf("%d transfers, want %d (one per key)", len(list.Items), n)
	}
	for _, id := range ids {
		var tl struct{ Events []struct{ State string } }
		getJSON(t, token, base+"/v1/transfers/"+id+"/timeline?limit=1000", &tl)
		var states []string
		for _, e := range tl.Events {
			if e.State != "" {
				states = append(states, e.State)
			}
		}
		if got := strings.Join(states, ","); got != "initiated,identity_pending,consent_verified,payload_prepared,sent,acknowledged,complete" {
			t.Errorf("transfer %s states %s", id, got)
		}
	}
	// The partner received each export exactly once.
	var deliveries []struct {
		TransferID string `json:"transfer_id"`
		Duplicates int    `json:"duplicates"`
	}
	getJSON(t, "", second.sandboxURL+"/deliveries", &deliveries)
	per := map[string]int{}
	dups := 0
	for _, d := range deliveries {
		per[d.TransferID]++
		dups += d.Duplicates
	}
	for _, id := range ids {
		if per[id] != 1 {
			t.Errorf("partner received transfer %s %d times, want 1", id, per[id])
		}
	}
	if len(deliveries) != n {
		t.Errorf("partner has %d deliveries, want %d", len(deliveries), n)
	}
	t.Logf("partner recognised %d repeated deliveries as duplicates", dups)

	// SIGTERM stops it cleanly.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("p2p dev exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("p2p dev did not stop within 30 s of SIGTERM")
	}
}

func countInFlight(t *testing.T, base, token string) int {
	var list struct{ Items []struct{ State string } }
	getJSON(t, token, base+"/v1/transfers?limit=200", &list)
	n := 0
	for _, it := range list.Items {
		if it.State != "complete" && it.State != "failed" {
			n++
		}
	}
	return n
}

// getJSON GETs url, with token as its bearer token unless "", into v.
func getJSON(t *testing.T, token, url string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		authorized(req, token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func awaitState(t *testing.T, base, token, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var tr struct {
		State string
		Error any
	}
	for time.Now().Before(deadline) {
		getJSON(t, token, base+"/v1/transfers/"+id, &tr)
		if tr.State == want {
			return
		}
		if tr.State == "failed" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("transfer %s is %s (%v), want %s", id, tr.State, tr.Error, want)
}
