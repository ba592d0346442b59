// Package sandbox is a simulated partner payer that receives signed-push
// exports (the protocol of connectors.HTTPPusher). `p2p dev` registers it
// as partner "sandbox", and tests use it to count deliveries.
//
// It does what a careful receiver would: it requires an Idempotency-Key,
// verifies the manifest's JWS against our JWKS (fetched from JWKSURL,
// cached, refetched once when a kid is unknown), checks that the files are
// exactly the manifest's and match its digests, and acknowledges with a
// receipt. A repeat with a known Idempotency-Key gets the first receipt
// back and is counted as a duplicate, never as a second delivery: that is
// how "each export is received exactly once" is checked across crashes and
// retries.
//
// It keeps counts and digests only, never the PHI in the files. With a
// Dir, its log survives kill -9: every record is an append to an NDJSON
// file, fsynced before the answer, replayed on New.
//
// Routes: POST /exports, GET /deliveries (JSON array, arrival order).
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/signing"
)

// LogFile is the name of the delivery log inside Options.Dir.
const LogFile = "deliveries.ndjson"

// Problem types of the sandbox's error answers (RFC 9457 "type").
const (
	ProblemMissingKey       = "urn:p2p:sandbox:missing-idempotency-key" // 400
	ProblemMalformed        = "urn:p2p:sandbox:malformed-request"       // 400
	ProblemTooLarge         = "urn:p2p:sandbox:request-too-large"       // 413
	ProblemInvalidSignature = "urn:p2p:sandbox:invalid-signature"       // 403
	ProblemUnknownKey       = "urn:p2p:sandbox:unknown-key"             // 403
	ProblemInvalidManifest  = "urn:p2p:sandbox:invalid-manifest"        // 422
	ProblemFileMismatch     = "urn:p2p:sandbox:file-mismatch"           // 422: file set differs from the manifest
	ProblemDigestMismatch   = "urn:p2p:sandbox:digest-mismatch"         // 422
	ProblemKeyReused        = "urn:p2p:sandbox:idempotency-key-reused"  // 422: same key, other export
	ProblemJWKSUnavailable  = "urn:p2p:sandbox:jwks-unavailable"        // 503
	ProblemStorage          = "urn:p2p:sandbox:storage-failure"         // 500
	ProblemInjected         = "urn:p2p:sandbox:injected-fault"          // whatever status was injected
)

// MaxBody bounds a delivery's request body.
const MaxBody = 64 << 20

// Options configure a sandbox partner.
type Options struct {
	Dir        string       // where the delivery log lives; "" = memory only
	JWKSURL    string       // our /.well-known/jwks.json; required
	HTTPClient *http.Client // for the JWKS; nil = a client with a 10 s timeout
	Logger     *zap.Logger  // nil = no logs
	// AckURL, if set, makes the sandbox acknowledge later, as some
	// partners do: it answers a delivery 202 accepted, then POSTs its
	// signed receipt to AckURL(transferID) (our POST
	// /v1/transfers/{id}/ack), retrying until it is taken.
	AckURL func(transferID string) string
}

// Delivery is one export the sandbox received: counts and digests only.
type Delivery struct {
	IdempotencyKey string    `json:"idempotency_key"`
	TransferID     string    `json:"transfer_id"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	KID            string    `json:"kid"`
	Files          int       `json:"files"`
	Resources      int       `json:"resources"`
	ReceivedAt     time.Time `json:"received_at"`
	ReceiptID      string    `json:"receipt_id"`
	Duplicates     int       `json:"duplicates"` // repeats of the same Idempotency-Key since
}

// Failure is an answer to inject instead of the normal one.
type Failure struct {
	Status     int    // e.g. 503, 429, 422; not a valid status = 500
	RetryAfter string // Retry-After header value, if any
	// AfterRecord records the delivery first, then answers Status: the
	// partner has the export but its acknowledgement is lost, so the
	// sender retries and must get a duplicate receipt.
	AfterRecord bool
}

// Partner is a running sandbox partner. It is safe for concurrent use.
type Partner struct {
	jwksURL string
	client  *http.Client
	log     *zap.Logger

	mu         sync.Mutex
	deliveries []Delivery
	byKey      map[string]int // idempotency key → index in deliveries
	file       *os.File       // nil in memory-only mode
	size       int64          // bytes of whole records in file
	faults     []Failure

	ackURL   func(string) string
	acks     sync.WaitGroup // acknowledgements being posted
	stop     chan struct{}  // closed by Close: pending acknowledgements give up
	stopOnce sync.Once
	keys     signing.RemoteKeys // the sender's JWKS
	signer   *signing.Signer    // signs receipts; published at /.well-known/jwks.json
}

// New starts a sandbox partner. With o.Dir it creates the directory (0700)
// and replays its delivery log; a record torn by a crash (the last line,
// never acknowledged) is dropped.
func New(o Options) (*Partner, error) {
	if o.JWKSURL == "" {
		return nil, errors.New("sandbox: JWKSURL is required")
	}
	p := &Partner{jwksURL: o.JWKSURL, client: o.HTTPClient, log: o.Logger, byKey: map[string]int{}, ackURL: o.AckURL, stop: make(chan struct{})}
	if p.client == nil {
		p.client = &http.Client{Timeout: 10 * time.Second}
	}
	p.keys.Client = p.client
	var err error
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, err
		}
		p.signer, err = signing.LoadOrCreate(filepath.Join(o.Dir, "receipt-key.jwk"))
	} else {
		p.signer, err = signing.Generate()
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: receipt key: %w", err)
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	if o.Dir != "" {
		if err := p.open(o.Dir); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Close closes the delivery log. Deliveries received afterwards fail.
func (p *Partner) Close() error {
	p.stopOnce.Do(func() { close(p.stop) })
	p.acks.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file == nil {
		return nil
	}
	err := p.file.Close()
	p.file = nil
	p.size = -1 // closed, as opposed to memory-only
	return err
}

// Deliveries returns a copy of every delivery, in arrival order.
func (p *Partner) Deliveries() []Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Delivery{}, p.deliveries...)
}

// FailNext makes the next n requests to POST /exports answer f instead.
func (p *Partner) FailNext(n int, f Failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.faults = append(p.faults, f)
	}
}

// Handler serves POST /exports, GET /deliveries and the sandbox's own keys
// at GET /.well-known/jwks.json (its receipts are signed with them).
func (p *Partner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /exports", p.receive)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		jwks, err := p.signer.PublicJWKS()
		if err != nil {
			problem(w, http.StatusInternalServerError, ProblemStorage, "no keys")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	mux.HandleFunc("GET /deliveries", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Deliveries())
	})
	return mux
}

// wireDelivery is the request body of the signed-push protocol.
type wireDelivery struct {
	TransferID string `json:"transfer_id"`
	Signature  string `json:"signature"`
	Files      []struct {
		Name   string `json:"name"`
		Type   string `json:"type"`
		SHA256 string `json:"sha256"`
		NDJSON string `json:"ndjson"`
	} `json:"files"`
}

// rejection is a 4xx/5xx answer with a problem type; detail never holds
// content of the request.
type rejection struct {
	status int
	typ    string
	detail string
}

func (p *Partner) receive(w http.ResponseWriter, r *http.Request) {
	injected, hasFault := p.takeFault()
	if hasFault && !injected.AfterRecord {
		p.answerFault(w, injected)
		return
	}
	d, rej := p.check(w, r)
	if rej != nil {
		p.log.Warn("sandbox rejected a delivery", zap.String("problem", rej.typ), zap.Int("status", rej.status),
			zap.String("transfer_id", d.TransferID))
		problem(w, rej.status, rej.typ, rej.detail)
		return
	}
	got, dup, rej := p.record(d)
	if rej != nil {
		problem(w, rej.status, rej.typ, rej.detail)
		return
	}
	p.log.Info("sandbox received a delivery", zap.String("transfer_id", got.TransferID), zap.String("receipt_id", got.ReceiptID),
		zap.String("kid", got.KID), zap.Int("files", got.Files), zap.Int("resources", got.Resources), zap.Bool("duplicate", dup))
	if hasFault {
		p.answerFault(w, injected)
		return
	}
	if dup {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	receipt, err := p.signReceipt(got)
	if err != nil {
		problem(w, http.StatusInternalServerError, ProblemStorage, "the receipt could not be signed")
		return
	}
	if p.ackURL != nil {
		// Acknowledge later: the first time a delivery is received (a
		// repeat is answered with the same 202).
		if !dup {
			p.acks.Add(1)
			go p.postAck(got.TransferID, receipt)
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"status": "accepted", "receipt_id": got.ReceiptID, "duplicate": dup})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "acknowledged", "receipt_id": got.ReceiptID,
		"received_at": got.ReceivedAt.Format(time.RFC3339), "duplicate": dup,
		"receipt_jws": receipt,
	})
}

// check validates a delivery request and returns what to record.
func (p *Partner) check(w http.ResponseWriter, r *http.Request) (Delivery, *rejection) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 255 {
		return Delivery{}, &rejection{http.StatusBadRequest, ProblemMissingKey, "an Idempotency-Key header of 1-255 characters is required"}
	}
	var body wireDelivery
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody)).Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return Delivery{}, &rejection{http.StatusRequestEntityTooLarge, ProblemTooLarge, fmt.Sprintf("bodies are limited to %d bytes", MaxBody)}
		}
		return Delivery{}, &rejection{http.StatusBadRequest, ProblemMalformed, "the body is not a JSON delivery"}
	}
	d := Delivery{IdempotencyKey: key, TransferID: body.TransferID}
	if body.TransferID == "" || body.Signature == "" {
		return d, &rejection{http.StatusBadRequest, ProblemMalformed, "transfer_id and signature are required"}
	}
	payload, kid, err := p.verify(r.Context(), body.Signature)
	switch {
	case errors.Is(err, errJWKS):
		return d, &rejection{http.StatusServiceUnavailable, ProblemJWKSUnavailable, "the sender's JWKS could not be fetched"}
	case errors.Is(err, signing.ErrUnknownKID):
		return d, &rejection{http.StatusForbidden, ProblemUnknownKey, "the signing key is not in the sender's JWKS"}
	case err != nil:
		return d, &rejection{http.StatusForbidden, ProblemInvalidSignature, "the manifest signature does not verify"}
	}
	man, err := export.ParseManifest(payload)
	if err != nil {
		return d, &rejection{http.StatusUnprocessableEntity, ProblemInvalidManifest, "the signed payload is not a manifest"}
	}
	if man.TransferID != body.TransferID {
		return d, &rejection{http.StatusUnprocessableEntity, ProblemInvalidManifest, "the manifest is for another transfer"}
	}
	if len(body.Files) != len(man.Files) {
		return d, &rejection{http.StatusUnprocessableEntity, ProblemFileMismatch,
			fmt.Sprintf("the manifest lists %d files, the request carries %d", len(man.Files), len(body.Files))}
	}
	entries := map[string]export.ManifestFile{}
	for _, f := range man.Files {
		entries[f.Name] = f
	}
	seen := map[string]bool{}
	d.Files = len(body.Files)
	for _, f := range body.Files {
		e, ok := entries[f.Name]
		if !ok || seen[f.Name] || e.Type != f.Type {
			return d, &rejection{http.StatusUnprocessableEntity, ProblemFileMismatch,
				fmt.Sprintf("file %.100q is not in the manifest as sent", f.Name)}
		}
		seen[f.Name] = true
		data := []byte(f.NDJSON)
		if export.Digest(data) != e.SHA256 || f.SHA256 != e.SHA256 || int64(len(data)) != e.Bytes ||
			bytes.Count(data, []byte("\n")) != e.Count {
			return d, &rejection{http.StatusUnprocessableEntity, ProblemDigestMismatch,
				fmt.Sprintf("file %.100q does not match its manifest entry", f.Name)}
		}
		d.Resources += e.Count
	}
	d.ManifestSHA256 = export.Digest(payload)
	d.KID = kid
	return d, nil
}

var errJWKS = errors.New("sandbox: JWKS unavailable")

// verify checks the JWS against the cached JWKS, refetching it once if the
// kid is unknown (the sender may have rotated its key).
func (p *Partner) verify(ctx context.Context, compact string) ([]byte, string, error) {
	payload, kid, err := p.keys.VerifyFor(ctx, signing.Manifest, p.jwksURL, compact)
	if errors.Is(err, signing.ErrJWKSUnavailable) {
		return nil, "", fmt.Errorf("%w: %v", errJWKS, err)
	}
	return payload, kid, err
}

// postAck posts a signed receipt to the sender until it is taken (2xx), or
// refused for good (4xx other than 409 and 429), or the sandbox closes.
func (p *Partner) postAck(transferID, receipt string) {
	defer p.acks.Done()
	body, _ := json.Marshal(map[string]string{"receipt_jws": receipt})
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		select {
		case <-p.stop:
			return
		case <-time.After(wait):
		}
		req, err := http.NewRequest(http.MethodPost, p.ackURL(transferID), bytes.NewReader(body))
		if err != nil {
			p.log.Error("sandbox acknowledgement", zap.Error(err))
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.client.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			p.log.Info("sandbox acknowledged a delivery", zap.String("transfer_id", transferID))
			return
		case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusTooManyRequests:
			p.log.Warn("sandbox acknowledgement refused", zap.String("transfer_id", transferID), zap.Int("status", resp.StatusCode))
			return
		}
	}
}

// signReceipt signs the receipt of delivery d: the same for every repeat
// of its idempotency key, but for the signature's randomness.
func (p *Partner) signReceipt(d Delivery) (string, error) {
	b, err := json.Marshal(connectors.ReceiptClaims{
		ReceiptID: d.ReceiptID, TransferID: d.TransferID, ManifestSHA256: d.ManifestSHA256,
		IdempotencyKey: d.IdempotencyKey, ReceivedAt: d.ReceivedAt.UTC(),
	})
	if err != nil {
		return "", err
	}
	return p.signer.Sign(b)
}

// logRecord is one line of the delivery log.
type logRecord struct {
	Op       string    `json:"op"` // "delivery" or "duplicate"
	Delivery *Delivery `json:"delivery,omitempty"`
	Key      string    `json:"idempotency_key,omitempty"` // of a duplicate
	At       time.Time `json:"at,omitzero"`               // of a duplicate
}

// record stores d, or counts it as a duplicate of the delivery with the
// same key, durably before returning. It holds the lock across the write
// so two concurrent requests with one key cannot both become deliveries.
func (p *Partner) record(d Delivery) (Delivery, bool, *rejection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	if i, ok := p.byKey[d.IdempotencyKey]; ok {
		prev := p.deliveries[i]
		if prev.ManifestSHA256 != d.ManifestSHA256 {
			return Delivery{}, false, &rejection{http.StatusUnprocessableEntity, ProblemKeyReused,
				"this Idempotency-Key was used for another export"}
		}
		if err := p.appendLocked(logRecord{Op: "duplicate", Key: d.IdempotencyKey, At: now}); err != nil {
			return Delivery{}, false, p.storageFailure(err)
		}
		p.deliveries[i].Duplicates++
		return p.deliveries[i], true, nil
	}
	d.ReceivedAt = now
	d.ReceiptID = "rcpt-" + rand.Text()
	if err := p.appendLocked(logRecord{Op: "delivery", Delivery: &d}); err != nil {
		return Delivery{}, false, p.storageFailure(err)
	}
	p.byKey[d.IdempotencyKey] = len(p.deliveries)
	p.deliveries = append(p.deliveries, d)
	return d, false, nil
}

func (p *Partner) storageFailure(err error) *rejection {
	p.log.Error("sandbox could not persist a delivery", zap.Error(err))
	return &rejection{http.StatusInternalServerError, ProblemStorage, "the delivery could not be stored"}
}

func (p *Partner) takeFault() (Failure, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.faults) == 0 {
		return Failure{}, false
	}
	f := p.faults[0]
	p.faults = p.faults[1:]
	return f, true
}

func (p *Partner) answerFault(w http.ResponseWriter, f Failure) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	status := f.Status
	if status < 100 || status > 999 {
		status = http.StatusInternalServerError
	}
	problem(w, status, ProblemInjected, "fault injected by the test")
}

// open creates dir and the log, and replays the log into memory.
func (p *Partner) open(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox: create dir: %w", err)
	}
	path := filepath.Join(dir, LogFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sandbox: open log: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		_ = f.Close() // the error returned is the one that matters
		return fmt.Errorf("sandbox: read log: %w", err)
	}
	good, err := p.replay(data)
	if err != nil {
		_ = f.Close() // the error returned is the one that matters
		return err
	}
	if good < int64(len(data)) {
		// A torn last record: its request was never answered, so the
		// sender will retry. Cut it off so the next record starts clean.
		if err := f.Truncate(good); err != nil {
			_ = f.Close() // the error returned is the one that matters
			return fmt.Errorf("sandbox: truncate torn log record: %w", err)
		}
		p.log.Warn("sandbox dropped a torn record at the end of its log", zap.Int64("bytes", int64(len(data))-good))
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the error returned is the one that matters
		return fmt.Errorf("sandbox: sync log: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()  // make a newly created log's name durable; best effort
		_ = d.Close() // opened read-only: nothing to lose
	}
	p.file, p.size = f, good
	return nil
}

// replay rebuilds the deliveries from the log and returns the length of
// its whole records. Only the last line may be torn; a bad line before it
// is corruption and an error.
func (p *Partner) replay(data []byte) (int64, error) {
	var off int64
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return off, nil // torn: no newline, never fsynced as a whole
		}
		var rec logRecord
		if err := json.Unmarshal(data[:i], &rec); err != nil {
			if i == len(data)-1 {
				return off, nil // torn last record that happens to end in '\n'
			}
			return 0, fmt.Errorf("sandbox: corrupt log record at byte %d", off)
		}
		switch {
		case rec.Op == "delivery" && rec.Delivery != nil && rec.Delivery.IdempotencyKey != "":
			if _, dup := p.byKey[rec.Delivery.IdempotencyKey]; !dup {
				p.byKey[rec.Delivery.IdempotencyKey] = len(p.deliveries)
				p.deliveries = append(p.deliveries, *rec.Delivery)
			}
		case rec.Op == "duplicate":
			if j, ok := p.byKey[rec.Key]; ok {
				p.deliveries[j].Duplicates++
			}
		default:
			return 0, fmt.Errorf("sandbox: unknown log record at byte %d", off)
		}
		off += int64(i) + 1
		data = data[i+1:]
	}
	return off, nil
}

// appendLocked writes one record and fsyncs it. On failure it cuts the
// log back to its last whole record. Memory-only partners write nothing.
func (p *Partner) appendLocked(rec logRecord) error {
	if p.file == nil {
		if p.size < 0 {
			return errors.New("sandbox: closed")
		}
		return nil
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := p.file.Write(b); err != nil {
		_ = p.file.Truncate(p.size)
		return err
	}
	if err := p.file.Sync(); err != nil {
		_ = p.file.Truncate(p.size)
		return err
	}
	p.size += int64(len(b))
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func problem(w http.ResponseWriter, status int, typ, detail string) {
	b, _ := json.Marshal(map[string]any{"type": typ, "title": http.StatusText(status), "status": status, "detail": detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(b)
}
