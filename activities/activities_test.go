package activities

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/sandbox"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/signing"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/sqlite"
	"github.com/p2p-payer/p2p/transfer"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixture is a set of activities over a real SQLite store, the real export
// builder and signer, and a sandbox partner on loopback.
type fixture struct {
	acts    *Transfer // the push export's
	rec     *Recorder
	bulk    *BulkMatch // with no Matcher
	maint   *Maintenance
	st      store.Store
	partner *sandbox.Partner
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, st)
	return newFixtureOn(t, st)
}

// closeAtEnd closes st when the test ends; a store that does not close
// cleanly fails the test.
func closeAtEnd(t *testing.T, st store.Store) {
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
}

// newFixtureOn is a fixture over st.
func newFixtureOn(t *testing.T, st store.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	signer, err := signing.GenerateFor(signing.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	checkpoints, err := signing.GenerateFor(signing.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b, _ := signer.PublicJWKS()
		w.Write(b)
	}))
	t.Cleanup(jwks.Close)
	sb, err := sandbox.New(sandbox.Options{JWKSURL: jwks.URL})
	if err != nil {
		t.Fatal(err)
	}
	sbSrv := httptest.NewServer(sb.Handler())
	t.Cleanup(sbSrv.Close)
	partners, err := connectors.NewRegistry(connectors.Partner{ID: "sandbox", Name: "Sandbox", PushURL: sbSrv.URL + "/exports", AllowPrivateNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Now: func() time.Time { return t0 }}
	f := &fixture{st: st, partner: sb,
		acts: &Transfer{Env: env, Store: st, Partners: partners, Pusher: &connectors.HTTPPusher{},
			Signer: signer, Source: export.SyntheticSource{}},
		rec:   &Recorder{Env: env, Store: st},
		bulk:  &BulkMatch{Env: env, Store: st},
		maint: &Maintenance{Env: env, Store: st, Signer: checkpoints},
	}
	if err := st.UpsertMembers(ctx, []member.Record{
		{ID: "M1", Given: "Alice", Family: "Nguyen", BirthDate: "1985-04-12", Sex: "F"},
		{ID: "M2", Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08", Sex: "F"},
		{ID: "M3", Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08", Sex: "M"},
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// create stores a transfer for demographics q with consent c.
func (f *fixture) create(t *testing.T, id string, q transfer.Demographics, c transfer.Consent) {
	t.Helper()
	_, err := f.st.CreateTransfer(context.Background(), store.NewTransfer{
		ClientID: "default", IdempotencyKey: "key-" + id, Fingerprint: "fp-" + id,
		Transfer: transfer.Transfer{ID: id, ClientID: "default", PartnerID: "sandbox", State: transfer.StateInitiated, CreatedAt: t0, UpdatedAt: t0},
		Request:  transfer.Request{PartnerID: "sandbox", Member: q, Consent: c},
		Event:    transfer.Event{At: t0, State: transfer.StateInitiated, Actor: "client:default", Type: "state", Key: transfer.StateKey(transfer.StateInitiated)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

var activeConsent = transfer.Consent{ID: "c1", Status: "active", Scope: transfer.ScopeRegular,
	PeriodStart: t0.AddDate(0, -1, 0), PeriodEnd: t0.AddDate(1, 0, 0), GrantedAt: t0.AddDate(0, -1, 0)}

func TestResolveIdentityOutcomes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		q      transfer.Demographics
		status string
		member string
		cands  int
	}{
		{transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, transfer.IdentityResolved, "M1", 0},
		{transfer.Demographics{Given: "ALICE ", Family: "nguyen", BirthDate: "1985-04-12"}, transfer.IdentityResolved, "M1", 0},
		{transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08"}, transfer.IdentityAmbiguous, "", 2},
		{transfer.Demographics{Given: "Jordan", Family: "Lee", BirthDate: "1995-03-08", Sex: "M"}, transfer.IdentityResolved, "M3", 0},
		{transfer.Demographics{Given: "Nobody", Family: "Known", BirthDate: "1960-01-01"}, transfer.IdentityNoMatch, "", 0},
	} {
		id := "t-" + tc.q.Given + tc.q.MemberID + tc.q.Sex
		f.create(t, id, tc.q, activeConsent)
		o, err := f.acts.ResolveIdentity(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != tc.status || (tc.member != "" && o.MemberID != tc.member) || len(o.Candidates) != tc.cands {
			t.Errorf("%+v: got %s %s %v, want %s %s %d candidates", tc.q, o.Status, o.MemberID, o.Candidates, tc.status, tc.member, tc.cands)
		}
		if o.Rationale == nil || o.Rationale.Rule == "" && tc.status == transfer.IdentityResolved {
			t.Errorf("%+v: no rationale", tc.q)
		}
	}
}

func TestPrepareSendWithdraw(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, "t1", transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, activeConsent)

	p, err := f.acts.PrepareExport(ctx, PrepareInput{TransferID: "t1", MemberID: "M1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Export.Files) == 0 || p.Export.ExcludedSensitive != 1 || p.Export.KID == "" {
		t.Fatalf("export %+v: want files, one sensitive resource excluded (regular scope), a kid", p.Export)
	}
	// A retry stores the same files: the build is deterministic.
	p2, err := f.acts.PrepareExport(ctx, PrepareInput{TransferID: "t1", MemberID: "M1"})
	if err != nil || p2.Export.ManifestSHA256 != p.Export.ManifestSHA256 {
		t.Fatalf("retry: %v, manifest %s vs %s", err, p2.Export.ManifestSHA256, p.Export.ManifestSHA256)
	}

	in := SendInput{TransferID: "t1", PartnerID: "sandbox", ManifestSHA256: p.Export.ManifestSHA256, SignatureSHA256: p.SignatureSHA256, Files: p.Export.Files}
	s1, err := f.acts.SendExport(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !s1.Acknowledged || s1.ReceiptID == "" {
		t.Fatalf("send: %+v", s1)
	}
	// A retried send (e.g. after a lost acknowledgement) is recognised by
	// the partner: same receipt, no second delivery.
	s2, err := f.acts.SendExport(ctx, in)
	if err != nil || s2.ReceiptID != s1.ReceiptID || !s2.Duplicate {
		t.Fatalf("resend: %+v %v, want duplicate of %s", s2, err, s1.ReceiptID)
	}
	if d := f.partner.Deliveries(); len(d) != 1 || d[0].ManifestSHA256 != p.Export.ManifestSHA256 {
		t.Fatalf("partner deliveries %+v, want exactly one", d)
	}

	n, err := f.acts.WithdrawExport(ctx, WithdrawInput{TransferID: "t1", Reason: "test"})
	if err != nil || n == 0 {
		t.Fatalf("withdraw: %d %v", n, err)
	}
	for _, file := range p.Export.Files {
		if _, err := f.st.GetArtifact(ctx, file.SHA256); !errors.Is(err, store.ErrWithdrawn) {
			t.Errorf("%s after withdrawal: %v, want ErrWithdrawn", file.Type, err)
		}
	}
	if n != len(p.Export.Files) {
		t.Errorf("withdrew %d artifacts, want the %d NDJSON files only", n, len(p.Export.Files))
	}
	// The evidence stays: the manifest and its signature, and every
	// artifact's digest.
	for _, d := range []string{p.Export.ManifestSHA256, p.SignatureSHA256} {
		if a, err := f.st.GetArtifact(ctx, d); err != nil || len(a.Data) == 0 {
			t.Errorf("artifact %s after withdrawal: %v, want it kept", d, err)
		}
	}
	arts, err := f.st.ListArtifacts(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, a := range arts {
		listed[a.Digest] = true
	}
	for _, file := range p.Export.Files {
		if !listed[file.SHA256] {
			t.Errorf("%s: its digest is gone after withdrawal", file.Type)
		}
	}
	// Withdrawing twice records the compensation once.
	if _, err := f.acts.WithdrawExport(ctx, WithdrawInput{TransferID: "t1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	events, err := f.st.Timeline(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := 0
	for _, e := range events {
		if e.Type == "export_withdrawn" {
			withdrawn++
		}
	}
	if withdrawn != 1 {
		t.Errorf("export_withdrawn events: %d, want 1", withdrawn)
	}
	tr, _ := f.st.GetTransfer(ctx, "t1")
	if tr.Export != nil && !tr.Export.Withdrawn {
		t.Errorf("projection export %+v, want withdrawn", tr.Export)
	}
}

func TestSendErrorTypes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.create(t, "t1", transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, activeConsent)
	p, err := f.acts.PrepareExport(ctx, PrepareInput{TransferID: "t1", MemberID: "M1"})
	if err != nil {
		t.Fatal(err)
	}
	in := SendInput{TransferID: "t1", PartnerID: "sandbox", ManifestSHA256: p.Export.ManifestSHA256, SignatureSHA256: p.SignatureSHA256, Files: p.Export.Files}
	for _, tc := range []struct {
		name    string
		partner string
		fail    *sandbox.Failure
		want    string        // the connector's type, unchanged
		class   fault.Class   // in the error's details
		delayAt time.Duration // minimum NextRetryDelay
	}{
		{"unknown partner", "nobody", nil, fault.TypeUnknownPartner, fault.Business, 0},
		{"partner rejects", "sandbox", &sandbox.Failure{Status: 422}, connectors.ErrTypeRejected, fault.Business, 0},
		{"partner refuses us", "sandbox", &sandbox.Failure{Status: 401}, connectors.ErrTypeAuth, fault.Auth, 0},
		{"partner down", "sandbox", &sandbox.Failure{Status: 503}, connectors.ErrTypeUnavailable, fault.Downstream, 0},
		{"partner throttles", "sandbox", &sandbox.Failure{Status: 429, RetryAfter: "120"}, connectors.ErrTypeThrottled, fault.Downstream, 120 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fail != nil {
				f.partner.FailNext(1, *tc.fail)
			}
			in := in
			in.PartnerID = tc.partner
			_, err := f.acts.SendExport(ctx, in)
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != tc.want {
				t.Fatalf("error %v, want application error of type %s", err, tc.want)
			}
			if tc.delayAt > 0 && ae.NextRetryDelay() < tc.delayAt {
				t.Errorf("next retry in %v, want at least the partner's Retry-After %v", ae.NextRetryDelay(), tc.delayAt)
			}
			var class fault.Class
			if !ae.HasDetails() || ae.Details(&class) != nil || class != tc.class {
				t.Errorf("class in the details %q, want %q", class, tc.class)
			}
			// The activity marks what the policy table makes final: a
			// policy recorded with older type names cannot retry it.
			if wantRetry := tc.class.Retryable(); ae.NonRetryable() == wantRetry {
				t.Errorf("%s non-retryable=%v, want %v", ae.Type(), ae.NonRetryable(), !wantRetry)
			}
		})
	}
}

func TestRetryDelayHasJitterAndCap(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 20 {
		d := retryDelay(NameSendExport, 1, 0, nil)
		p := Policies[NameSendExport].Retry
		if d < time.Duration(0.8*float64(p.InitialInterval)) || d > time.Duration(1.2*float64(p.InitialInterval)) {
			t.Fatalf("first retry in %v, want within ±20%% of %v", d, p.InitialInterval)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Error("retry delays are all equal: no jitter")
	}
	if d := retryDelay(NameSendExport, 1, 3*time.Hour, nil); d != 3*time.Hour {
		t.Errorf("Retry-After 3h gave %v", d)
	}
	if d := retryDelay(NameSendExport, 40, 0, nil); d > time.Duration(1.2*float64(Policies[NameSendExport].Retry.MaximumInterval)) {
		t.Errorf("attempt 40 waits %v, beyond the cap", d)
	}
}

func TestPartnerRetryOverride(t *testing.T) {
	o := &connectors.RetryOverride{InitialInterval: time.Minute, MaximumInterval: 3 * time.Minute, MaximumAttempts: 3}
	tests := []struct {
		attempt  int32
		min, max time.Duration
	}{
		{1, 48 * time.Second, 72 * time.Second},   // the partner's initial interval, ±20 %
		{2, 96 * time.Second, 144 * time.Second},  // doubled
		{5, 144 * time.Second, 216 * time.Second}, // capped at the partner's maximum
	}
	for _, tt := range tests {
		if d := retryDelay(NameSendExport, tt.attempt, 0, o); d < tt.min || d > tt.max {
			t.Errorf("attempt %d: %v, want within [%v, %v]", tt.attempt, d, tt.min, tt.max)
		}
	}
	transport := fault.New(fault.Transport, "", "connection refused")
	var ae *temporal.ApplicationError
	if err := partnerAppError(context.Background(), NameSendExport, transport, o); !errors.As(err, &ae) || ae.NonRetryable() || ae.NextRetryDelay() <= 0 {
		t.Fatalf("first attempt: %v, want retryable with a delay", err)
	}
	spent := &connectors.RetryOverride{MaximumAttempts: 1}
	if err := partnerAppError(context.Background(), NameSendExport, transport, spent); !errors.As(err, &ae) || !ae.NonRetryable() {
		t.Fatalf("attempts spent: %v, want a final error", err)
	}
	business := fault.New(fault.Business, ErrTypePartnerRejected, "rejected")
	if err := partnerAppError(context.Background(), NameSendExport, business, o); !errors.As(err, &ae) || ae.NextRetryDelay() != 0 {
		t.Fatalf("business error: %v, want no retry delay", err)
	}
}

func TestEveryActivityHasAPolicy(t *testing.T) {
	for _, name := range []string{NameRecordState, NameResolveIdentity, NameCheckConsent, NamePrepareExport, NameSendExport, NameWithdrawExport, NameAuditCheckpoint, NamePurgePHI} {
		p, ok := Policies[name]
		if !ok || p.StartToClose == 0 || p.ScheduleToClose == 0 || p.Retry.InitialInterval == 0 || p.Retry.MaximumInterval == 0 {
			t.Errorf("%s: incomplete policy %+v", name, p)
		}
		if p.Compensation != "" {
			if _, ok := Policies[p.Compensation]; !ok {
				t.Errorf("%s: compensation %s has no policy", name, p.Compensation)
			}
		}
	}
}

// TestCheckConsentRunAgainAnswersTheRecordedCheck: a check run again for
// a phase already recorded (a local activity runs again with a lost
// workflow task) answers the outcome recorded, even when the clock has
// since passed the consent's end, and records nothing more.
func TestCheckConsentRunAgainAnswersTheRecordedCheck(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := activeConsent
	c.PeriodEnd = t0.Add(time.Minute)
	f.create(t, "consent-again", transfer.Demographics{MemberID: "M1", BirthDate: "1985-04-12"}, c)
	first, err := f.acts.CheckConsent(ctx, ConsentInput{TransferID: "consent-again", Phase: "initial"})
	if err != nil || first.Status != transfer.ConsentVerified {
		t.Fatalf("first check: %+v, %v", first, err)
	}
	f.acts.Now = func() time.Time { return t0.Add(time.Hour) } // past the consent's end
	again, err := f.acts.CheckConsent(ctx, ConsentInput{TransferID: "consent-again", Phase: "initial"})
	if err != nil || again.Status != transfer.ConsentVerified || !again.CheckedAt.Equal(first.CheckedAt) {
		t.Fatalf("run again: %+v, %v, want the recorded %+v", again, err, first)
	}
	// A new phase is a new check, against the clock of now.
	send, err := f.acts.CheckConsent(ctx, ConsentInput{TransferID: "consent-again", Phase: "before_send"})
	if err != nil || send.Status != transfer.ConsentDenied {
		t.Fatalf("before_send: %+v, %v, want denied", send, err)
	}
	tl, err := f.st.Timeline(ctx, "consent-again")
	if err != nil {
		t.Fatal(err)
	}
	checks := 0
	for _, ev := range tl {
		if ev.Type == transfer.EventConsentChecked {
			checks++
		}
	}
	if checks != 2 {
		t.Errorf("%d consent checks recorded, want 2 (one per phase)", checks)
	}
}

// TestLocalOptionsComeFromThePolicyRow: a step that may run locally gets
// its row's timeouts and retry policy, non-retryable types included; a
// step that may not (it heartbeats, or calls a partner) is refused.
func TestLocalOptionsComeFromThePolicyRow(t *testing.T) {
	for name, p := range Policies {
		if !p.Local {
			continue
		}
		if p.Heartbeat != 0 || slices.Contains(PartnerActivities, name) || p.StartToClose > 30*time.Second {
			t.Errorf("%s may run locally but heartbeats, calls a partner or is long: %+v", name, p)
		}
		o := LocalOptions(name)
		if o.StartToCloseTimeout != p.StartToClose || o.ScheduleToCloseTimeout != p.ScheduleToClose ||
			o.RetryPolicy == nil || o.RetryPolicy.InitialInterval != p.Retry.InitialInterval ||
			!slices.Equal(o.RetryPolicy.NonRetryableErrorTypes, p.Retry.NonRetryableErrorTypes) {
			t.Errorf("%s: local options %+v, row %+v", name, o, p)
		}
	}
	for _, name := range []string{NameRecordState, NameResolveIdentity, NameCheckConsent} {
		if !Policies[name].Local {
			t.Errorf("%s: not Local, but the transfer workflow runs it locally", name)
		}
	}
	for _, name := range []string{NamePrepareExport, NameSendExport, "NoSuchActivity"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("LocalOptions(%s) did not refuse", name)
				}
			}()
			LocalOptions(name)
		}()
	}
}
