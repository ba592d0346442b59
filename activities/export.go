package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Artifact names and content types of an export.
const (
	ManifestName         = "manifest.json"
	SignatureName        = "manifest.jws"
	contentTypeNDJSON    = "application/fhir+ndjson"
	contentTypeManifest  = "application/json"
	contentTypeSignature = "application/jose"
)

// TransferStore is what the push export's activities use of the store.
type TransferStore interface {
	store.Members       // the member the request resolves to, and exports
	store.Transfers     // the request, and every step recorded
	store.Artifacts     // the export's files, manifest and signature
	store.IdentityGraph // presentations, remembered reviews, links
}

// Transfer holds the activities of a push export (workflows.Transfer):
// ResolveIdentity, CheckConsent, PrepareExport, SendExport, and
// WithdrawExport, which undoes PrepareExport and a served export's
// PrepareServedExport.
type Transfer struct {
	Env
	Store    TransferStore
	Matcher  Matcher // nil: deterministic matching over the store
	Partners Partners
	Pusher   connectors.Pusher
	Signer   Signer
	Source   export.Source

	// ReceiptKeys fetches partners' JWKS, to verify their receipts; nil:
	// a fetcher of its own, public addresses only.
	ReceiptKeys *signing.RemoteKeys

	receiptKeys signing.RemoteKeys
	key         presentationKey
}

// PrepareInput names the transfer to export and the member it resolved to.
type PrepareInput struct {
	TransferID string
	MemberID   string
}

// Prepared is a staged, signed export: the workflow carries these digests,
// never the data.
type Prepared struct {
	Export          transfer.ExportInfo
	SignatureSHA256 string
}

// PrepareExport assembles the member's data within the consent and data
// scope as FHIR NDJSON, stores each file and the manifest by digest, and
// signs the manifest. The build is deterministic, so a retry stores the
// same files; only the (randomised) ECDSA signature differs.
func (a *Transfer) PrepareExport(ctx context.Context, in PrepareInput) (Prepared, error) {
	fail := func(err error) (Prepared, error) { return Prepared{}, appError(ctx, NamePrepareExport, err) }
	// The source may take longer than the heartbeat timeout to answer:
	// heartbeat for as long as the worker works on it.
	defer heartbeat(ctx, heartbeatInterval(ctx))()
	tr, err := a.Store.GetTransfer(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	req, err := a.Store.GetTransferRequest(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	m, err := a.Store.GetMember(ctx, in.MemberID)
	if err != nil {
		return fail(err)
	}
	exp, err := export.Build(ctx, export.Input{
		TransferID: in.TransferID, PartnerID: tr.PartnerID,
		ConsentID: req.Consent.ID, ConsentScope: req.Consent.Scope,
		DataScope: req.DataScope, Member: m, Source: a.Source, CreatedAt: tr.CreatedAt,
	})
	if err != nil {
		return fail(err)
	}
	now := a.now()
	put := func(name, ctype string, data []byte, digest string) error {
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, name)
		}
		return a.Store.PutArtifact(ctx, store.Artifact{
			Digest: digest, TransferID: in.TransferID, Name: name, ContentType: ctype,
			Size: int64(len(data)), Data: data, CreatedAt: now,
		})
	}
	info := transfer.ExportInfo{ManifestSHA256: exp.ManifestSHA256, KID: a.Signer.KID(), ExcludedSensitive: exp.ExcludedSensitive}
	for _, f := range exp.Files {
		if err := put(f.Name, contentTypeNDJSON, f.Data, f.SHA256); err != nil {
			return fail(err)
		}
		info.Files = append(info.Files, transfer.ExportFile{Type: f.Type, Count: f.Count, SHA256: f.SHA256, Bytes: int64(len(f.Data))})
	}
	if err := put(ManifestName, contentTypeManifest, exp.Manifest, exp.ManifestSHA256); err != nil {
		return fail(err)
	}
	sig, err := a.Signer.Sign(exp.Manifest)
	if err != nil {
		return fail(fault.Wrap(fault.Transport, fault.TypeSigning, "signing the manifest", err))
	}
	sigDigest := digest([]byte(sig))
	if err := put(SignatureName, contentTypeSignature, []byte(sig), sigDigest); err != nil {
		return fail(err)
	}
	info.SignatureSHA256 = sigDigest
	a.log(in.TransferID).Info("export prepared", zap.String("manifest_sha256", exp.ManifestSHA256), zap.Int("files", len(exp.Files)))
	return Prepared{Export: info, SignatureSHA256: sigDigest}, nil
}

// SendInput names a prepared export and the partner to deliver it to.
type SendInput struct {
	TransferID      string
	PartnerID       string
	ManifestSHA256  string
	SignatureSHA256 string
	Files           []transfer.ExportFile
}

// Sent is the partner's answer to a delivery.
type Sent struct {
	Status       string // "acknowledged", or "accepted" when the ack comes later
	ReceiptID    string
	Duplicate    bool
	Endpoint     string // the partner's push URL without credentials or query
	Acknowledged bool
	Attempt      int32  // the activity attempt that delivered
	HTTPStatus   int    // the partner's HTTP answer
	DeliveryKey  string // the delivery's Idempotency-Key
	ReceiptKID   string // the partner key that signed the receipt; "" if unsigned
}

// SendExport delivers the signed export to the partner. Its idempotency key
// is derived from the transfer and the manifest, so a retried send is
// recognised by the partner and never delivered twice.
func (a *Transfer) SendExport(ctx context.Context, in SendInput) (Sent, error) {
	p, ok := a.Partners.Get(in.PartnerID)
	fail := func(err error) (Sent, error) { return Sent{}, partnerAppError(ctx, NameSendExport, err, p.Retry) }
	if !ok {
		return fail(fault.New(fault.Business, ErrTypeUnknownPartner, "partner "+in.PartnerID+" is not in the registry"))
	}
	if !p.HasRole(connectors.RolePush) {
		return fail(fault.New(fault.Business, ErrTypeUnknownPartner, "partner "+in.PartnerID+" does not take pushed exports (no push role)"))
	}
	sig, err := a.Store.GetArtifact(ctx, in.SignatureSHA256)
	if err != nil {
		return fail(err)
	}
	d := connectors.Delivery{TransferID: in.TransferID, IdempotencyKey: connectors.DeliveryKey(in.TransferID, in.ManifestSHA256), Signature: string(sig.Data)}
	endpoint, n := endpointOf(p.PushURL), attempt(ctx)
	arts, err := a.Store.ListArtifacts(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	names := map[string]string{}
	for _, art := range arts {
		names[art.Digest] = art.Name
	}
	for _, f := range in.Files {
		art, err := a.Store.GetArtifact(ctx, f.SHA256)
		if err != nil {
			return fail(err)
		}
		d.Files = append(d.Files, connectors.DeliveryFile{Name: names[f.SHA256], Type: f.Type, SHA256: f.SHA256, Data: art.Data})
	}
	stop := heartbeat(ctx, 2*time.Second)
	r, err := a.Pusher.Push(ctx, p, d)
	stop()
	var receiptKID string
	if err == nil && r.Status == connectors.StatusAcknowledged {
		// A partner that publishes keys signs its receipts: an
		// acknowledgement counts only if its signature proves it.
		keys := a.ReceiptKeys
		if keys == nil {
			keys = &a.receiptKeys
		}
		receiptKID, err = connectors.VerifyReceipt(ctx, keys, p, in.TransferID, in.ManifestSHA256, d.IdempotencyKey, r)
	}
	if err != nil {
		a.log(in.TransferID).Warn("delivery failed", zap.String("partner_id", p.ID), zap.Int32("attempt", n), zap.Error(err))
		// Every attempt is evidence: the data may have reached the partner.
		// An attempt that cannot be recorded is retried (the partner knows
		// the delivery by its key).
		detail := transfer.SendFailedDetail{PartnerID: p.ID, Endpoint: endpoint, Attempt: n,
			ErrorType: ErrTypeTransport, DeliveryKey: d.IdempotencyKey}
		if f, ok := fault.As(err); ok {
			detail.ErrorType, detail.ErrorClass, detail.HTTPStatus = f.Type, string(f.Class), f.Status
		}
		if rerr := a.record(ctx, a.Store, in.TransferID, store.Change{Event: transfer.SendFailed(detail)}); rerr != nil {
			return fail(rerr)
		}
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "push", 0, err, ImportLimits{}); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	return Sent{
		Status: r.Status, ReceiptID: r.ReceiptID, Duplicate: r.Duplicate, Endpoint: endpoint,
		Acknowledged: r.Status == connectors.StatusAcknowledged, Attempt: n, HTTPStatus: r.StatusCode, DeliveryKey: d.IdempotencyKey,
		ReceiptKID: receiptKID,
	}, nil
}

// WithdrawInput names the transfer whose staged export to withdraw and why.
type WithdrawInput struct {
	TransferID string
	Reason     string // an error type, never PHI
}

// WithdrawExport is PrepareExport's compensation: it deletes the staged
// export's PHI, keeps its digests as evidence and records why, once.
func (a *Transfer) WithdrawExport(ctx context.Context, in WithdrawInput) (int, error) {
	now := a.now()
	// Only the PHI goes: the manifest and its signature stay, with every
	// file's digest, as the evidence of what was prepared.
	n, err := a.Store.PurgeArtifacts(ctx, in.TransferID, contentTypeNDJSON, now)
	if err != nil {
		return 0, appError(ctx, NameWithdrawExport, err)
	}
	tr, err := a.Store.GetTransfer(ctx, in.TransferID)
	if err != nil {
		return 0, appError(ctx, NameWithdrawExport, err)
	}
	var ch store.Change
	var manifest *string
	if tr.Export != nil {
		e := *tr.Export
		e.Withdrawn = true
		ch.Export = &e
		manifest = &e.ManifestSHA256
	}
	ch.Event = transfer.ExportWithdrawn(in.Reason, n, manifest).Stamped(now)
	if _, err := a.Store.ApplyChange(ctx, in.TransferID, ch); err != nil {
		return 0, appError(ctx, NameWithdrawExport, err)
	}
	a.log(in.TransferID).Info("export withdrawn", zap.String("reason", in.Reason), zap.Int("artifacts", n))
	return n, nil
}

// maxHeartbeatInterval is how often, at most, heartbeat records a
// heartbeat for a step whose policy sets a long heartbeat timeout.
const maxHeartbeatInterval = 5 * time.Second

// heartbeatInterval is how often an activity heartbeats: a quarter of the
// heartbeat timeout of its policy, so that a heartbeat delayed by a busy
// worker (or batched by the SDK, which sends at most one per 80 % of the
// timeout) still arrives in time; at most maxHeartbeatInterval.
func heartbeatInterval(ctx context.Context) time.Duration {
	if !activity.IsActivity(ctx) {
		return maxHeartbeatInterval
	}
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 {
		return max(min(hb/4, maxHeartbeatInterval), time.Millisecond)
	}
	return maxHeartbeatInterval
}

// heartbeat records a heartbeat every interval until stopped, so that a
// long partner call, or a slow source, on a live worker is told apart from
// a dead worker.
func heartbeat(ctx context.Context, every time.Duration) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
