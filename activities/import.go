package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/connectors/pdexclient"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ImportStore is what an import's activities use of the store.
type ImportStore interface {
	store.Transfers     // the request, earlier imports, every step recorded
	store.IdentityGraph // the old payer's identifier, linked to our member
}

// Import holds the steps of an import (workflows.ImportTransfer; we are
// the new payer, the partner the member's old payer): MatchAtPartner,
// PlanImport, KickOffImport, PollImport, DownloadImportFile,
// DeliverImport; DeleteImport and DiscardImport undo.
type Import struct {
	Env
	Store    ImportStore
	Partners Partners
	// Pull builds the clients of imports ($member-match, Bulk Data); nil:
	// imports fail.
	Pull PullClients
	// Payer is us, as the consent and CoverageToLink of an import name us.
	Payer Payer
	// Bucket holds the NDJSON of imports (internal/blobstage): each
	// transfer's files are staged under .staging/<transfer id>/ by the
	// worker that downloads them and delivered to <transfer id>/ by the
	// one that delivers them, which need share no disk (S3); nil: imports
	// fail (validation).
	Bucket *blobstage.Bucket
	// FHIR, when set, is where DeliverImport also writes the delivered
	// resources: our own FHIR server. nil: the bucket is the sink.
	FHIR ImportLoader
	// Limits cap what an import pulls; zero fields: the defaults.
	Limits ImportLimits

	key presentationKey
}

// PullClients builds the clients that talk to a partner we pull from:
// one per capability (connectors/pdexclient.Dialer is the one p2p runs).
type PullClients interface {
	MemberMatcher(p connectors.Partner) (pdexclient.MemberMatcher, error)
	BulkExporter(p connectors.Partner) (BulkExporter, error)
}

// BulkExporter is the Bulk Data client side an import drives, one
// exchange per call (*bulkdata.Client).
type BulkExporter = bulkdata.Exporter

// Payer is us as other payers name us: in the Consent we send (recipient)
// and in CoverageToLink (payor, member id system).
type Payer struct {
	Name           string
	Identifiers    []fhir.Identifier
	MemberIDSystem string
}

// Error types of an import's activities.
const (
	// ErrTypeNotPuller: the partner is not one we pull from (role pull).
	ErrTypeNotPuller = "not_a_pull_partner"
	// ErrTypeExportExpired: the export (or a file) is gone at the partner:
	// the workflow kicks it off again.
	ErrTypeExportExpired = fault.TypeExportExpired
)

// DefaultImportYears is how far back an import reaches without a
// data_scope.since or an earlier import of the member: five years before
// the request, as CMS-0057-F asks of payer-to-payer exchange.
const DefaultImportYears = 5

// ImportInput names a transfer and the partner it pulls from.
type ImportInput struct {
	TransferID string
	PartnerID  string
}

// Matched is the old payer's answer to $member-match. A refusal (422) is
// an outcome, not an error.
type Matched struct {
	Status     string // transfer.IdentityResolved, transfer.ErrorNoMatch or transfer.ErrorConsentDenied
	Reason     string // pdexclient.Reason*: why a 422
	MemberID   string // the member's identifier value at the old payer
	PatientID  string // the member's Patient id at the old payer
	HTTPStatus int
	ConsentID  string // the consent sent, by id
	Scope      string // its scope: regular or sensitive
}

// pullPartner returns the partner if it is one we pull from.
func (a *Import) pullPartner(id string) (connectors.Partner, error) {
	p, ok := a.Partners.Get(id)
	if !ok {
		return p, fault.New(fault.Business, ErrTypeUnknownPartner, "partner "+id+" is not in the registry")
	}
	if !p.HasRole(connectors.RolePull) {
		return p, fault.New(fault.Business, ErrTypeUnknownPartner, "partner "+id+" is not one we pull from (no pull role)")
	}
	if a.Pull == nil {
		return p, fault.New(fault.Validation, ErrTypeValidation, "no pull connector is configured")
	}
	return p, nil
}

// MatchAtPartner asks the old payer who the member is ($member-match),
// with the member's demographics, the old card and the consent from the
// stored request, and records the outcome (no PHI: the old payer's member
// id, the reason of a refusal). A match links, in the identity graph and
// with the outcome's event, the old payer's identifier for the member (as
// its keyed digest, graph.ExternalID) to our member (member.member_id of
// the request; a member not yet numbered links nothing).
func (a *Import) MatchAtPartner(ctx context.Context, in ImportInput) (Matched, error) {
	p, err := a.pullPartner(in.PartnerID)
	fail := func(err error) (Matched, error) {
		return Matched{}, partnerAppError(ctx, NameMatchAtPartner, err, p.Retry)
	}
	if err != nil {
		return fail(err)
	}
	req, err := a.Store.GetTransferRequest(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	if req.CoverageToMatch == nil {
		return fail(fault.New(fault.Validation, ErrTypeValidation, "the transfer has no coverage to match: not an import"))
	}
	mm, err := a.Pull.MemberMatcher(p)
	if err != nil {
		return fail(fault.Wrap(fault.Validation, ErrTypeValidation, "member-match client for "+p.ID, err))
	}
	old := pdexclient.Organization{Name: p.Name}
	for _, id := range p.Identifiers {
		old.Identifiers = append(old.Identifiers, fhir.Identifier{System: id.System, Value: id.Value})
	}
	ourID := req.Member.MemberID
	if ourID == "" {
		ourID = in.TransferID // a coverage not yet numbered: the transfer names it
	}
	mr := pdexclient.MatchRequest{
		Member: req.Member, Card: *req.CoverageToMatch, Consent: req.Consent, OldPayer: old,
		Us: pdexclient.Organization{Name: a.Payer.Name, Identifiers: a.Payer.Identifiers}, OurMemberID: ourID,
		OurMemberIDSystem: a.Payer.MemberIDSystem,
	}
	stop := heartbeat(ctx, 2*time.Second)
	res, err := mm.MemberMatch(ctx, mr)
	stop()
	out := Matched{Status: transfer.IdentityResolved, MemberID: res.MemberIdentifier.Value, PatientID: res.PatientID, HTTPStatus: 200}
	out.ConsentID, out.Scope = req.Consent.ID, req.Consent.Scope
	if err != nil {
		f, ok := fault.As(err)
		if !ok || f.Class != fault.Business || (f.Type != transfer.ErrorNoMatch && f.Type != transfer.ErrorConsentDenied) {
			a.log(in.TransferID).Warn("member-match failed", zap.String("partner_id", p.ID), zap.Int32("attempt", attempt(ctx)), zap.Error(err))
			if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "member-match", 0, err, a.limits()); rerr != nil {
				return fail(rerr)
			}
			return fail(err)
		}
		out = Matched{Status: f.Type, Reason: pdexclient.Reason(err), HTTPStatus: f.Status, ConsentID: req.Consent.ID, Scope: req.Consent.Scope}
	} else if out.PatientID == "" {
		// Without the Patient id there is nothing to export: HRex makes
		// MemberId optional, PDex's export needs it.
		return fail(fault.New(fault.Business, ErrTypePartnerRejected, "partner "+p.ID+": member-match answered without MemberId"))
	}
	detail := transfer.PartnerMatchDetail{PartnerID: p.ID, Outcome: out.Status, HTTPStatus: out.HTTPStatus, Attempt: attempt(ctx), Reason: out.Reason}
	if out.MemberID != "" {
		detail.PartnerMember = &transfer.PartnerMember{MemberID: out.MemberID, System: res.MemberIdentifier.System, PatientID: out.PatientID}
	}
	link, err := a.partnerLink(ctx, in.TransferID, p.ID, req.Member.MemberID, out.Status, res.MemberIdentifier)
	if err != nil {
		return fail(err)
	}
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Link: link, Event: transfer.PartnerMatched(detail)}); err != nil {
		return fail(err)
	}
	return out, nil
}

// RulePartnerMemberMatch is the rule of a link made by an old payer's
// $member-match answer: its identifier for the member is ours.
const RulePartnerMemberMatch = "partner_member_match"

// partnerLink is the identity link an old payer's answer makes: partner's
// identifier id (its keyed digest, never the value) to our member, when
// the answer is a match naming an identifier and our member has an id.
func (a *Import) partnerLink(ctx context.Context, transferID, partner, ourMember, status string, id fhir.Identifier) (*graph.Link, error) {
	if status != transfer.IdentityResolved || id.Value == "" || ourMember == "" {
		return nil, nil
	}
	key, err := a.key.get(ctx, a.Store)
	if err != nil {
		return nil, err
	}
	return &graph.Link{Partner: partner, ExternalRef: graph.ExternalID(key, partner, id.System, id.Value), MemberID: ourMember,
		MadeBy:     graph.Maker{Kind: graph.MadeByRule, Rule: RulePartnerMemberMatch},
		Provenance: graph.Provenance{TransferID: transferID, Note: "$member-match answered by " + partner}}, nil
}

// Plan is what an import asks the old payer for.
type Plan struct {
	Types       []string
	Since       time.Time
	SinceSource string // "data_scope", "run_off" (the previous import's transactionTime) or "window"
	RunOffOf    string // the earlier transfer, for run_off
}

// PlanImport decides the export's _type (the request's data scope) and
// _since: data_scope.since if given; else the transactionTime of this
// member's latest complete import from the same partner (a run-off pull
// takes only what changed since); else five years back.
func (a *Import) PlanImport(ctx context.Context, in ImportInput) (Plan, error) {
	fail := func(err error) (Plan, error) { return Plan{}, appError(ctx, NamePlanImport, err) }
	req, err := a.Store.GetTransferRequest(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	tr, err := a.Store.GetTransfer(ctx, in.TransferID)
	if err != nil {
		return fail(err)
	}
	plan := Plan{Types: req.DataScope.ResourceTypes}
	switch {
	case req.DataScope.Since != nil:
		plan.Since, plan.SinceSource = req.DataScope.Since.UTC(), "data_scope"
	default:
		prev, at, err := a.previousImport(ctx, in, req)
		if err != nil {
			return fail(err)
		}
		if prev != "" {
			plan.Since, plan.SinceSource, plan.RunOffOf = at, "run_off", prev
		} else {
			plan.Since, plan.SinceSource = tr.CreatedAt.AddDate(-DefaultImportYears, 0, 0).UTC(), "window"
		}
	}
	ev := transfer.ImportPlanned(plan.Types, plan.Since, plan.SinceSource, plan.RunOffOf)
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Event: ev}); err != nil {
		return fail(err)
	}
	return plan, nil
}

// previousImport finds the latest complete import of the same member (the
// old card's member id) from the same partner, and its transactionTime.
// It looks at the partner's last few hundred complete imports.
func (a *Import) previousImport(ctx context.Context, in ImportInput, req transfer.Request) (string, time.Time, error) {
	f := store.ListFilter{PartnerID: in.PartnerID, Direction: transfer.DirectionImport, State: transfer.StateComplete, Limit: 100}
	for page := 0; page < 5; page++ {
		res, err := a.Store.ListTransfers(ctx, f)
		if err != nil {
			return "", time.Time{}, err
		}
		for _, t := range res.Items {
			if t.ID == in.TransferID || t.Export == nil || t.Export.TransactionTime == nil {
				continue
			}
			r, err := a.Store.GetTransferRequest(ctx, t.ID)
			if err != nil {
				return "", time.Time{}, err
			}
			if r.CoverageToMatch != nil && req.CoverageToMatch != nil && r.CoverageToMatch.MemberID == req.CoverageToMatch.MemberID {
				return t.ID, t.Export.TransactionTime.UTC(), nil
			}
		}
		if res.NextCursor == "" {
			break
		}
		f.Cursor = res.NextCursor
	}
	return "", time.Time{}, nil
}

// KickOffInput asks for one kick-off.
type KickOffInput struct {
	TransferID string
	PartnerID  string
	PatientID  string // at the old payer
	Types      []string
	Since      time.Time
	Round      int // 1 for the first kick-off, 2.. after an expiry
}

// KickedOff is an export started at the partner.
type KickedOff struct {
	StatusURL string
	At        time.Time // our clock at the 202: the poll budget starts here
}

// KickOffImport kicks off a Patient-level $export (POST, the IG v2 patient
// parameter naming the matched patient, _type and _since) and records the
// status URL. Its compensation, DeleteImport, cancels the export.
func (a *Import) KickOffImport(ctx context.Context, in KickOffInput) (KickedOff, error) {
	p, err := a.pullPartner(in.PartnerID)
	fail := func(err error) (KickedOff, error) {
		return KickedOff{}, partnerAppError(ctx, NameKickOffImport, err, p.Retry)
	}
	if err != nil {
		return fail(err)
	}
	bc, err := a.Pull.BulkExporter(p)
	if err != nil {
		return fail(fault.Wrap(fault.Validation, ErrTypeValidation, "bulk client for "+p.ID, err))
	}
	url, err := bc.KickOff(ctx, bulkdata.ExportRequest{
		Level: bulkdata.PatientLevel, Method: "POST", Types: in.Types, Since: in.Since,
		Patients: []string{"Patient/" + in.PatientID},
	})
	if err != nil {
		a.log(in.TransferID).Warn("kick-off failed", zap.String("partner_id", p.ID), zap.Int32("attempt", attempt(ctx)), zap.Error(err))
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "kick-off", in.Round, err, a.limits()); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	at := a.now()
	ev := transfer.BulkKickedOff(p.ID, endpointOf(url), in.Round, attempt(ctx), in.Since, in.Types).Stamped(at)
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Event: ev}); err != nil {
		return fail(err)
	}
	return KickedOff{StatusURL: url, At: at}, nil
}

// PollInput asks for one status poll.
type PollInput struct {
	TransferID string
	PartnerID  string
	StatusURL  string
}

// Polled is one poll's answer: the status, and the digest of the manifest
// when complete.
type Polled struct {
	Status         bulkdata.Status
	ManifestSHA256 string
}

// PollImport asks the status URL once. In progress and complete are
// answers; a job that is gone (404/410) is the error
// bulk_export_expired, which the workflow answers with a new kick-off.
func (a *Import) PollImport(ctx context.Context, in PollInput) (Polled, error) {
	p, err := a.pullPartner(in.PartnerID)
	fail := func(err error) (Polled, error) { return Polled{}, partnerAppError(ctx, NamePollImport, err, p.Retry) }
	if err != nil {
		return fail(err)
	}
	bc, err := a.Pull.BulkExporter(p)
	if err != nil {
		return fail(fault.Wrap(fault.Validation, ErrTypeValidation, "bulk client for "+p.ID, err))
	}
	st, err := bc.Poll(ctx, in.StatusURL)
	if err == nil && st.Complete != nil {
		m := st.Complete.Manifest
		if n, max := len(m.Output)+len(m.Error), a.limits().Files; n > max {
			err = limitError(fault.TypeImportTooManyFiles, p.ID, fmt.Sprintf("the manifest lists %d files, more than the %d an import takes", n, max))
		}
	}
	if err != nil {
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "status", 0, err, a.limits()); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	out := Polled{Status: st}
	if st.Complete != nil {
		b, err := json.Marshal(st.Complete.Manifest)
		if err != nil {
			return fail(err)
		}
		out.ManifestSHA256 = digest(b)
	}
	return out, nil
}

// DownloadInput names one file of a manifest to download.
type DownloadInput struct {
	TransferID          string
	PartnerID           string
	Round               int // the kick-off the manifest belongs to
	File                bulkdata.OutputFile
	N                   int  // the file's rank among its type's (bulkdata.OutputSeq)
	Error               bool // a file of the manifest's error[]
	RequiresAccessToken bool
}

// DownloadImportFile streams one file into the transfer's staging area
// of the import bucket (bounded memory: the client checks each line,
// counts and hashes as it writes; the object appears only once complete),
// heartbeating as bytes arrive. A 410 is
// bulk_export_expired: the workflow kicks the export off again.
func (a *Import) DownloadImportFile(ctx context.Context, in DownloadInput) (transfer.ExportFile, error) {
	p, err := a.pullPartner(in.PartnerID)
	fail := func(err error) (transfer.ExportFile, error) {
		return transfer.ExportFile{}, partnerAppError(ctx, NameDownloadImportFile, err, p.Retry)
	}
	if err != nil {
		return fail(err)
	}
	bc, err := a.Pull.BulkExporter(p)
	if err != nil {
		return fail(fault.Wrap(fault.Validation, ErrTypeValidation, "bulk client for "+p.ID, err))
	}
	b, err := a.bucket(in.TransferID)
	if err != nil {
		return fail(err)
	}
	staged, err := b.Stage(ctx, in.TransferID, in.Round, in.Error)
	if err != nil {
		return fail(fault.Wrap(fault.Transport, bulkdata.ErrTypeSink, "import bucket", err))
	}
	// What the round's other files already hold counts against the
	// transfer's cap (this file's earlier copy, which it replaces, not).
	limits := a.limits()
	used, err := b.StagedBytes(ctx, in.TransferID, in.Round, blobstage.StagedKey(in.TransferID, in.Round, in.Error, in.File.Type, in.N))
	if err != nil {
		return fail(fault.Wrap(fault.Transport, bulkdata.ErrTypeSink, "import bucket", err))
	}
	sink := &cappedSink{Sink: staged, partner: p.ID, fileMax: limits.FileBytes, totalMax: limits.TransferBytes - used, total: limits.TransferBytes}
	stop := heartbeat(ctx, 2*time.Second)
	res, err := bc.DownloadTo(ctx, in.File, in.RequiresAccessToken, sink, in.N)
	stop()
	if err != nil {
		a.log(in.TransferID).Warn("download failed", zap.String("partner_id", p.ID), zap.String("type", in.File.Type), zap.Int32("attempt", attempt(ctx)), zap.Error(err))
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "download", in.Round, err, limits); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	f := transfer.ExportFile{Type: res.Type, Count: int(res.Resources), SHA256: res.SHA256, Bytes: res.Bytes}
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Event: transfer.BulkFile(p.ID, f, in.N, in.Round, in.Error)}); err != nil {
		return fail(err)
	}
	return f, nil
}

// DeleteInput names the export to delete at the partner and why.
type DeleteInput struct {
	TransferID string
	PartnerID  string
	StatusURL  string
	Reason     string // an error type, or "done" after a complete download
}

// DeleteImport sends DELETE to the export's status URL: KickOffImport's
// compensation when the import fails or is cancelled, and the courtesy
// clean-up once the files are ours. 404 and 410 count as deleted.
func (a *Import) DeleteImport(ctx context.Context, in DeleteInput) error {
	p, err := a.pullPartner(in.PartnerID)
	if err != nil {
		return partnerAppError(ctx, NameDeleteImport, err, p.Retry)
	}
	bc, err := a.Pull.BulkExporter(p)
	if err != nil {
		return partnerAppError(ctx, NameDeleteImport, fault.Wrap(fault.Validation, ErrTypeValidation, "bulk client for "+p.ID, err), p.Retry)
	}
	if err := bc.Delete(ctx, in.StatusURL); err != nil {
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, p.ID, "delete", 0, err, a.limits()); rerr != nil {
			return partnerAppError(ctx, NameDeleteImport, rerr, p.Retry)
		}
		return partnerAppError(ctx, NameDeleteImport, err, p.Retry)
	}
	return a.record(ctx, a.Store, in.TransferID, store.Change{
		Event: transfer.BulkDeleted(p.ID, endpointOf(in.StatusURL), digest([]byte(in.StatusURL))[:16], in.Reason)})
}

// DiscardInput names the transfer whose staged files to remove.
type DiscardInput struct {
	TransferID string
	Reason     string
}

// DiscardImport removes the transfer's staged (downloaded, not
// delivered) files, every object under its staging prefix whichever
// worker wrote it: DownloadImportFile's compensation. The digests stay in
// the timeline as evidence.
func (a *Import) DiscardImport(ctx context.Context, in DiscardInput) (bool, error) {
	b, err := a.bucket(in.TransferID)
	if err != nil {
		return false, appError(ctx, NameDiscardImport, err)
	}
	existed, err := b.Discard(ctx, in.TransferID)
	if err != nil {
		return false, appError(ctx, NameDiscardImport, fault.Wrap(fault.Transport, bulkdata.ErrTypeSink, "removing the staged files", err))
	}
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Event: transfer.ImportDiscarded(in.Reason, existed)}); err != nil {
		return false, appError(ctx, NameDiscardImport, err)
	}
	return existed, nil
}

// DeliverInput names the files of a round to deliver to the sink.
type DeliverInput struct {
	TransferID string
	Round      int
	Files      []transfer.ExportFile // as downloaded, output and error files
}

// Delivered is the sink's receipt.
type Delivered struct {
	Sink      string // "ndjson-dir" (the NDJSON files under Location in the import bucket), or "fhir" when Import.FHIR is set
	Location  string // the prefix of the files in the import bucket: the transfer id
	ReceiptID string // SHA-256 over the delivered files' digests, in order
	Files     int
	Loaded    int `json:",omitempty"` // "fhir": resources written (by type in the import_loaded event)
}

// DeliverImport moves a round's staged files into the sink, the import
// bucket's <transfer id>/ (error files under error/): it copies each one
// (an object appears whole or not at all), reads every file back and
// checks its digest against what was downloaded — the receipt is that
// check —, and only then seals the delivery with the marker
// <transfer id>/_delivered.json (the receipt, the files' digests) and
// removes what was staged. A crash before the seal leaves the staged
// files, which a retry copies again; a retry after it checks again and
// answers the same receipt. With FHIR set, the output files (not the
// error files) are then written to our FHIR server; its writes are
// upserts by id, so a retry writes the same resources again.
func (a *Import) DeliverImport(ctx context.Context, in DeliverInput) (Delivered, error) {
	fail := func(err error) (Delivered, error) { return Delivered{}, appError(ctx, NameDeliverImport, err) }
	b, err := a.bucket(in.TransferID)
	if err != nil {
		return fail(err)
	}
	// Downloads run in parallel, each held to what was left of the
	// transfer's cap when it started: the sum is checked here, before
	// anything reaches the sink.
	var total int64
	for _, f := range in.Files {
		total += f.Bytes
	}
	if limits := a.limits(); total > limits.TransferBytes || len(in.Files) > limits.Files {
		err := limitError(fault.TypeImportTooLarge, "", fmt.Sprintf("the import's %d files hold %d bytes, past its caps (%d files, %d bytes)", len(in.Files), total, limits.Files, limits.TransferBytes))
		if len(in.Files) > limits.Files {
			err.Type = fault.TypeImportTooManyFiles
		}
		if rerr := a.auditRefusal(ctx, a.Store, in.TransferID, "", "deliver", in.Round, err, limits); rerr != nil {
			return fail(rerr)
		}
		return fail(err)
	}
	sinkErr := func(what string, err error) (Delivered, error) {
		return fail(fault.Wrap(fault.Transport, bulkdata.ErrTypeSink, what, err))
	}
	sealed, err := b.Sealed(ctx, in.TransferID)
	if err != nil {
		return sinkErr("import bucket", err)
	}
	if !sealed {
		if _, err := b.Promote(ctx, in.TransferID, in.Round); err != nil {
			return sinkErr("delivering the staged files", err)
		}
	}
	h := sha256.New()
	seen := map[string]int{}
	var loadKeys []string
	receipt := deliveryMarker{TransferID: in.TransferID, Round: in.Round}
	for _, f := range in.Files {
		errorFile := f.Type == "OperationOutcome"
		n := strconv.FormatBool(errorFile) + f.Type // files are numbered per type, as downloaded
		seen[n]++
		key := blobstage.DeliveredKey(in.TransferID, errorFile, f.Type, seen[n])
		if !errorFile {
			loadKeys = append(loadKeys, key)
		}
		got, err := b.Digest(ctx, key)
		if err != nil {
			return sinkErr("reading back "+path.Base(key), err)
		}
		if got != f.SHA256 {
			return fail(fault.New(fault.Validation, ErrTypeValidation, "delivered file "+path.Base(key)+" does not have the downloaded digest"))
		}
		h.Write([]byte(f.SHA256))
		receipt.Files = append(receipt.Files, markerFile{Key: strings.TrimPrefix(key, blobstage.DeliveredPrefix(in.TransferID)), Type: f.Type, Count: f.Count, Bytes: f.Bytes, SHA256: f.SHA256})
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, f.SHA256)
		}
	}
	receipt.ReceiptID = hex.EncodeToString(h.Sum(nil))
	marker, err := json.Marshal(receipt)
	if err != nil {
		return fail(err)
	}
	if err := b.Seal(ctx, in.TransferID, marker); err != nil {
		return sinkErr("sealing the delivery", err)
	}
	d := Delivered{Sink: "ndjson-dir", Location: in.TransferID, ReceiptID: receipt.ReceiptID, Files: len(in.Files)}
	if a.FHIR == nil {
		return d, nil
	}
	stop := heartbeat(ctx, 2*time.Second)
	loaded, err := a.FHIR.Load(ctx, func(ctx context.Context, key string) (io.ReadCloser, error) { return b.Open(ctx, key) }, loadKeys)
	stop()
	if err != nil {
		a.log(in.TransferID).Warn("loading into the FHIR server failed", zap.Int32("attempt", attempt(ctx)), zap.Error(err))
		return fail(err)
	}
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{Event: transfer.ImportLoaded(loaded.Resources, loaded.Batches, in.Round)}); err != nil {
		return fail(err)
	}
	d.Sink = "fhir"
	for _, n := range loaded.Resources {
		d.Loaded += n
	}
	return d, nil
}

// limits is a.Limits with the defaults filled in.
func (a *Import) limits() ImportLimits { return a.Limits.WithDefaults() }

// bucket is the import bucket, for transfer id's keys.
func (a *Import) bucket(transferID string) (*blobstage.Bucket, error) {
	if a.Bucket == nil {
		return nil, fault.New(fault.Validation, ErrTypeValidation, "no import bucket is configured (P2P_IMPORT_BUCKET or P2P_IMPORT_DIR)")
	}
	if !blobstage.ValidID(transferID) {
		return nil, fault.New(fault.Validation, ErrTypeValidation, "transfer id is not safe in a key")
	}
	return a.Bucket, nil
}

// deliveryMarker is what the marker that seals a delivery holds: the
// receipt and each file's digest, for whoever reads the sink (no PHI).
type deliveryMarker struct {
	TransferID string       `json:"transfer_id"`
	Round      int          `json:"round"`
	ReceiptID  string       `json:"receipt_id"`
	Files      []markerFile `json:"files"`
}

// markerFile is one delivered file in the marker.
type markerFile struct {
	Key    string `json:"key"` // below <transfer id>/
	Type   string `json:"type"`
	Count  int    `json:"count"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}
