//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/internal/prodstack"
)

// Scale is the size of a run: make chaos runs full; .ci/run sets
// CHAOS_SCALE=ci, every scenario with fewer transfers and faults.
type Scale struct {
	Name      string
	Transfers int // per scenario (1, 2, 3, 5)
	Kills     int // worker SIGKILLs in scenario 1
	Posts     int // concurrent POSTs in scenario 4
	Keys      int // over this many Idempotency-Keys
}

var scales = map[string]Scale{
	"full": {Name: "full", Transfers: 200, Kills: 20, Posts: 1000, Keys: 100},
	"ci":   {Name: "ci", Transfers: 30, Kills: 4, Posts: 200, Keys: 20},
}

var (
	scale Scale
	bins  prodstack.Binaries
	// previousP2P is p2p built with -tags chaos_previous (scenario 5).
	previousP2P string

	resultsMu sync.Mutex
	results   []Counts
)

// TestMain builds the server, its SQL tool and both p2p builds once, runs
// the scenarios and prints their counts as a table.
func TestMain(m *testing.M) {
	name := os.Getenv("CHAOS_SCALE")
	if name == "" {
		name = "full"
	}
	var ok bool
	if scale, ok = scales[name]; !ok {
		fmt.Fprintf(os.Stderr, "chaos: CHAOS_SCALE=%q: want full or ci\n", name)
		os.Exit(2)
	}
	// toxiproxy's toxics log through zerolog's global logger.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t0 := time.Now()
	var err error
	bins, err = prodstack.Build(ctx, prodstack.BuildOptions{})
	if err == nil {
		previousP2P, err = prodstack.BuildP2P(ctx, filepath.Join(filepath.Dir(bins.P2P), "p2p-prod-previous"), "chaos_previous")
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: build:", err)
		os.Exit(1)
	}
	fmt.Printf("chaos: scale %s; binaries built in %v\n", scale.Name, time.Since(t0).Round(time.Second))
	code := m.Run()
	printTable(os.Stdout)
	os.Exit(code)
}

// Counts are what a scenario ends with: the closing note's table.
type Counts struct {
	Scenario   string
	Wall       time.Duration
	Started    int            // transfers in the store
	Complete   int            //
	Failed     map[string]int // by error type
	Review     map[string]int // by identity status
	Lost       int            // keys accepted with no transfer, or transfers not terminal
	Deliveries int            // at the partner, from its own log
	Replays    int            // repeats of a delivery the partner recognised by its key
	Duplicates int            // exports delivered twice (under two keys): must be 0
	Faults     int            // partner faults injected
	// FailedHeld counts failed transfers the partner nevertheless
	// recorded: it took a delivery, lost the answer, then refused the
	// retry with the same key (the injected 422 comes before its
	// idempotency check).
	FailedHeld   int
	Note         string // what else the scenario did (kills, restarts)
	AuditVerfied bool
}

func record(c Counts) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, c)
}

func printTable(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	fmt.Fprintf(w, "\nchaos results (scale %s)\n", scale.Name)
	fmt.Fprintf(w, "| scenario | wall | started | complete | failed by type | failed, held by partner | review | lost | deliveries | replays | duplicates at partner | partner faults | audit verify | notes |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range results {
		fmt.Fprintf(w, "| %s | %v | %d | %d | %s | %d | %s | %d | %d | %d | %d | %d | %s | %s |\n", c.Scenario, c.Wall.Round(time.Second),
			c.Started, c.Complete, byType(c.Failed), c.FailedHeld, byType(c.Review), c.Lost, c.Deliveries, c.Replays, c.Duplicates, c.Faults,
			map[bool]string{true: "OK", false: "FAILED"}[c.AuditVerfied], c.Note)
	}
}

func byType(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// partnerID is the chaos partner's id in the registry.
const partnerID = "chaos-partner"

// members is how many members the store holds; transfer i asks for
// member i % members by member id and birth date, which matches.
const members = 50

// run is one scenario's topology: the stack, its api and worker
// processes, the sandbox partner behind a fault proxy, and the keys the
// client sent.
type run struct {
	t      testing.TB // a scenario's test, or the production benchmark
	name   string
	start  time.Time
	st     *prodstack.Stack
	apis   []*prodstack.Proc
	works  []*prodstack.Proc
	tokens map[*prodstack.Proc]prodstack.TokenSource // each api's own: a token's audience is the api that issued it

	partner    *sandbox.Partner
	partnerDir string
	toxi       *toxiproxy.ApiServer
	proxy      *toxiproxy.Proxy // workers → partner
	// temporalProxy is api-1's way to Temporal, with
	// runOptions.temporalProxy.
	temporalProxy *toxiproxy.Proxy
	faults        atomic.Int64

	http *http.Client

	mu   sync.Mutex
	keys map[string]string // Idempotency-Key → transfer id ("" not answered yet)
}

// runOptions vary a scenario's topology.
type runOptions struct {
	apiEnv    [2][]string // per api process
	workerBin string      // "" = the normal build
	// temporalProxy: api-1 reaches Temporal through a fault proxy
	// (run.temporalProxy).
	temporalProxy bool
	// dbPrefix names the run's databases (prodstack.Options.Prefix); "" =
	// "chaos". The benchmark uses its own, so that it never drops a
	// scenario's databases.
	dbPrefix string
}

// newRun starts a fresh topology: new databases, the Temporal server, the
// partner and its proxy, 2 apis and 2 workers; members imported.
func newRun(t testing.TB, name string, o runOptions) *run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := filepath.Join(os.TempDir(), "p2p-chaos", name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, name: name, start: time.Now(), keys: map[string]string{}, tokens: map[*prodstack.Proc]prodstack.TokenSource{},
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}}
	t.Logf("run directory (logs, partner log): %s", dir)

	// The partner, in this process, behind a fault proxy; it fetches our
	// JWKS through jwksURL from whichever api is up.
	mux := http.NewServeMux()
	jwksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jwksSrv := &http.Server{Handler: http.HandlerFunc(r.serveJWKS)}
	go func() { _ = jwksSrv.Serve(jwksLn) }() // ends at Close
	t.Cleanup(func() { _ = jwksSrv.Close() })
	r.partnerDir = filepath.Join(dir, "partner")
	r.partner, err = sandbox.New(sandbox.Options{Dir: r.partnerDir, JWKSURL: "http://" + jwksLn.Addr().String() + "/jwks"})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", r.partner.Handler())
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	psrv := &http.Server{Handler: mux}
	go func() { _ = psrv.Serve(pln) }() // ends at Close
	t.Cleanup(func() { _ = psrv.Close(); _ = r.partner.Close() })
	r.toxi = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxyAddr, err := prodstack.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r.proxy = toxiproxy.NewProxy(r.toxi, "partner", proxyAddr, pln.Addr().String())
	if err := r.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.proxy.Stop)

	registry := fmt.Sprintf(`partners:
  - id: %s
    name: Chaos Partner
    push_url: http://%s/exports
    allow_private_network: true
    timeout: 5s
    rate_limit: 500
    concurrency: 16
    retry:
      initial_interval: 200ms
      maximum_interval: 2s
`, partnerID, proxyAddr)
	if o.dbPrefix == "" {
		o.dbPrefix = "chaos"
	}
	r.st, err = prodstack.New(ctx, prodstack.Options{
		Bin: bins, Dir: dir, Prefix: o.dbPrefix, Partners: registry,
		PostgresURL: os.Getenv("CHAOS_POSTGRES_URL"), // "" = prodstack.DefaultPostgresURL
		Env: []string{
			"P2P_RATE_LIMIT=-1",                 // 1,000 POSTs at once are the point, not the limiter
			"P2P_RESUME_INTERVAL=2s",            // scenario 3: resume soon after ResumeAge
			"P2P_AUDIT_CHECKPOINT_INTERVAL=10s", // a checkpoint for audit verify to check
			"P2P_SHUTDOWN_TIMEOUT=2s",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.st.Close()
		if t.Failed() {
			t.Logf("logs kept in %s", filepath.Join(dir, "logs"))
		}
	})
	csv := filepath.Join(dir, "members.csv")
	var b strings.Builder
	b.WriteString("member_id,given,family,birth_date,sex,street,city,state,postal_code,phone\n")
	for i := range members {
		fmt.Fprintf(&b, "M%04d,Given%d,Family%d,%s,F,%d Harbor Road,Duluth,MN,55802,218-555-%04d\n", i, i, i, birthDate(i), i+1, i)
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.P2P(ctx, "members", "import", "--file", csv); err != nil {
		t.Fatal(err)
	}
	if o.temporalProxy {
		addr, err := prodstack.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		r.temporalProxy = toxiproxy.NewProxy(r.toxi, "temporal", addr, r.st.Temporal.Address)
		if err := r.temporalProxy.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.temporalProxy.Stop)
		o.apiEnv[0] = append(o.apiEnv[0], "P2P_TEMPORAL_ADDRESS="+addr)
	}
	for i := range 2 {
		p, err := r.st.StartAPI(ctx, fmt.Sprintf("api-%d", i+1), o.apiEnv[i]...)
		if err != nil {
			t.Fatal(err)
		}
		r.apis = append(r.apis, p)
	}
	for i := range 2 {
		r.startWorker(ctx, fmt.Sprintf("worker-%d", i+1), o.workerBin)
	}
	for _, a := range r.apis {
		if r.tokens[a], err = r.st.AdminTokens(ctx, a.URL()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.tokens[a].Token(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *run) startWorker(ctx context.Context, name, bin string) *prodstack.Proc {
	r.t.Helper()
	if bin == "" {
		bin = bins.P2P
	}
	p, err := r.st.StartWorkerBin(ctx, name, bin)
	if err != nil {
		r.t.Fatal(err)
	}
	r.works = append(r.works, p)
	return p
}

func birthDate(i int) string {
	return time.Date(1950+i%50, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// serveJWKS serves our JWKS to the partner from the first api that
// answers: any of them publishes the same keys.
func (r *run) serveJWKS(w http.ResponseWriter, req *http.Request) {
	for _, a := range r.apis {
		res, err := r.http.Get(a.URL() + "/.well-known/jwks.json")
		if err != nil {
			continue
		}
		b, err := io.ReadAll(res.Body)
		_ = res.Body.Close() // read to the end
		if err == nil && res.StatusCode == 200 {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b) // the partner retries a failed fetch
			return
		}
	}
	http.Error(w, "no api up", http.StatusBadGateway)
}

// consentTime anchors the consents' dates: one body per transfer for the
// whole run, so that a retry with its key is the same request.
var consentTime = time.Now().UTC().Truncate(time.Hour)

// body is the request of transfer i: a member who matches, an active
// consent.
func body(i int) []byte {
	now := consentTime
	m := i % members
	b, _ := json.Marshal(map[string]any{
		"partner_id": partnerID,
		"member":     map[string]any{"member_id": fmt.Sprintf("M%04d", m), "birth_date": birthDate(m)},
		"consent": map[string]any{"id": fmt.Sprintf("consent-%d", i), "status": "active", "scope": "regular",
			"period":     map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": now.AddDate(1, 0, 0).Format(time.RFC3339)},
			"granted_at": now.AddDate(0, -1, 0).Format(time.RFC3339)},
		"correlation_id": fmt.Sprintf("chaos-%d", i),
	})
	return b
}

// postResult is one POST's outcome.
type postResult struct {
	status int // 0: no answer (connection error)
	id     string
	err    error
}

// post sends transfer body b with key to api a once.
func (r *run) post(ctx context.Context, a *prodstack.Proc, key string, b []byte) postResult {
	tok, err := r.tokens[a].Token(ctx)
	if err != nil {
		return postResult{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL()+"/v1/transfers", bytes.NewReader(b))
	if err != nil {
		return postResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := r.http.Do(req)
	if err != nil {
		return postResult{err: err}
	}
	defer func() { _ = res.Body.Close() }() // read below
	var out struct {
		ID string `json:"id"`
	}
	rb, err := io.ReadAll(res.Body)
	if err != nil {
		return postResult{status: res.StatusCode, err: err}
	}
	if res.StatusCode == http.StatusAccepted || res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(rb, &out); err != nil || out.ID == "" {
			return postResult{status: res.StatusCode, err: fmt.Errorf("answer without id: %s", rb)}
		}
		return postResult{status: res.StatusCode, id: out.ID}
	}
	return postResult{status: res.StatusCode, err: fmt.Errorf("%d %s", res.StatusCode, rb)}
}

// submitVia sends transfer i as a careful client does: the same key until
// it gets an answer with an id, through api via (nil: alternating apis),
// backing off on 503 and connection errors, for up to within. It records
// the key first, so that a transfer accepted but never answered is still
// the client's.
func (r *run) submitVia(ctx context.Context, via *prodstack.Proc, i int, within time.Duration) (string, error) {
	key := fmt.Sprintf("%s-%d", r.name, i)
	r.note(key, "")
	b := body(i)
	deadline := time.Now().Add(within)
	var last postResult
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		a := via
		if a == nil {
			a = r.apis[(i+attempt)%len(r.apis)]
		}
		if !a.Running() {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		last = r.post(ctx, a, key, b)
		if last.id != "" {
			r.note(key, last.id)
			return last.id, nil
		}
		if last.status != 0 && last.status != http.StatusServiceUnavailable && last.status != http.StatusTooManyRequests {
			return "", fmt.Errorf("POST %s: %w", key, last.err)
		}
		time.Sleep(time.Duration(200+rand.IntN(300)) * time.Millisecond)
	}
	return "", fmt.Errorf("POST %s: no answer within %v: %v", key, within, last.err)
}

func (r *run) note(key, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id != "" || r.keys[key] == "" {
		r.keys[key] = id
	}
}

// submitAll submits transfers from..to-1, conc at a time, and fails the
// test for any the client could not get accepted.
func (r *run) submitAll(ctx context.Context, from, to, conc int, accepted *atomic.Int64) {
	r.t.Helper()
	r.submitAllVia(ctx, nil, from, to, conc, accepted)
}

// submitAllVia is submitAll through api via only (nil: alternating).
func (r *run) submitAllVia(ctx context.Context, via *prodstack.Proc, from, to, conc int, accepted *atomic.Int64) {
	r.t.Helper()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for i := from; i < to; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := r.submitVia(ctx, via, i, 3*time.Minute); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			if accepted != nil {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.t.Errorf("submitting: %v", err)
	}
}

// apiTransfer is what the suite reads of a transfer.
type apiTransfer struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Identity *struct {
		Status string `json:"status"`
	} `json:"identity"`
	Error *struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	} `json:"error"`
}

// list returns every transfer in the store, through an api's paginated
// list.
func (r *run) list(ctx context.Context) ([]apiTransfer, error) {
	var all []apiTransfer
	cursor := ""
	for {
		a := r.liveAPI()
		if a == nil {
			return nil, errors.New("no api is up")
		}
		u := a.URL() + "/v1/transfers?limit=200"
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		var page struct {
			Items      []apiTransfer `json:"items"`
			NextCursor *string       `json:"next_cursor"`
		}
		if err := r.getJSON(ctx, a, u, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == nil || *page.NextCursor == "" {
			return all, nil
		}
		cursor = *page.NextCursor
	}
}

func (r *run) liveAPI() *prodstack.Proc {
	for _, a := range r.apis {
		if a.Running() {
			return a
		}
	}
	return nil
}

func (r *run) getJSON(ctx context.Context, a *prodstack.Proc, u string, v any) error {
	tok, err := r.tokens[a].Token(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }() // read below
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("GET %s: %d %s", u, res.StatusCode, b)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// settled reports whether a transfer is where the suite expects it to
// stop: terminal, or waiting for a person.
func settled(t apiTransfer) bool {
	return t.State == "complete" || t.State == "failed" || t.State == "manual_review"
}

// awaitSettled waits until the store holds want transfers, all settled,
// and returns them; on timeout it returns what it has.
func (r *run) awaitSettled(ctx context.Context, want int, within time.Duration) []apiTransfer {
	r.t.Helper()
	deadline := time.Now().Add(within)
	var last []apiTransfer
	for {
		ts, err := r.list(ctx)
		if err == nil {
			last = ts
			n := 0
			for _, t := range ts {
				if settled(t) {
					n++
				}
			}
			if len(ts) >= want && n == len(ts) {
				return ts
			}
		}
		if time.Now().After(deadline) {
			r.t.Errorf("after %v: %d transfers in the store, want %d, not all settled (last error %v)", within, len(last), want, err)
			return last
		}
		time.Sleep(time.Second)
	}
}

// misbehave makes the partner misbehave until ctx ends, one fault every
// period, in turn: 503 and 429 with Retry-After, an acknowledgement lost
// after the partner recorded the delivery, responses held past the
// client's timeout, connections reset, slow bodies, slow answers, and
// (every permanentEvery-th round, when > 0) one permanent 422.
func (r *run) misbehave(ctx context.Context, period time.Duration, permanentEvery int) {
	faults := []func(){
		func() { r.partner.FailNext(3, sandbox.Failure{Status: 503, RetryAfter: "1"}) },
		func() { r.partner.FailNext(3, sandbox.Failure{Status: 429, RetryAfter: "1"}) },
		func() { r.partner.FailNext(2, sandbox.Failure{Status: 503, AfterRecord: true}) },
		func() {
			r.toxic(ctx, `{"name":"hold","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`, 3*time.Second)
		},
		func() {
			r.toxic(ctx, `{"name":"reset","type":"reset_peer","stream":"upstream","attributes":{"timeout":0}}`, 2*time.Second)
		},
		func() {
			r.toxic(ctx, `{"name":"slowbody","type":"bandwidth","stream":"upstream","attributes":{"rate":16}}`, 3*time.Second)
		},
		func() {
			r.toxic(ctx, `{"name":"latency","type":"latency","stream":"downstream","attributes":{"latency":1500,"jitter":500}}`, 3*time.Second)
		},
	}
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
		if permanentEvery > 0 && round%permanentEvery == permanentEvery-1 {
			r.partner.FailNext(1, sandbox.Failure{Status: 422})
		} else {
			faults[round%len(faults)]()
		}
		r.faults.Add(1)
	}
}

// toxic adds a toxic to the partner proxy for d, then removes it.
func (r *run) toxic(ctx context.Context, js string, d time.Duration) {
	if _, err := r.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		r.t.Errorf("toxic %s: %v", js, err)
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	r.proxy.Toxics.ResetToxics(context.Background())
}

// partnerLog reads the partner's own delivery log (the NDJSON file it
// fsyncs before answering): the deliveries and the repeats it recognised.
func (r *run) partnerLog() (deliveries map[string][]string, replays int, err error) {
	f, err := os.Open(filepath.Join(r.partnerDir, sandbox.LogFile))
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = f.Close() }() // read only
	deliveries = map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Op       string `json:"op"`
			Delivery *struct {
				Key        string `json:"idempotency_key"`
				TransferID string `json:"transfer_id"`
			} `json:"delivery"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, 0, fmt.Errorf("partner log: %w", err)
		}
		switch rec.Op {
		case "delivery":
			deliveries[rec.Delivery.TransferID] = append(deliveries[rec.Delivery.TransferID], rec.Delivery.Key)
		case "duplicate":
			replays++
		}
	}
	return deliveries, replays, sc.Err()
}

// check asserts what every scenario must end with and records its counts:
// every key the client sent names a transfer in the store (none lost, none
// extra); every transfer is complete, failed with one of allowedFailures,
// or in review with an identity status; no export reached the partner
// twice (its own log) and every complete transfer reached it once; no
// process exited on its own; p2p audit verify passes.
func (r *run) check(ctx context.Context, ts []apiTransfer, allowedFailures []string, note string) Counts {
	r.t.Helper()
	c := Counts{Scenario: r.name, Wall: time.Since(r.start), Failed: map[string]int{}, Review: map[string]int{}, Note: note, Faults: int(r.faults.Load())}
	byID := map[string]apiTransfer{}
	for _, t := range ts {
		byID[t.ID] = t
	}
	c.Started = len(byID)
	r.mu.Lock()
	keys := len(r.keys)
	for key, id := range r.keys {
		if id == "" {
			continue // accepted or not: the store count below says
		}
		if _, ok := byID[id]; !ok {
			c.Lost++
			r.t.Errorf("key %s was answered with transfer %s, which is not in the store", key, id)
		}
	}
	r.mu.Unlock()
	if c.Started != keys {
		r.t.Errorf("%d transfers in the store for %d keys sent", c.Started, keys)
		if c.Started < keys {
			c.Lost += keys - c.Started
		}
	}
	dl, replays, err := r.partnerLog()
	if err != nil {
		r.t.Errorf("partner log: %v", err)
	}
	c.Replays = replays
	for id, keys := range dl {
		c.Deliveries += len(keys)
		if len(keys) > 1 {
			c.Duplicates += len(keys) - 1
			r.t.Errorf("transfer %s was delivered %d times, under keys %v", id, len(keys), keys)
		}
		if _, ok := byID[id]; !ok {
			r.t.Errorf("the partner received transfer %s, which is not in the store", id)
		}
	}
	for _, t := range ts {
		switch {
		case t.State == "complete":
			c.Complete++
			if len(dl[t.ID]) != 1 {
				r.t.Errorf("transfer %s is complete with %d deliveries at the partner", t.ID, len(dl[t.ID]))
			}
		case t.State == "failed":
			typ := "(none)"
			if t.Error != nil && t.Error.Type != "" {
				typ = t.Error.Type
			}
			c.Failed[typ]++
			if len(dl[t.ID]) > 0 {
				c.FailedHeld++
			}
			if !slices.Contains(allowedFailures, typ) {
				r.t.Errorf("transfer %s failed with %s, not one of %v", t.ID, typ, allowedFailures)
			}
		case t.State == "manual_review" && t.Identity != nil && t.Identity.Status != "":
			c.Review[t.Identity.Status]++
		default:
			c.Lost++
			r.t.Errorf("transfer %s is %s, neither terminal nor in review for a stated reason", t.ID, t.State)
		}
	}
	for _, p := range append(slices.Clone(r.apis), r.works...) {
		if n := p.Crashes(); n > 0 {
			r.t.Errorf("%s exited on its own %d times:\n%s", p.Name, n, p.Tail(20))
		}
	}
	// A checkpoint of the log as it ends (the workers sign one every 10 s;
	// a short run may end before the first): what verify checks it against.
	var cp map[string]any
	if a := r.liveAPI(); a == nil {
		r.t.Error("no api up to sign a checkpoint")
	} else if err := r.getJSON(ctx, a, a.URL()+"/v1/audit/checkpoint", &cp); err != nil {
		r.t.Errorf("audit checkpoint: %v", err)
	}
	if out, err := r.st.P2P(ctx, "audit", "verify", "--keys-dir", r.st.KeysDir); err != nil {
		r.t.Errorf("audit verify: %v", err)
	} else {
		c.AuditVerfied = true
		r.t.Logf("audit verify: %s", strings.TrimSpace(string(out)))
	}
	record(c)
	r.t.Logf("%s: started %d, complete %d, failed %s, review %s, lost %d, deliveries %d (replays recognised %d), duplicates %d, partner faults %d; %s",
		c.Scenario, c.Started, c.Complete, byType(c.Failed), byType(c.Review), c.Lost, c.Deliveries, c.Replays, c.Duplicates, c.Faults, note)
	return c
}
