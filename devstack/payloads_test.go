package devstack

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata/bulktest"
	"github.com/p2p-payer/p2p/devserver"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/workflows"
)

// TestTemporalHoldsNoIdentifiers: after an export (our member id, the
// partner's endpoint) and an import (the old payer's member identifier
// and patient id, its status and file URLs, with failures whose messages
// name them), Temporal's database (the embedded server's SQLite file,
// every table and column, and the raw bytes of the file and its WAL)
// holds none of them in plain text, nor the member's name or birth date.
// The API's codec server decodes the history for a client with
// payloads:read, and for no other. As a control, a workflow started by a client without the codec, with
// the same values as input, puts every one of them there, where the
// scan finds it.
func TestTemporalHoldsNoIdentifiers(t *testing.T) {
	if testing.Short() {
		t.Skip("an export and an import end to end")
	}
	old := newOldPayer(t)
	now := time.Now().UTC()
	for typ, n := range map[string]int{"Patient": 1, "Coverage": 1, "ExplanationOfBenefit": 2} {
		for i := range n {
			if err := old.bulk.Add("pt-M1", resourceJSON(typ, fmt.Sprintf("%s-%d", strings.ToLower(typ), i), now.AddDate(0, -i-1, 0))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Failures whose messages name the old payer's URLs: a kick-off
	// answering 500, a status poll 429, a file 410.
	old.bulk.PollsBeforeDone, old.bulk.RetryAfter = 1, "1"
	old.bulk.Inject(bulktest.RouteKickOff, bulktest.Answer{Status: 500})
	old.bulk.Inject(bulktest.RouteStatus, bulktest.Answer{Status: 429, Header: map[string]string{"Retry-After": "1"}})
	old.bulk.Inject(bulktest.RouteFile, bulktest.Answer{Status: 410})

	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: dataDir, Addr: "127.0.0.1:0", Seed: true, Partners: []connectors.Partner{{
		ID: "oldco", Name: "Old Co Health", Roles: []connectors.Role{connectors.RolePull}, FHIRBaseURL: old.srv.URL + "/fhir",
		AllowPrivateNetwork: true,
		Auth:                connectors.Auth{Type: connectors.AuthNone, ClientID: "newco"},
		Identifiers:         []connectors.Identifier{{System: fhir.SystemNPI, Value: oldPayerNPI}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	e := &e2e{t: t, s: s}

	exp := e.create("no-identifiers-export", request(alice, time.Now().AddDate(1, 0, 0)))
	imp := e.create("no-identifiers-import", importRequest("OLD-1", "active"))
	tr := e.await(exp, "complete", 15*time.Second)
	if tr["identity"].(map[string]any)["member_id"] != "M100001" {
		t.Fatalf("export identity %v", tr["identity"])
	}
	e.await(imp, "complete", 45*time.Second)
	if len(old.bulk.Deleted()) == 0 {
		t.Fatal("the import never met the expired file")
	}

	db := filepath.Join(dataDir, "temporal", devserver.DBFileName)
	needles := []string{
		"M100001",                       // our member id (export)
		"OLD-1",                         // the old payer's member identifier (import)
		"pt-M1",                         // the old payer's patient id
		old.srv.URL + "/fhir/bulkfiles", // the old payer's file URLs
		old.srv.URL + "/fhir/bulkstatus",
		s.SandboxURL + "/exports", // the partner's endpoint
		"Nguyen", "1985-04-12",    // the member's name and birth date
	}
	if found := scanTemporal(t, db, needles); len(found) > 0 {
		t.Errorf("Temporal's database holds in plain text:\n%s", strings.Join(found, "\n"))
	}

	// Through the API's codec server, ops holding payloads:read (here the
	// admin) see what the history holds; others are refused.
	var results []*commonpb.Payload
	it := s.Client.GetWorkflowHistory(ctx, workflows.WorkflowID(exp), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, ev.GetActivityTaskCompletedEventAttributes().GetResult().GetPayloads()...)
		// A local activity's result (the identity decision's among
		// them) is in its marker's details.
		for _, d := range ev.GetMarkerRecordedEventAttributes().GetDetails() {
			results = append(results, d.GetPayloads()...)
		}
	}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: results})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte("M100001")) || len(results) < 5 {
		t.Fatalf("%d activity results and marker details, in plain text or too few: the history API decoded them", len(results))
	}
	for _, tt := range []struct {
		client string
		want   int
	}{{"admin", 200}, {"ops", 403}, {"auditor", 403}, {"", 401}} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/codec/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", s.Temporal.Namespace())
		if tt.client != "" {
			req.Header.Set("Authorization", "Bearer "+s.Tokens[tt.client])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != tt.want {
			t.Fatalf("codec server as %q: %d %s, want %d", tt.client, res.StatusCode, b, tt.want)
		}
		var out commonpb.Payloads
		decoded := tt.want == 200 && protojson.Unmarshal(b, &out) == nil && len(out.Payloads) == len(results)
		shown := false
		for _, p := range out.Payloads {
			shown = shown || bytes.Contains(p.Data, []byte(`"member_id":"M100001"`))
		}
		if (tt.want == 200) != (decoded && shown) {
			t.Errorf("codec server as %q: decoded %v, member id shown %v", tt.client, decoded, shown)
		}
	}

	// The control: the same values, as a client without the codec sends
	// them, are found.
	c, err := client.Dial(client.Options{HostPort: s.Temporal.Address(), Namespace: s.Temporal.Namespace(),
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "plain-control", TaskQueue: "plain-control"}, "PlainControl", needles); err != nil {
		t.Fatal(err)
	}
	found := scanTemporal(t, db, needles)
	for _, n := range needles {
		if !strings.Contains(strings.Join(found, "\n"), fmt.Sprintf("%q", n)) {
			t.Errorf("the control: %q sent without the codec is not found; the scan is blind to it", n)
		}
	}
}

// scanTemporal looks for each needle in every column of every table of
// the SQLite database at path (values whole, whatever the pages), and in
// the raw bytes of its files (the WAL's frames, free pages). It returns
// where each one was found, as `"needle" in place`.
func scanTemporal(t *testing.T, path string, needles []string) []string {
	t.Helper()
	var found []string
	hit := func(where string, b []byte) {
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found = append(found, fmt.Sprintf("%q in %s", n, where))
			}
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+url.Values{"mode": {"ro"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }() // read only: nothing to lose
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 10 {
		t.Fatalf("%s has %d tables: not Temporal's database", path, len(tables))
	}
	cells := 0
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				cells++
				switch v := v.(type) {
				case []byte:
					hit(table+"."+cols[i], v)
				case string:
					hit(table+"."+cols[i], []byte(v))
				}
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if cells == 0 {
		t.Fatal("Temporal's database is empty")
	}
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		hit(filepath.Base(f), b)
	}
	sort.Strings(found)
	return found
}
