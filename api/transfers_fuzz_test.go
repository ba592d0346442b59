package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/internal/phicanary"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// requestPHIKeys are the keys of a /v1 transfer request whose values are
// PHI.
var requestPHIKeys = []string{"given", "family", "member_id", "subscriber_id", "phone", "street", "city", "state", "postal_code"}

// FuzzCreateTransferBody posts bodies to POST /v1/transfers through the
// whole handler (spec validation, decoding, checkNewTransfer, the store):
// the answer is a 202 or a client error, never a 500; every error is a
// problem; a transfer accepted is stored with a request that re-validates;
// and with the member's values swapped for canaries, no answer and no log
// line holds one.
func FuzzCreateTransferBody(f *testing.F) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "p2p.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := NewServer(Deps{
		Store: st, Engine: &fakeEngine{}, Keys: fakeKeys{jwks: []byte(testJWKS)}, Auth: testAuth, Logger: zap.New(core),
		Now: time.Now,
	})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()

	f.Add([]byte(body("acme")))
	f.Add([]byte(strings.Replace(body("acme"), `"birth_date": "1984-07-19"`, `"birth_date": "1984-02-31"`, 1)))
	f.Add([]byte(strings.Replace(body("acme"), `"given": "Zelphina"`, `"given": " ", "surname": "x"`, 1)))
	f.Add([]byte(strings.Replace(body("acme"), `"partner_id": "acme"`,
		`"direction": "import", "coverage_to_match": {"payer": "old", "member_id": "M-77", "subscriber_id": " ", "period": {"start": "2024-02-01", "end": "2024-01-01"}}`, 1)))
	f.Add([]byte(strings.Replace(body("acme"), `"end": "2030-01-01T00:00:00Z"`, `"end": "2020-01-01T00:00:00+05:00"`, 1)))
	f.Add([]byte(`{"partner_id": 7}`))
	f.Add([]byte(`[`))

	n := 0
	post := func(t *testing.T, b []byte) *httptest.ResponseRecorder {
		n++
		r := httptest.NewRequest(http.MethodPost, "/v1/transfers", strings.NewReader(string(b)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(idempotencyHeader, fmt.Sprintf("fuzz-key-%08d", n))
		r.Header.Set("Authorization", bearer("payer-a", "", caller.TransfersWrite))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusAccepted:
			var v struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || v.ID == "" {
				t.Fatalf("202 without a transfer id: %s", w.Body)
			}
			req, err := st.GetTransferRequest(ctx, v.ID)
			if err != nil {
				t.Fatalf("accepted transfer %s: %v", v.ID, err)
			}
			if ps := req.Problems(); len(ps) > 0 {
				t.Fatalf("accepted a request with problems %v: %s", ps, b)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			var p Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || !strings.HasPrefix(p.Type, ProblemTypePrefix) || p.Status != w.Code ||
				w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d is not a problem: %s", w.Code, w.Body)
			}
		default:
			t.Fatalf("status %d for %s: %s", w.Code, b, w.Body)
		}
		return w
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		post(t, b)
		marked, canaries, ok := phicanary.Mark(b, requestPHIKeys...)
		if !ok || len(canaries) == 0 {
			return
		}
		before := logs.Len()
		w := post(t, marked)
		if l := phicanary.Leaked(w.Body.String(), canaries); len(l) > 0 {
			t.Fatalf("answer %d holds the request's values %v: %s", w.Code, l, w.Body)
		}
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		for _, e := range slices.Clip(logs.All()[before:]) {
			buf, err := enc.EncodeEntry(e.Entry, e.Context)
			if err != nil {
				t.Fatal(err)
			}
			if l := phicanary.Leaked(buf.String(), canaries); len(l) > 0 {
				t.Fatalf("log line holds the request's values %v: %s", l, buf)
			}
			buf.Free()
		}
	})
}
