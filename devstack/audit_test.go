package devstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"

	"github.com/p2p-payer/p2p/api"
	"github.com/p2p-payer/p2p/workflows"
)

// logSink is a zap sink that keeps every line the stack writes.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) Sync() error { return nil }

func (s *logSink) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

// startLoggedStack starts a stack whose every log line, at every level,
// lands in the returned sink as JSON.
func startLoggedStack(t *testing.T) (*e2e, *logSink) {
	t.Helper()
	sink := &logSink{}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), sink, zapcore.DebugLevel)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Seed: true, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &e2e{t: t, s: s}, sink
}

// auditLine is one line of GET /v1/audit/events, as a client reads it.
type auditLine struct {
	Position   int64          `json:"position"`
	TransferID string         `json:"transfer_id"`
	Seq        int64          `json:"seq"`
	State      string         `json:"state"`
	Actor      string         `json:"actor"`
	Type       string         `json:"type"`
	Detail     map[string]any `json:"detail"`
}

// auditLog reads the audit log of a transfer through the API.
func (e *e2e) auditLog(id string) []auditLine {
	e.t.Helper()
	r := e.do("GET", "/v1/audit/events?transfer_id="+id, "", nil)
	if r.status != 200 {
		e.t.Fatalf("GET /v1/audit/events: %d %s", r.status, r.body)
	}
	var out []auditLine
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			e.t.Fatalf("audit line %s: %v", sc.Bytes(), err)
		}
		out = append(out, l)
	}
	return out
}

// find returns the events of type typ (and state, when not empty).
func find(log []auditLine, typ, state string) []auditLine {
	var out []auditLine
	for _, l := range log {
		if l.Type == typ && (state == "" || l.State == state) {
			out = append(out, l)
		}
	}
	return out
}

// one returns the single event of type typ and state, failing otherwise.
func one(t *testing.T, log []auditLine, typ, state string) auditLine {
	t.Helper()
	got := find(log, typ, state)
	if len(got) != 1 {
		t.Fatalf("%d events of type %q state %q in the audit log, want 1", len(got), typ, state)
	}
	return got[0]
}

// aliceFull is the demo member M100001 as a partner that knows everything
// about her would ask for her: every PHI field is in the request.
var aliceFull = map[string]any{
	"given": "Alice", "family": "Nguyen", "birth_date": "1985-04-12", "sex": "F",
	"address": map[string]any{"street": "12 Oak Street", "city": "Springfield", "state": "IL", "postal_code": "62701"},
	"phone":   "217-555-0101",
}

// TestAuditLogAnswersFiveQuestions reads a completed transfer's audit log,
// and nothing else, through GET /v1/audit/events?transfer_id=, and checks
// it answers who, what identity, what consent, what data, what outcome;
// then it checks the answers against what the partner received.
func TestAuditLogAnswersFiveQuestions(t *testing.T) {
	e := startStack(t)
	const key = "five-questions-0001"
	body := request(aliceFull, time.Now().AddDate(1, 0, 0))
	id := e.create(key, body)
	e.await(id, "complete", 15*time.Second)
	log := e.auditLog(id)
	if len(log) == 0 {
		t.Fatal("no audit events")
	}
	for i, l := range log {
		if l.TransferID != id || l.Seq != int64(i+1) || (i > 0 && l.Position <= log[i-1].Position) {
			t.Fatalf("audit line %d %+v: not this transfer's events in order", i, l)
		}
	}

	// Who initiated: the client, under which key (hashed), with which ids.
	t.Run("who", func(t *testing.T) {
		l := one(t, log, "state", "initiated")
		tokenKey, err := e.s.Store.PresentationKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if l.Actor != "client:dev-submitter" || l.Detail["client_id"] != "dev-submitter" || l.Detail["partner_id"] != SandboxPartnerID ||
			l.Detail["idempotency_key_hmac"] != api.KeyToken(tokenKey, key) || l.Detail["request_id"] == "" {
			t.Errorf("request received: %+v", l)
		}
	})

	// What identity: the member, the rule or score, and why.
	t.Run("identity", func(t *testing.T) {
		d := one(t, log, "identity_decision", "").Detail
		if d["status"] != "resolved" || d["member_id"] != "M100001" || d["rule"] == "" || d["summary"] == "" {
			t.Fatalf("identity decision %v", d)
		}
		// A score decided: the per-field weights add up to it. A rule
		// decided: the rule names it.
		if fs, ok := d["fields"].([]any); ok && len(fs) > 0 {
			sum := 0.0
			for _, f := range fs {
				fm := f.(map[string]any)
				if fm["field"] == "" || fm["level"] == "" {
					t.Errorf("field contribution %v", fm)
				}
				sum += fm["weight"].(float64)
			}
			if score := d["score"].(float64); math.Abs(sum-score) > 0.01*math.Max(1, math.Abs(score)) {
				t.Errorf("field weights add up to %.3f, score %.3f", sum, score)
			}
		} else if d["rule"] == "fellegi_sunter" {
			t.Errorf("a score decided without per-field contributions: %v", d)
		}
	})

	// What consent: its id, scope, period, the result of both checks.
	t.Run("consent", func(t *testing.T) {
		checks := find(log, "consent_checked", "")
		if len(checks) != 2 {
			t.Fatalf("%d consent checks, want initial and before_send", len(checks))
		}
		c := body["consent"].(map[string]any)
		period := c["period"].(map[string]any)
		for i, phase := range []string{"initial", "before_send"} {
			d := checks[i].Detail
			if d["phase"] != phase || d["consent_id"] != c["id"] || d["scope"] != c["scope"] || d["asserted_status"] != "active" ||
				d["period_start"] != period["start"] || d["period_end"] != period["end"] || d["result"] != "verified" {
				t.Errorf("consent check %d: %v, want %s of %v", i, d, phase, c)
			}
		}
	})

	// What data, by digest: the manifest the partner received, file by
	// file, and what the consent's scope left out.
	var manifest string
	t.Run("data", func(t *testing.T) {
		d := one(t, log, "state", "payload_prepared").Detail
		manifest, _ = d["manifest_sha256"].(string)
		var got []string
		for _, dl := range e.s.Sandbox.Deliveries() {
			if dl.TransferID == id {
				got = append(got, dl.ManifestSHA256)
				if dl.KID != d["kid"] {
					t.Errorf("partner verified kid %s, audit says %v", dl.KID, d["kid"])
				}
				if float64(dl.Resources) != d["resources"] || float64(dl.Files) != float64(len(d["files"].([]any))) {
					t.Errorf("partner got %d files / %d resources, audit says %v / %v", dl.Files, dl.Resources, len(d["files"].([]any)), d["resources"])
				}
			}
		}
		if len(got) != 1 || got[0] != manifest || manifest == "" {
			t.Fatalf("partner received manifests %v, audit says %q", got, manifest)
		}
		counts := d["resource_counts"].(map[string]any)
		for _, f := range d["files"].([]any) {
			fm := f.(map[string]any)
			a, err := e.s.Store.GetArtifact(context.Background(), fm["sha256"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(a.Data); hex.EncodeToString(sum[:]) != fm["sha256"] || counts[fm["type"].(string)] != fm["count"] {
				t.Errorf("file %v: stored digest or count differs", fm)
			}
		}
		if d["excluded_sensitive"] != float64(1) || d["signature_sha256"] == "" {
			t.Errorf("export detail %v: want one sensitive resource left out (regular consent) and the signature's digest", d)
		}
	})

	// What outcome: sent where, acknowledged with which receipt, complete.
	t.Run("outcome", func(t *testing.T) {
		sent := one(t, log, "state", "sent").Detail
		if sent["partner_id"] != SandboxPartnerID || sent["endpoint"] != e.s.SandboxURL+"/exports" ||
			sent["attempt"] != float64(1) || sent["http_status"] != float64(200) {
			t.Errorf("sent %v", sent)
		}
		ack := one(t, log, "state", "acknowledged")
		var receipt string
		for _, dl := range e.s.Sandbox.Deliveries() {
			if dl.TransferID == id {
				receipt = dl.ReceiptID
			}
		}
		if ack.Actor != "partner:"+SandboxPartnerID || ack.Detail["receipt_id"] != receipt || receipt == "" ||
			ack.Detail["ack_verified"] != true || ack.Detail["ack_via"] != "push_response" {
			t.Errorf("acknowledged %+v, partner receipt %q", ack, receipt)
		}
		// The partner signed its receipt, and the signature was verified
		// against the key it publishes.
		res, err := http.Get(e.s.SandboxURL + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		var jwks struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		err = json.NewDecoder(res.Body).Decode(&jwks)
		res.Body.Close()
		if err != nil || len(jwks.Keys) != 1 {
			t.Fatalf("sandbox JWKS: %v %+v", err, jwks)
		}
		if ack.Detail["ack_signature"] != "verified" || ack.Detail["ack_signature_kid"] != jwks.Keys[0].Kid {
			t.Errorf("acknowledgement signature: %v / %v, want verified by %s", ack.Detail["ack_signature"], ack.Detail["ack_signature_kid"], jwks.Keys[0].Kid)
		}
		var last auditLine
		for _, l := range log {
			if l.State != "" {
				last = l
			}
		}
		if last.State != "complete" || len(find(log, "state", "failed")) != 0 || len(find(log, "send_failed", "")) != 0 {
			t.Errorf("last state %q; want complete and no failure", last.State)
		}
	})

	// Reads: every GET of the transfer is in the log, by the client.
	reads := find(log, "read", "")
	if len(reads) == 0 {
		t.Error("the polls of the transfer are not in the audit log")
	}
	for _, r := range reads {
		if r.Actor != "client:dev-admin" || r.Detail["route"] != "GET /v1/transfers/{id}" || r.State != "" {
			t.Errorf("read %+v", r)
		}
	}
}

// phiPatterns are the PHI values of the members and requests of a run,
// each in the formats it could plausibly be written in, matched
// case-insensitively as whole words (a digest that happens to contain the
// digits of a postal code is not a leak).
func phiPatterns(values map[string][]string) map[string]*regexp.Regexp {
	out := map[string]*regexp.Regexp{}
	for label, forms := range values {
		for _, f := range forms {
			out[label+" as "+f] = regexp.MustCompile(`(?i)(^|[^0-9a-z])` + regexp.QuoteMeta(f) + `([^0-9a-z]|$)`)
		}
	}
	return out
}

func dateForms(iso string) []string {
	d, err := time.Parse(time.DateOnly, iso)
	if err != nil {
		panic(err)
	}
	return []string{iso, d.Format("20060102"), d.Format("01/02/2006"), d.Format("1/2/2006"), d.Format("02.01.2006"),
		d.Format("2006/01/02"), d.Format("Jan 2, 2006"), d.Format("2 January 2006")}
}

func phoneForms(p string) []string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, p)
	a, b, c := digits[:3], digits[3:6], digits[6:]
	return []string{p, digits, "1" + digits, fmt.Sprintf("(%s) %s-%s", a, b, c), fmt.Sprintf("%s.%s.%s", a, b, c), fmt.Sprintf("%s %s %s", a, b, c)}
}

// findPHI returns every place in data where PHI patterns match, with
// their labels and the surroundings, one entry per place.
func findPHI(data []byte, pats map[string]*regexp.Regexp) []string {
	labels := map[[2]int][]string{}
	for label, re := range pats {
		for _, loc := range re.FindAllIndex(data, 3) {
			k := [2]int{loc[0], loc[1]}
			labels[k] = append(labels[k], label)
		}
	}
	var out []string
	for loc, ls := range labels {
		slices.Sort(ls)
		lo, hi := max(0, loc[0]-80), min(len(data), loc[1]+80)
		out = append(out, fmt.Sprintf("%s: …%q…", strings.Join(ls, ", "), data[lo:hi]))
	}
	slices.Sort(out)
	return out
}

// scan fails t for every PHI pattern found in data, saying where.
func scan(t *testing.T, where string, data []byte, pats map[string]*regexp.Regexp) {
	t.Helper()
	for _, f := range findPHI(data, pats) {
		t.Errorf("PHI in %s: %s", where, f)
	}
}

// TestNoPHIInAuditLogsOrHistories runs a transfer with full demographics
// and one through manual review, then scans for the PHI of the request
// and of every member involved: (a) the whole audit log and the timeline
// answers, (b) every line any part of the stack logged, at every level,
// (c) every event of both workflows' Temporal histories, as raw protobuf
// bytes (payloads, failure messages, headers and all).
func TestNoPHIInAuditLogsOrHistories(t *testing.T) {
	e, sink := startLoggedStack(t)
	year := time.Now().AddDate(1, 0, 0)
	full := e.create("phi-scan-full-0001", request(aliceFull, year))
	jordan := map[string]any{"given": "Jordan", "family": "Lee", "birth_date": "1995-03-08"}
	review := e.create("phi-scan-review-0001", request(jordan, year))
	e.await(full, "complete", 15*time.Second)
	tr := e.await(review, "manual_review", 15*time.Second)
	cands := tr["identity"].(map[string]any)["candidates"].([]any)
	if r := e.do("POST", "/v1/transfers/"+review+"/review", "", map[string]any{
		"decision": "approve", "member_id": cands[0], "reason": "checked with the member's plan by phone"}); r.status/100 != 2 {
		t.Fatalf("review: %d %s", r.status, r.body)
	}
	e.await(review, "complete", 15*time.Second)

	// The PHI: each request's demographics and every member's record.
	values := map[string][]string{}
	add := func(label string, forms ...string) { values[label] = append(values[label], forms...) }
	// A partner's $member-match, matched and not: each is a transfer whose
	// events the scan covers (the audit log), and the requester's card
	// number is PHI too.
	if r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Alice", "Nguyen", "1985-04-12", "female", "CARD-7781-ALN")); r.status != http.StatusOK {
		t.Fatalf("member-match: %d %s", r.status, r.body)
	}
	if r := e.memberMatch(SandboxPartnerID, hrexRequest(t, "Wilhelmina", "Featherstonehaugh", "1958-09-27", "female", "CARD-0042-WFH")); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("member-match: %d %s", r.status, r.body)
	}
	add("member-match given", "Wilhelmina")
	add("member-match family", "Featherstonehaugh")
	add("member-match birth date", dateForms("1958-09-27")...)
	add("member-match card number", "CARD-7781-ALN", "CARD-0042-WFH")
	ctx := context.Background()
	for _, mid := range []string{"M100001", "M100006", "M100007"} {
		m, err := e.s.Store.GetMember(ctx, mid)
		if err != nil {
			t.Fatal(err)
		}
		add(mid+" given", m.Given)
		add(mid+" family", m.Family)
		add(mid+" birth date", dateForms(m.BirthDate)...)
		add(mid+" street", m.Street)
		add(mid+" city", m.City)
		add(mid+" postal code", m.PostalCode)
		add(mid+" phone", phoneForms(m.Phone)...)
	}
	for _, id := range []string{full, review} {
		req, err := e.s.Store.GetTransferRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		q := req.Member
		for label, v := range map[string]string{"given": q.Given, "family": q.Family, "street": q.Address.Street,
			"city": q.Address.City, "postal code": q.Address.PostalCode} {
			if v != "" {
				add("request "+label, v)
			}
		}
		add("request birth date", dateForms(q.BirthDate)...)
		if q.Phone != "" {
			add("request phone", phoneForms(q.Phone)...)
		}
	}
	pats := phiPatterns(values)
	if len(pats) < 50 {
		t.Fatalf("only %d PHI patterns: the scan would prove little", len(pats))
	}
	// The scan finds what it looks for: PHI planted in a copy is reported.
	if got := findPHI([]byte(`{"x":"ALICE","y":"(217) 555-0101","z":"12.04.1985","d":"ab62701cd"}`), pats); len(got) != 3 {
		t.Fatalf("the scan finds %q in planted PHI, want the name, the phone and the date, not the digest", got)
	}
	req, err := e.s.Store.GetTransferRequest(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(req)
	if got := findPHI(raw, pats); len(got) < 7 {
		t.Fatalf("the scan finds only %d PHI values in the stored request %s", len(got), raw)
	}

	// (a) The audit log, whole, and the timeline answers.
	all := e.do("GET", "/v1/audit/events", "", nil)
	if all.status != 200 || bytes.Count(all.body, []byte("\n")) < 20 {
		t.Fatalf("audit log: %d, %d lines", all.status, bytes.Count(all.body, []byte("\n")))
	}
	scan(t, "the audit log", all.body, pats)
	if bytes.Count(all.body, []byte(`"operation":"member-match"`)) != 2 {
		t.Errorf("the audit log holds %d $member-match transfers, want 2", bytes.Count(all.body, []byte(`"operation":"member-match"`)))
	}
	for _, id := range []string{full, review} {
		scan(t, "the timeline of "+id, e.do("GET", "/v1/transfers/"+id+"/timeline?limit=1000", "", nil).body, pats)
		scan(t, "the transfer "+id, e.do("GET", "/v1/transfers/"+id, "", nil).body, pats)
	}

	// (c) Every event of both workflows' histories, as raw bytes.
	events := 0
	for _, id := range []string{full, review} {
		it := e.s.Client.GetWorkflowHistory(ctx, workflows.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			raw, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			scan(t, fmt.Sprintf("history of %s, event %d (%s)", id, ev.GetEventId(), ev.GetEventType()), raw, pats)
			events++
		}
	}
	if events < 40 {
		t.Errorf("scanned %d history events of two transfers: too few", events)
	}

	// (b) Everything logged, at every level, by every part of the stack.
	logs := sink.bytes()
	if bytes.Count(logs, []byte("\n")) < 10 || !bytes.Contains(logs, []byte(full)) {
		t.Fatalf("the stack logged %d lines, none about %s: the sink is not the stack's logger", bytes.Count(logs, []byte("\n")), full)
	}
	scan(t, "the logs", logs, pats)
	t.Logf("scanned %d PHI patterns in %d audit bytes, %d history events, %d log lines",
		len(pats), len(all.body), events, bytes.Count(logs, []byte("\n")))
}
