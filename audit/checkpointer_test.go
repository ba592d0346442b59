package audit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/audit/audittest"
	"github.com/p2p-payer/p2p/store"
)

// TestDirWitness: every checkpoint becomes a file of its own, named so
// that files sort by size, read back as the checkpoint signed; no
// temporary file is left behind.
func TestDirWitness(t *testing.T) {
	signer, jwks := newSigner(t)
	s := audittest.OpenSQLite(t).Store
	dir := filepath.Join(t.TempDir(), "witness") // created on first use
	fixture(t, s, signer, dir)
	files, err := audit.DirWitness{Dir: dir}.Files()
	if err != nil || len(files) != 2 {
		t.Fatalf("Files = %v, %v", files, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the directory holds %d entries, want the 2 checkpoints", len(entries))
	}
	for i, want := range []int64{12, 30} {
		if !strings.HasPrefix(filepath.Base(files[i]), "000000000000000000"+map[int64]string{12: "12", 30: "30"}[want]+"-") {
			t.Errorf("file %d is %s", i, files[i])
		}
		tr, err := audit.ReadTrusted(files[i])
		if err != nil {
			t.Fatal(err)
		}
		h, _, _, err := audit.OpenCheckpoint(tr.JWS, jwks)
		if err != nil || h.Size != want {
			t.Errorf("%s: size %d, %v", files[i], h.Size, err)
		}
	}
}

// TestParseSavedCheckpoint takes the JSON of GET /v1/audit/checkpoint or a
// bare compact JWS, and nothing else.
func TestParseSavedCheckpoint(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`{"size":3,"root":"AA==","time":"2026-01-02T03:04:05Z","kid":"k","jws":"a.b.c"}`, "a.b.c"},
		{"a.b.c\n", "a.b.c"},
		{`{"size":3}`, ""},
		{"a.b", ""},
		{"not a checkpoint at all", ""},
		{`{"jws": 3}`, ""},
	}
	for _, tc := range tests {
		got, err := audit.ParseSavedCheckpoint([]byte(tc.in))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseSavedCheckpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestURLWitness POSTs the checkpoint, retrying what may pass later (5xx,
// 429, a dropped connection) and not what will not (4xx).
func TestURLWitness(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // answered in turn; the last one again after
		wantErr  bool
		wantHits int32
	}{
		{"accepted", []int{http.StatusCreated}, false, 1},
		{"retried until accepted", []int{503, 429, 200}, false, 3},
		{"down", []int{502}, true, 3},
		{"refused", []int{400}, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(hits.Add(1))
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s %s", r.Method, r.Header.Get("Content-Type"))
				}
				w.WriteHeader(tc.statuses[min(n, len(tc.statuses))-1])
			}))
			defer srv.Close()
			w := audit.NewWitness(srv.URL).(*audit.URLWitness)
			w.Backoff = time.Millisecond
			err := w.Publish(context.Background(), store.Checkpoint{Size: 1, JWS: "a.b.c", At: base})
			if (err != nil) != tc.wantErr || hits.Load() != tc.wantHits {
				t.Fatalf("Publish: %v after %d POSTs; want error %v after %d", err, hits.Load(), tc.wantErr, tc.wantHits)
			}
		})
	}
}

// TestSignDespiteWitnessFailure: a witness that fails is logged, and the
// checkpoint is still signed and stored.
func TestSignDespiteWitnessFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	signer, _ := newSigner(t)
	s := audittest.OpenSQLite(t).Store
	fixture(t, s, signer, "")
	core, logs := observer.New(zap.InfoLevel)
	cp := &audit.Checkpointer{Store: s, Signer: signer, Witness: &audit.URLWitness{URL: srv.URL, Backoff: time.Millisecond}, Log: zap.New(core)}
	c, err := cp.Sign(context.Background(), base.Add(3*time.Hour))
	if err != nil || c.Size != 30 {
		t.Fatalf("Sign = %+v, %v", c, err)
	}
	if latest, _ := s.LatestCheckpoint(context.Background()); latest.JWS != c.JWS {
		t.Error("the checkpoint was not stored")
	}
	if logs.FilterMessage("audit checkpoint not published to the witness").Len() != 1 {
		t.Errorf("logs: %v", logs.All())
	}
}

// TestCheckpointerRemembers: without a witness, the last head a
// Checkpointer signed is its anchor, so a rewrite with every checkpoint
// deleted is refused by a running process, and logged; a process started
// afterwards has nothing left to anchor on and verifies the log from leaf
// 0, which the rebuilt log passes: why docs/audit.md asks for a witness.
func TestCheckpointerRemembers(t *testing.T) {
	signer, _ := newSigner(t)
	db := audittest.OpenSQLite(t)
	fixture(t, db.Store, signer, "")
	core, logs := observer.New(zap.InfoLevel)
	running := &audit.Checkpointer{Store: db.Store, Signer: signer, Log: zap.New(core)}
	ctx := context.Background()
	if _, err := running.Sign(ctx, base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	db.Exec(`UPDATE timeline_events SET actor = 'x' WHERE id = (SELECT event_id FROM audit_log WHERE position = 20)`)
	audittest.RebuildTree(t, db)
	db.Exec("DELETE FROM audit_checkpoints")
	_, err := running.Sign(ctx, base.Add(3*time.Hour))
	var ie *audit.InconsistentError
	if !errors.As(err, &ie) || ie.Source != "memory" || ie.Size != 30 {
		t.Fatalf("running process: Sign = %v, want a refusal anchored in memory at 30", err)
	}
	if e := logs.FilterLevelExact(zap.ErrorLevel).All(); len(e) != 1 || !strings.Contains(e[0].Message, "AUDIT LOG INCONSISTENT") {
		t.Errorf("logs: %v", logs.All())
	}
	if _, err := (&audit.Checkpointer{Store: db.Store, Signer: signer}).Sign(ctx, base.Add(3*time.Hour)); err != nil {
		t.Fatalf("new process without a witness: %v", err)
	}
}

// TestFirstCheckpointVerifiesTheWholeLog: with no checkpoint anywhere, the
// signer recomputes the log from leaf 0 and refuses a log that does not
// verify.
func TestFirstCheckpointVerifiesTheWholeLog(t *testing.T) {
	signer, _ := newSigner(t)
	db := audittest.OpenSQLite(t)
	fixture(t, db.Store, signer, "")
	db.Exec("DELETE FROM audit_checkpoints")
	db.Exec(`UPDATE timeline_events SET actor = 'x' WHERE id = (SELECT event_id FROM audit_log WHERE position = 2)`)
	_, err := (&audit.Checkpointer{Store: db.Store, Signer: signer}).Sign(context.Background(), base.Add(3*time.Hour))
	var ie *audit.InconsistentError
	if !errors.As(err, &ie) || ie.Source != "" || !strings.Contains(ie.Reason, "position 2: event does not match its recorded leaf hash") {
		t.Fatalf("Sign = %v", err)
	}
	if !strings.Contains(err.Error(), "does not verify from leaf 0") {
		t.Errorf("error %q", err)
	}
}

// TestVerifyFreshness: the newest checkpoint that verifies, stored or
// trusted, must exist when required and be younger than MaxAge.
func TestVerifyFreshness(t *testing.T) {
	signer, jwks := newSigner(t)
	ctx := context.Background()
	withCheckpoints := audittest.OpenSQLite(t).Store
	witness := t.TempDir()
	fixture(t, withCheckpoints, signer, witness) // newest at base+1h
	empty := audittest.OpenSQLite(t).Store
	newest := base.Add(time.Hour)
	tests := []struct {
		name    string
		s       store.Store
		o       audit.Options
		problem string // "": OK
	}{
		{"fresh", withCheckpoints, audit.Options{RequireCheckpoint: true, MaxAge: time.Hour, Now: newest.Add(59 * time.Minute)}, ""},
		{"stale", withCheckpoints, audit.Options{RequireCheckpoint: true, MaxAge: time.Hour, Now: newest.Add(61 * time.Minute)},
			"the newest signed checkpoint (size 30, 2026-01-02T04:04:05Z) is older than 1h0m0s"},
		{"no age asked", withCheckpoints, audit.Options{Now: newest.Add(1000 * time.Hour)}, ""},
		{"none", empty, audit.Options{RequireCheckpoint: true, MaxAge: time.Hour, Now: base}, "no signed checkpoint"},
		{"none allowed", empty, audit.Options{MaxAge: time.Hour, Now: base}, ""},
		{"only a trusted one, fresh", empty, audit.Options{RequireCheckpoint: true, MaxAge: time.Hour, Now: newest,
			Trusted: []audit.Trusted{{Name: "t", JWS: witnessed(t, witness)[0].JWS}}}, "the log ends at 0, before its signed checkpoint of size 12"},
		{"a trusted one that does not verify", withCheckpoints, audit.Options{Trusted: []audit.Trusted{{Name: "forged.json", JWS: "e30.e30.e30"}}},
			"trusted checkpoint forged.json: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := audit.VerifyWith(ctx, tc.s, jwks, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			got := reason(rep)
			switch {
			case tc.problem == "" && !rep.OK():
				t.Fatalf("fails: %s", got)
			case tc.problem != "" && (rep.OK() || !strings.Contains(got, tc.problem)):
				t.Fatalf("report %q, want %q", got, tc.problem)
			}
		})
	}
}
