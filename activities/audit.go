package activities

import (
	"context"
	"net/url"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// The details of audit events are built here, in one place, from ids,
// digests, rules and outcomes: nothing in them is PHI. Members appear by
// our member id only; consent by its id, scope and dates of validity.

// IdentityDetail is the detail of an identity decision
// (transfer.IdentityDetail).
func IdentityDetail(o transfer.IdentityOutcome) map[string]any { return transfer.IdentityDetail(o) }

// ConsentDetail is the detail of a consent check: the consent asserted
// (id, status, scope, period, grant) and what the check made of it.
func ConsentDetail(phase string, c transfer.Consent, out transfer.ConsentOutcome) map[string]any {
	d := map[string]any{
		"phase": phase, "consent_id": c.ID, "asserted_status": c.Status, "scope": c.Scope,
		"period_start": rfc3339(c.PeriodStart), "result": out.Status,
	}
	if !c.PeriodEnd.IsZero() {
		d["period_end"] = rfc3339(c.PeriodEnd)
	}
	if !c.GrantedAt.IsZero() {
		d["granted_at"] = rfc3339(c.GrantedAt)
	}
	if out.Reason != "" {
		d["reason"] = out.Reason
	}
	return d
}

// ExportDetail is the detail of a prepared export: the signed manifest's
// digest and key, each file's digest, the resources per type, and how
// many sensitive resources the consent's scope left out.
func ExportDetail(p Prepared) map[string]any {
	e := p.Export
	files := make([]map[string]any, len(e.Files))
	counts := map[string]any{}
	total := 0
	for i, f := range e.Files {
		files[i] = map[string]any{"type": f.Type, "count": f.Count, "sha256": f.SHA256, "bytes": f.Bytes}
		counts[f.Type] = f.Count
		total += f.Count
	}
	return map[string]any{
		"manifest_sha256": e.ManifestSHA256, "signature_sha256": p.SignatureSHA256, "kid": e.KID,
		"files": files, "resource_counts": counts, "resources": total, "excluded_sensitive": e.ExcludedSensitive,
	}
}

// SentDetail is the detail of a delivery the partner took.
func SentDetail(partnerID string, s Sent) map[string]any {
	return map[string]any{
		"partner_id": partnerID, "endpoint": s.Endpoint, "attempt": s.Attempt, "http_status": s.HTTPStatus,
		"partner_status": s.Status, "duplicate": s.Duplicate, "delivery_key": s.DeliveryKey,
	}
}

// Ways a partner acknowledges a delivery (detail "ack_via").
const (
	AckInResponse = "push_response" // the receipt answered the push
	AckBySignal   = "signal"        // a later acknowledgement
)

// AckDetail is the detail of a partner's acknowledgement. "ack_signature"
// is "verified" when the partner signed its receipt and the signature
// verified against its JWKS (kid in "ack_signature_kid"), "none" for a
// partner that publishes no keys. "ack_verified" is true when the
// acknowledgement is proven: signed and verified, or, from a partner
// without keys, the answer to our own push to its registered endpoint; a
// later one by signal from such a partner is its word alone.
func AckDetail(receiptID, via, signedBy string) map[string]any {
	d := map[string]any{
		"receipt_id": receiptID, "ack_via": via, "ack_signature": "none",
		"ack_verified": signedBy != "" || (via == AckInResponse && receiptID != ""),
	}
	if signedBy != "" {
		d["ack_signature"], d["ack_signature_kid"] = "verified", signedBy
	}
	return d
}

// endpointOf is the partner URL as the audit may show it: without user
// info, query or fragment, which could hold credentials.
func endpointOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "unparseable"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	return u.String()
}

// attempt is the activity's attempt number, 1 outside an activity.
func attempt(ctx context.Context) int32 {
	if activity.IsActivity(ctx) {
		return activity.GetInfo(ctx).Attempt
	}
	return 1
}

// record appends an event (and the projection parts of ch) as the worker.
func (a *Activities) record(ctx context.Context, transferID string, ch store.Change) error {
	if ch.Event.At.IsZero() {
		ch.Event.At = a.now()
	}
	if ch.Event.Actor == "" {
		ch.Event.Actor = "workflow"
	}
	_, err := a.Store.ApplyChange(ctx, transferID, ch)
	return err
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
