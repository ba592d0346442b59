package connectors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/connectors/httpclass"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/transfer"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func file(name, typ, data string) DeliveryFile {
	s := sha256.Sum256([]byte(data))
	return DeliveryFile{Name: name, Type: typ, SHA256: hex.EncodeToString(s[:]), Data: []byte(data)}
}

func delivery() Delivery {
	return Delivery{
		TransferID: "tr-1", IdempotencyKey: "p2p-tr-1-abc", Signature: "eyJh.eyJi.c2ln",
		Files: []DeliveryFile{
			file("Patient.ndjson", "Patient", `{"resourceType":"Patient","id":"p1","name":[{"family":"Lovelace"}]}`+"\n"),
			file("Coverage.ndjson", "Coverage", `{"resourceType":"Coverage","id":"c1"}`+"\n"),
		},
	}
}

// checkRequest asserts the wire format of a push.
func checkRequest(t *testing.T, r *http.Request, d Delivery) {
	t.Helper()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("Idempotency-Key") != d.IdempotencyKey {
		t.Errorf("request %s, content-type %q, key %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"))
	}
	var body struct {
		TransferID string `json:"transfer_id"`
		Signature  string `json:"signature"`
		Files      []struct {
			Name, Type, SHA256, NDJSON string
		} `json:"files"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		t.Errorf("body: %v", err)
		return
	}
	if body.TransferID != d.TransferID || body.Signature != d.Signature || len(body.Files) != len(d.Files) {
		t.Errorf("body %+v", body)
		return
	}
	for i, f := range body.Files {
		w := d.Files[i]
		if f.Name != w.Name || f.Type != w.Type || f.SHA256 != w.SHA256 || f.NDJSON != string(w.Data) {
			t.Errorf("file %d = %+v", i, f)
		}
	}
}

func TestPushAnswers(t *testing.T) {
	const phi = "Ada Lovelace, born 1985-12-10"
	problem := func(status int, typ string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "title": "rejected", "status": status, "detail": "member " + phi})
		}
	}
	reply := func(status int, body string, headers ...string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			for i := 0; i+1 < len(headers); i += 2 {
				w.Header().Set(headers[i], headers[i+1])
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write([]byte(body))
		}
	}
	ack := `{"status":"acknowledged","receipt_id":"r-1","received_at":"2025-06-01T12:00:01Z"}`

	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter)
		want       Receipt
		class      fault.Class
		typ        string
		retryAfter time.Duration
		msgHas     string
	}{
		{name: "200 acknowledged", answer: reply(200, ack),
			want: Receipt{Status: StatusAcknowledged, ReceiptID: "r-1", ReceivedAt: now.Add(time.Second), StatusCode: 200}},
		{name: "201 duplicate in body", answer: reply(201, `{"status":"acknowledged","receipt_id":"r-1","duplicate":true}`),
			want: Receipt{Status: StatusAcknowledged, ReceiptID: "r-1", Duplicate: true, StatusCode: 201}},
		{name: "200 duplicate by header", answer: reply(200, ack, "Idempotent-Replayed", "true"),
			want: Receipt{Status: StatusAcknowledged, ReceiptID: "r-1", ReceivedAt: now.Add(time.Second), Duplicate: true, StatusCode: 200}},
		{name: "202 accepted", answer: reply(202, `{"status":"accepted"}`), want: Receipt{Status: StatusAccepted, StatusCode: 202}},
		{name: "202 empty body", answer: reply(202, ""), want: Receipt{Status: StatusAccepted, StatusCode: 202}},
		{name: "200 not JSON", answer: reply(200, "<html>ok</html>"), class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "200 empty", answer: reply(200, ""), class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "200 no receipt id", answer: reply(200, `{"status":"acknowledged"}`), class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "200 unknown status", answer: reply(200, `{"status":"maybe","receipt_id":"r"}`), class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "200 bad received_at", answer: reply(200, `{"status":"acknowledged","receipt_id":"r","received_at":"yesterday"}`),
			class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "204", answer: reply(204, ""), class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "redirect not followed", answer: reply(307, "", "Location", "http://127.0.0.1:1/elsewhere"),
			class: fault.Validation, typ: ErrTypeBadResponse},
		{name: "500", answer: reply(500, "oops"), class: fault.Downstream, typ: ErrTypeUnavailable},
		{name: "503 with Retry-After: throttled", answer: reply(503, "", "Retry-After", "7"), class: fault.Downstream, typ: ErrTypeThrottled, retryAfter: 7 * time.Second},
		{name: "503", answer: reply(503, ""), class: fault.Downstream, typ: ErrTypeUnavailable},
		{name: "408", answer: reply(408, ""), class: fault.Downstream, typ: ErrTypeUnavailable},
		{name: "429 seconds", answer: reply(429, "", "Retry-After", "120"), class: fault.Downstream, typ: ErrTypeThrottled, retryAfter: 2 * time.Minute},
		{name: "429 HTTP-date", answer: reply(429, "", "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)),
			class: fault.Downstream, typ: ErrTypeThrottled, retryAfter: 90 * time.Second},
		{name: "429 epoch millis", answer: reply(429, "", "Retry-After", strconv.FormatInt(now.Add(5*time.Minute).UnixMilli(), 10)),
			class: fault.Downstream, typ: ErrTypeThrottled, retryAfter: 5 * time.Minute},
		{name: "429 epoch seconds clamped", answer: reply(429, "", "Retry-After", strconv.FormatInt(now.Add(3*time.Hour).Unix(), 10)),
			class: fault.Downstream, typ: ErrTypeThrottled, retryAfter: httpclass.MaxRetryAfter},
		{name: "429 without Retry-After", answer: reply(429, ""), class: fault.Downstream, typ: ErrTypeThrottled},
		{name: "401", answer: problem(401, "urn:partner:bad-token"), class: fault.Auth, typ: ErrTypeAuth},
		{name: "403 bad signature", answer: problem(403, "urn:partner:invalid-signature"), class: fault.Auth, typ: ErrTypeAuth,
			msgHas: `problem type "urn:partner:invalid-signature"`},
		{name: "400", answer: problem(400, "urn:partner:malformed"), class: fault.Business, typ: transfer.ErrorPartnerRejected},
		{name: "409", answer: problem(409, "urn:partner:conflict"), class: fault.Business, typ: transfer.ErrorPartnerRejected},
		{name: "422 with problem type", answer: problem(422, "urn:partner:digest-mismatch"), class: fault.Business, typ: transfer.ErrorPartnerRejected,
			msgHas: `answered 422 (problem type "urn:partner:digest-mismatch")`},
		{name: "404 plain text", answer: reply(404, phi), class: fault.Business, typ: transfer.ErrorPartnerRejected},
		{name: "422 problem type with spaces ignored", answer: problem(422, phi), class: fault.Business, typ: transfer.ErrorPartnerRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery()
			answered := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkRequest(t, r, d)
				sw := &statusWriter{ResponseWriter: w}
				tt.answer(sw)
				answered = sw.status
			}))
			defer srv.Close()
			p := &HTTPPusher{Client: srv.Client(), Now: func() time.Time { return now }}
			got, err := p.Push(context.Background(), Partner{ID: "acme", PushURL: srv.URL + "/exports"}, d)
			if tt.class == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Fatalf("receipt %+v, want %+v", got, tt.want)
				}
				return
			}
			fe, ok := fault.As(err)
			if !ok || fe.Class != tt.class || fe.Type != tt.typ || fe.RetryAfter != tt.retryAfter {
				t.Fatalf("err = %v (retry after %v), want %s/%s after %v", err, fe.RetryAfter, tt.class, tt.typ, tt.retryAfter)
			}
			if fe.Status != answered || answered == 0 {
				t.Errorf("error carries status %d, the partner answered %d", fe.Status, answered)
			}
			if tt.class.Retryable() != (tt.class == fault.Downstream) {
				t.Fatal("only downstream answers should be retryable")
			}
			if strings.Contains(err.Error(), "Lovelace") || strings.Contains(err.Error(), "1985") {
				t.Fatalf("error leaks body content: %v", err)
			}
			if !strings.Contains(err.Error(), "partner acme") || !strings.Contains(err.Error(), tt.msgHas) {
				t.Fatalf("error %q should name the partner and %q", err, tt.msgHas)
			}
		})
	}
}

func TestPushTransportFailures(t *testing.T) {
	// A server that never answers in time.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	// A server that is gone.
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()

	tests := []struct {
		name    string
		partner Partner
	}{
		{"partner timeout", Partner{ID: "slow", PushURL: slow.URL, Timeout: 100 * time.Millisecond, AllowPrivateNetwork: true}},
		{"connection refused", Partner{ID: "gone", PushURL: goneURL, AllowPrivateNetwork: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := NewHTTPPusher(nil).Push(context.Background(), tt.partner, delivery())
			if fe, ok := fault.As(err); !ok || fe.Class != fault.Transport || fe.Type != ErrTypeUnreachable {
				t.Fatalf("err = %v, want transport", err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("the partner timeout was not applied")
			}
		})
	}
}

func TestPushRefusesBadDeliveries(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	tests := []struct {
		name   string
		mutate func(*Delivery)
	}{
		{"corrupt file", func(d *Delivery) { d.Files[0].Data = []byte("tampered\n") }},
		{"not UTF-8", func(d *Delivery) { d.Files[0] = file("Patient.ndjson", "Patient", "\xff\xfe\n") }},
		{"no idempotency key", func(d *Delivery) { d.IdempotencyKey = "" }},
		{"no signature", func(d *Delivery) { d.Signature = "" }},
		{"no transfer id", func(d *Delivery) { d.TransferID = "" }},
		{"nameless file", func(d *Delivery) { d.Files[1].Name = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery()
			tt.mutate(&d)
			_, err := NewHTTPPusher(srv.Client()).Push(context.Background(), Partner{ID: "a", PushURL: srv.URL}, d)
			if fe, ok := fault.As(err); !ok || fe.Class != fault.Validation || fe.Type != ErrTypeBadDelivery {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if hits.Load() != 0 {
		t.Fatal("a bad delivery was sent")
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
