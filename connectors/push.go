package connectors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/p2p-payer/p2p/connectors/httpclass"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// Receipt statuses.
const (
	StatusAcknowledged = "acknowledged" // the partner has the export and says so
	StatusAccepted     = "accepted"     // the partner took it; its acknowledgement comes later
)

// Stable fault types of a push. Rejections use fault.TypePartnerRejected,
// the error type the transfer fails with.
const (
	ErrTypeUnreachable = "partner_unreachable"     // transport: connection, DNS, timeout
	ErrTypeUnavailable = fault.TypeUnavailable     // downstream: 5xx, 408
	ErrTypeThrottled   = "partner_throttled"       // downstream: 429, 503 with Retry-After
	ErrTypeAuth        = fault.TypePartnerAuth     // auth: 401, 403
	ErrTypeRejected    = fault.TypePartnerRejected // business: other 4xx
	ErrTypeBadResponse = fault.TypeBadResponse     // validation: a 2xx/3xx we cannot use
	ErrTypeBadDelivery = "invalid_delivery"        // validation: our delivery is not sendable
)

// Delivery is a signed export to push to a partner.
type Delivery struct {
	TransferID     string
	IdempotencyKey string // the same for every retry of the same export
	Signature      string // compact JWS whose payload is the export manifest
	Files          []DeliveryFile
}

// DeliveryFile is one NDJSON file of a delivery.
type DeliveryFile struct {
	Name   string // as in the manifest, e.g. "Patient.ndjson"
	Type   string // resource type
	SHA256 string // hex digest of Data, as in the manifest
	Data   []byte // NDJSON (UTF-8)
}

// Receipt is the partner's answer to a delivery.
type Receipt struct {
	Status     string // StatusAcknowledged or StatusAccepted
	ReceiptID  string
	ReceivedAt time.Time // zero if the partner did not say
	Duplicate  bool      // the partner had this idempotency key already
	StatusCode int       // the HTTP status of the answer
	// Signed is the partner's signed receipt (compact JWS of ReceiptClaims
	// under a key of its JWKS), if it sent one; see VerifyReceipt.
	Signed string
}

// Pusher delivers signed exports to partners that take pushed exports.
type Pusher interface {
	Push(ctx context.Context, p Partner, d Delivery) (Receipt, error)
}

// HTTPPusher pushes deliveries with the signed-push protocol:
//
//	POST {PushURL}
//	Content-Type: application/json
//	Idempotency-Key: {key}
//
//	{"transfer_id": "…",
//	 "signature": "<compact JWS; its payload is the manifest>",
//	 "files": [{"name": "Patient.ndjson", "type": "Patient", "sha256": "<hex>", "ndjson": "<the NDJSON text>"}]}
//
// The receiver verifies the JWS against our JWKS, checks each file against
// the manifest's digests, and answers:
//
//   - 200 or 201 {"status":"acknowledged","receipt_id":"…","received_at":"<RFC 3339>","duplicate":false,
//     "receipt_jws":"<optional compact JWS of ReceiptClaims under the partner's JWKS>"}:
//     received. A repeat with a known Idempotency-Key returns the first
//     receipt with "duplicate": true (or header Idempotent-Replayed: true)
//     and is not a second delivery.
//   - 202 {"status":"accepted"}: taken; the acknowledgement comes later, as
//     the partner's signed receipt (a compact JWS of ReceiptClaims under a
//     key of its JWKS) POSTed to our /v1/transfers/{transfer_id}/ack as
//     {"receipt_jws": "…"}.
//   - errors as application/problem+json with a stable "type".
//
// Classification: connection failures and timeouts are fault.Transport;
// 5xx and 408 fault.Downstream; 429 fault.Downstream with RetryAfter from
// Retry-After; 401/403 fault.Auth; other 4xx fault.Business with type
// partner_rejected; redirects (not followed: exports must not be sent on
// to another host) and unusable 2xx bodies fault.Validation. Messages name
// the partner, the status and the problem type, never body content.
//
// Each partner is called through its own egress client (Partner.Egress):
// its push_url's address is checked when dialled (private addresses only
// with allow_private_network), no Authorization header is ever sent, and
// an answer longer than 1 MiB is response_too_large.
type HTTPPusher struct {
	// Client, if set, makes every call as it is (tests); nil: each
	// partner's egress client.
	Client *http.Client
	// Resolver resolves partners' host names for their egress clients;
	// nil: the system's.
	Resolver egress.Resolver
	Now      func() time.Time // for Retry-After dates; nil: time.Now

	mu      sync.Mutex
	clients map[string]partnerClient
}

// partnerClient is a partner's egress client, built for the registry
// entry it was built from.
type partnerClient struct {
	p Partner
	c *http.Client
}

var _ Pusher = (*HTTPPusher)(nil)

// NewHTTPPusher returns an HTTPPusher using c for every call, or each
// partner's egress client if c is nil.
func NewHTTPPusher(c *http.Client) *HTTPPusher {
	return &HTTPPusher{Client: c}
}

// NewHTTPClient returns a client without an egress policy: bounded
// connect, TLS and idle times, an overall cap of MaxTimeout, and no
// redirects. It is for the sandbox partner and tests, which play the
// partner's side; our own calls to partners go through Partner.Egress.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: MaxTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   8,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: noRedirect,
	}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// maxResponse bounds how much of a partner's answer we read.
const maxResponse = 1 << 20

type wireFile struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	SHA256 string `json:"sha256"`
	NDJSON string `json:"ndjson"`
}

type wireDelivery struct {
	TransferID string     `json:"transfer_id"`
	Signature  string     `json:"signature"`
	Files      []wireFile `json:"files"`
}

type wireReceipt struct {
	Status     string `json:"status"`
	ReceiptID  string `json:"receipt_id"`
	ReceivedAt string `json:"received_at"`
	Duplicate  bool   `json:"duplicate"`
	Signed     string `json:"receipt_jws"`
}

// Push delivers d to p.PushURL within p's timeout.
func (h *HTTPPusher) Push(ctx context.Context, p Partner, d Delivery) (Receipt, error) {
	body, err := encodeDelivery(d)
	if err != nil {
		return Receipt{}, err
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.PushURL, bytes.NewReader(body))
	if err != nil {
		return Receipt{}, fault.Wrap(fault.Validation, ErrTypeBadDelivery, "partner "+p.ID+": bad push_url", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("Idempotency-Key", d.IdempotencyKey)
	req.Header.Set("User-Agent", "p2p")

	// A copy of the client that never follows redirects, whatever client
	// we were given: a redirect must not carry PHI to another host.
	c := *h.client(p)
	c.CheckRedirect = noRedirect
	resp, err := c.Do(req)
	if f, ok := egress.Fault(err); ok {
		return Receipt{}, f // refused: nothing was sent
	}
	if err != nil {
		return Receipt{}, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+p.ID+": push failed", err)
	}
	defer resp.Body.Close()
	raw, err := egress.ReadAll(resp.Body, maxResponse, p.ID)
	if f, ok := egress.Fault(err); ok {
		return Receipt{}, f
	}
	if err != nil {
		return Receipt{}, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+p.ID+": reading the answer", err)
	}
	return h.classify(p, resp, raw)
}

// client is the client of calls to p: h.Client, or p's egress client,
// built again when p's registry entry changed.
func (h *HTTPPusher) client(p Partner) *http.Client {
	if h.Client != nil {
		return h.Client
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if pc, ok := h.clients[p.ID]; ok && reflect.DeepEqual(pc.p, p) {
		return pc.c
	}
	pol := p.Egress()
	pol.MaxResponseBytes = maxResponse
	pol.Timeout = MaxTimeout
	pol.Resolver = h.Resolver
	c := egress.NewClient(pol)
	if old, ok := h.clients[p.ID]; ok {
		old.c.CloseIdleConnections()
	}
	if h.clients == nil {
		h.clients = map[string]partnerClient{}
	}
	h.clients[p.ID] = partnerClient{p: p, c: c}
	return c
}

func (h *HTTPPusher) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// encodeDelivery checks d and writes the request body. It refuses files
// whose data does not match their digest (a corrupt artifact would only be
// rejected by the partner) or is not UTF-8 (JSON would alter it).
func encodeDelivery(d Delivery) ([]byte, error) {
	bad := func(msg string) error { return fault.New(fault.Validation, ErrTypeBadDelivery, msg) }
	switch {
	case d.TransferID == "":
		return nil, bad("delivery has no transfer id")
	case d.IdempotencyKey == "":
		return nil, bad("delivery has no idempotency key")
	case d.Signature == "":
		return nil, bad("delivery has no signature")
	}
	w := wireDelivery{TransferID: d.TransferID, Signature: d.Signature, Files: make([]wireFile, 0, len(d.Files))}
	for _, f := range d.Files {
		sum := sha256.Sum256(f.Data)
		switch {
		case f.Name == "":
			return nil, bad("delivery file has no name")
		case hex.EncodeToString(sum[:]) != f.SHA256:
			return nil, bad("delivery file " + f.Name + " does not match its digest")
		case !utf8.Valid(f.Data):
			return nil, bad("delivery file " + f.Name + " is not UTF-8")
		}
		w.Files = append(w.Files, wireFile{Name: f.Name, Type: f.Type, SHA256: f.SHA256, NDJSON: string(f.Data)})
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, ErrTypeBadDelivery, "encoding the delivery", err)
	}
	return b, nil
}

// classify turns the partner's answer into a receipt or a classified error
// that carries the HTTP status.
func (h *HTTPPusher) classify(p Partner, resp *http.Response, raw []byte) (Receipt, error) {
	r, err := h.classifyStatus(p, resp, raw)
	if f, ok := fault.As(err); ok {
		f.Status = resp.StatusCode
	}
	if err == nil {
		r.StatusCode = resp.StatusCode
	}
	return r, err
}

// pushStatusTypes are a push's fault types in the shared status table.
var pushStatusTypes = httpclass.Types{Auth: ErrTypeAuth, Throttled: ErrTypeThrottled, Unavailable: ErrTypeUnavailable,
	Rejected: ErrTypeRejected, RejectClass: fault.Business, Unexpected: ErrTypeBadResponse}

// classifyStatus reads a 200/201 (taken) or 202 (accepted) as a receipt;
// every other status goes by the shared table (httpclass).
func (h *HTTPPusher) classifyStatus(p Partner, resp *http.Response, raw []byte) (Receipt, error) {
	switch code := resp.StatusCode; code {
	case http.StatusOK, http.StatusCreated:
		return parseReceipt(p, resp, raw, false)
	case http.StatusAccepted:
		return parseReceipt(p, resp, raw, true)
	default: // 1xx leftovers, 204 and other 2xx and 3xx are answers we cannot use
		msg := fmt.Sprintf("partner %s answered %d%s", p.ID, code, problemType(resp.Header, raw))
		return Receipt{}, pushStatusTypes.Error(code, resp.Header, h.now(), msg, nil)
	}
}

func parseReceipt(p Partner, resp *http.Response, raw []byte, accepted bool) (Receipt, error) {
	bad := func(why string) (Receipt, error) {
		return Receipt{}, fault.New(fault.Validation, ErrTypeBadResponse,
			fmt.Sprintf("partner %s answered %d with %s", p.ID, resp.StatusCode, why))
	}
	var w wireReceipt
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &w); err != nil {
			return bad("a body that is not a JSON receipt")
		}
	} else if !accepted {
		return bad("no receipt")
	}
	r := Receipt{
		ReceiptID: w.ReceiptID, Signed: w.Signed,
		Duplicate: w.Duplicate || strings.EqualFold(resp.Header.Get("Idempotent-Replayed"), "true"),
	}
	if w.ReceivedAt != "" {
		t, err := time.Parse(time.RFC3339, w.ReceivedAt)
		if err != nil {
			return bad("a received_at that is not RFC 3339")
		}
		r.ReceivedAt = t
	}
	switch {
	case accepted && (w.Status == "" || w.Status == StatusAccepted):
		r.Status = StatusAccepted
	case !accepted && w.Status == StatusAccepted:
		r.Status = StatusAccepted // taken, acknowledgement later, even if sent as 200
	case !accepted && w.Status == StatusAcknowledged && w.ReceiptID != "":
		r.Status = StatusAcknowledged
	case !accepted && w.Status == StatusAcknowledged:
		return bad("an acknowledgement without a receipt id")
	default:
		return bad(fmt.Sprintf("status %.32q", w.Status))
	}
	return r, nil
}

// problemType returns ` (problem type "…")` when the answer is an RFC 9457
// problem with a plausible type URI, else "". Only the type is taken: the
// title and detail are free text that may echo what we sent.
func problemType(h http.Header, raw []byte) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if !strings.HasSuffix(mt, "json") {
		return ""
	}
	var pr struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &pr) != nil || pr.Type == "" || len(pr.Type) > 200 {
		return ""
	}
	for _, c := range pr.Type {
		if c <= ' ' || c > '~' || c == '"' {
			return ""
		}
	}
	return fmt.Sprintf(" (problem type %q)", pr.Type)
}
