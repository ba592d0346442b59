package pdex

// FHIR Bulk Data export (Bulk Data Access IG v2.0.0) of the members a
// requester matched, as PDex payer-to-payer exchange asks:
//
//	GET|POST /fhir/Patient/$export                       kick-off: every member the requester matched
//	GET|POST /fhir/Group/{id}/$davinci-data-export       kick-off: the same members, as the Group MatchedGroupID(requester)
//	GET      /fhir/bulk-status/{id}                      202 in progress, 200 manifest, 4xx/5xx failed, 404 deleted or expired
//	DELETE   /fhir/bulk-status/{id}                      delete (cancel) the export: 202
//	GET      /fhir/bulk-files/{id}/{sha256}              one NDJSON file (application/fhir+ndjson)
//
// Each export is a transfer (direction export) driven by a workflow
// (Deps.Exports: workflows.ServeExport); this file is its HTTP face: it
// checks who asks and what they may reach, and reads the transfer's
// projection and artifacts from the store. The requester's match grants
// (recorded with each match's transfer, record.go) are re-checked on every kick-off and every file
// request: a grant whose consent expired reaches nothing, and a file that
// holds sensitive data is served only under a sensitive grant. A kick-off
// counts against the requester's request rate, the bucket $member-match
// uses (429 with Retry-After past it).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Exports runs the exports we serve (workflows.ServeEngine).
type Exports interface {
	// StartExport records the export's transfer and starts its workflow.
	StartExport(ctx context.Context, k Kickoff) error
	// ManifestServed tells the export that its complete manifest was served.
	ManifestServed(ctx context.Context, transferID string) error
	// FileDownloaded tells the export that the file with digest was served.
	FileDownloaded(ctx context.Context, transferID, digest string) error
	// DeleteExport cancels the export, or withdraws its files if it is
	// complete, and returns when they are withdrawn.
	DeleteExport(ctx context.Context, transferID string) error
}

// Kickoff is an accepted export request (transfer.Kickoff, which the
// workflows share).
type Kickoff = transfer.Kickoff

// ClientID is the transfer client id of the exports a requester asks for
// (transfer.PartnerClientID).
func ClientID(requester string) string { return transfer.PartnerClientID(requester) }

// MatchedGroupID is the id of the Group of every member requester matched
// (with $member-match) and still holds a grant for: the Group its
// $davinci-data-export names.
func MatchedGroupID(requester string) string { return "matched-" + requester }

// Kick-off parameters we support (Bulk Data v2): everything else is
// refused with 400, never ignored.
const (
	paramType         = "_type"
	paramSince        = "_since"
	paramOutputFormat = "_outputFormat"
	// paramPatient (POST only, valueReference Patient/[id]) limits the
	// export to those of the requester's matched members: what a new
	// payer that matched several of ours sends to import one of them.
	paramPatient = "patient"
)

// outputFormats are the accepted values of _outputFormat: NDJSON only.
var outputFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// DefaultStatusRetryAfter is the Retry-After of an export in progress.
const DefaultStatusRetryAfter = 2 * time.Second

func (h *Handler) mountBulk(r chi.Router) {
	r.Get("/Patient/$export", h.kickoff)
	r.Post("/Patient/$export", h.kickoff)
	r.Get("/Group/{group}/$davinci-data-export", h.kickoff)
	r.Post("/Group/{group}/$davinci-data-export", h.kickoff)
	r.Get("/Group/{group}/$export", h.kickoff)
	r.Post("/Group/{group}/$export", h.kickoff)
	r.Get("/bulk-status/{id}", h.status)
	r.Delete("/bulk-status/{id}", h.deleteExport)
	r.Get("/bulk-files/{id}/{digest}", h.file)
}

// authenticate answers 401 and returns false when no partner is named,
// 403 when its scope does not cover the route (scopes.go).
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	c, ok := h.caller(w, r)
	return c.PartnerID, ok
}

// base is the absolute URL of /fhir, from Deps.BaseURL or the request.
func (h *Handler) base(r *http.Request, suffixStart int) string {
	if h.d.BaseURL != "" {
		return h.d.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.Path[:suffixStart]
}

func (h *Handler) kickoff(w http.ResponseWriter, r *http.Request) {
	now := h.d.Now()
	c, ok := h.caller(w, r)
	if !ok {
		return
	}
	requester := c.PartnerID
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("op", "bulk-kickoff"))
	// A kick-off starts a workflow that reads every matched member's data:
	// it counts against the requester's rate as a $member-match does.
	if wait := h.throttle.pace(requester, now); wait > 0 {
		throttled(log, "bulk kick-off", wait, "rate").write(w)
		return
	}
	if !preferAsync(r.Header.Values("Prefer")) {
		writeOutcome(w, http.StatusBadRequest, issue("required", OutcomeInvalid, "a Bulk Data kick-off needs the header Prefer: respond-async"))
		return
	}
	k, perr := h.parseKickoff(w, r)
	if perr != nil {
		log.Info("bulk kick-off refused", zap.String("param", perr.Param))
		is := issue(perr.Code, OutcomeInvalid, perr.Error())
		writeOutcome(w, http.StatusBadRequest, is)
		return
	}
	// Every type exported (all we export when _type is absent) needs read.
	types := k.Types
	if len(types) == 0 {
		types = export.SupportedTypes
	}
	for _, t := range types {
		if !c.Permits(t, Read) {
			log.Info("bulk kick-off refused", zap.String("outcome", OutcomeInsufficientScope))
			insufficientScope("system/" + t + ".r (or system/*.r) for every type exported").write(w)
			return
		}
	}
	start := strings.Index(r.URL.Path, "/Patient/$export")
	var batch []string // the members of a $bulk-member-match's MatchedMembers Group
	if g := chi.URLParam(r, "group"); g != "" {
		start = strings.Index(r.URL.Path, "/Group/")
		if g != MatchedGroupID(requester) {
			ids, found, err := h.bulkMatchedGroup(r.Context(), requester, g)
			if err != nil {
				log.Error("bulk kick-off", zap.Error(err))
				writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be started"))
				return
			}
			if !found {
				writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such Group"))
				return
			}
			batch = ids
		}
	}
	members, err := h.grantedMembers(r.Context(), requester, now)
	if batch != nil {
		// Only the Group's members, and only while their grants hold.
		members = slices.DeleteFunc(members, func(g store.MatchGrant) bool { return !slices.Contains(batch, g.MemberID) })
	}
	if err != nil {
		log.Error("bulk kick-off", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be started"))
		return
	}
	if len(k.Patients) > 0 {
		var all bool
		if members, all = h.onlyPatients(members, k.Patients); !all {
			members = nil // one patient not granted refuses them all: never a part of what was asked
		}
	}
	if len(members) == 0 {
		log.Info("bulk kick-off refused", zap.String("outcome", OutcomeConsentDenied))
		writeOutcome(w, http.StatusForbidden, issue("forbidden", OutcomeConsentDenied,
			"you hold no match of a member whose consent is in force: match the member with $member-match first"))
		return
	}
	id, err := uuid.NewV7()
	if err != nil {
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be started"))
		return
	}
	base := h.base(r, max(start, 0))
	k.TransferID, k.Requester, k.TransactionTime = id.String(), requester, now.UTC().Truncate(time.Millisecond)
	k.MemberIDs = make([]string, len(members))
	for i, g := range members {
		k.MemberIDs[i] = g.MemberID
		if g.TransferID != "" {
			if k.MatchTransfers == nil {
				k.MatchTransfers = map[string]string{}
			}
			k.MatchTransfers[g.MemberID] = g.TransferID
		}
	}
	k.Request = requestURL(r, base, start)
	if err := h.d.Exports.StartExport(r.Context(), k); err != nil {
		log.Error("bulk kick-off", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be started"))
		return
	}
	log.Info("bulk export accepted", zap.String("transfer_id", k.TransferID), zap.Int("members", len(k.MemberIDs)))
	w.Header().Set("Content-Location", base+"/bulk-status/"+k.TransferID)
	writeFHIR(w, http.StatusAccepted, fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
		Severity: "information", Code: "informational", Diagnostics: "export accepted: poll the Content-Location",
	}}})
}

// requestURL is the kick-off URL as the manifest's request echoes it.
func requestURL(r *http.Request, base string, start int) string {
	u := base + r.URL.Path[max(start, 0):]
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u
}

func preferAsync(vs []string) bool {
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// parseKickoff reads the kick-off parameters: the query string, and for a
// POST the Parameters body (Bulk Data v2).
func (h *Handler) parseKickoff(w http.ResponseWriter, r *http.Request) (Kickoff, *InputError) {
	vals := map[string][]string{}
	var patients []string
	for k, v := range r.URL.Query() {
		vals[k] = append(vals[k], v...)
	}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			return Kickoff{}, &InputError{Code: "structure", Msg: "the body could not be read"}
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if !fhirJSON(r.Header.Get("Content-Type")) {
				return Kickoff{}, &InputError{Code: "not-supported", Msg: "send the parameters as application/fhir+json"}
			}
			var p fhir.Parameters
			if err := fhir.DecodeResource(body, "Parameters", &p); err != nil {
				return Kickoff{}, &InputError{Code: "structure", Msg: "the body must be a Parameters resource"}
			}
			for _, prm := range p.Parameter {
				if prm.Name == paramPatient {
					ref, perr := patientParam(prm)
					if perr != nil {
						return Kickoff{}, perr
					}
					patients = append(patients, ref)
					continue
				}
				if prm.Value == nil || len(prm.Part) > 0 || len(prm.Resource) > 0 || len(prm.ModifierExtension) > 0 {
					return Kickoff{}, &InputError{Param: prm.Name, Code: "not-supported", Msg: "must carry a simple value"}
				}
				var s string
				if err := json.Unmarshal(prm.Value.JSON, &s); err != nil {
					return Kickoff{}, &InputError{Param: prm.Name, Code: "invalid", Msg: "must carry a string, code or instant"}
				}
				vals[prm.Name] = append(vals[prm.Name], s)
			}
		}
	}
	k := Kickoff{Patients: patients}
	for name, vs := range vals {
		switch name {
		case paramOutputFormat:
			if len(vs) != 1 || !slices.Contains(outputFormats, vs[0]) {
				return k, &InputError{Param: name, Code: "not-supported", Msg: "only application/fhir+ndjson is supported"}
			}
		case paramSince:
			if len(vs) != 1 {
				return k, &InputError{Param: name, Code: "invalid", Msg: "may be given once"}
			}
			t, err := time.Parse(time.RFC3339Nano, vs[0])
			if err != nil || !strings.Contains(vs[0], "T") {
				return k, &InputError{Param: name, Code: "invalid", Msg: "must be a FHIR instant (YYYY-MM-DDThh:mm:ss+zz:zz)"}
			}
			t = t.UTC()
			k.Since = &t
		case paramType:
			for _, v := range vs {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if !export.Supported(t) && t != export.ProvenanceType {
						return k, &InputError{Param: name, Code: "not-supported",
							Msg: "names a resource type we do not export (we export " + strings.Join(export.SupportedTypes, ", ") + ", with Provenance)"}
					}
					if t != export.ProvenanceType && !slices.Contains(k.Types, t) {
						k.Types = append(k.Types, t)
					}
				}
			}
			if len(k.Types) == 0 {
				// _type=Provenance alone: the Provenance of nothing.
				return k, &InputError{Param: name, Code: "not-supported", Msg: "Provenance comes with the resources it is about: name at least one of them"}
			}
			slices.Sort(k.Types)
		default:
			return k, &InputError{Param: name, Code: "not-supported", Msg: "is not a parameter we support (we support _type, _since and _outputFormat, and patient in a POST body)"}
		}
	}
	return k, nil
}

// patientParam reads a patient parameter: a reference Patient/[id].
func patientParam(prm fhir.Parameter) (string, *InputError) {
	var ref fhir.Reference
	ok, err := prm.Value.Decode("Reference", &ref)
	if !ok || err != nil || len(prm.Part) > 0 || len(prm.Resource) > 0 || len(prm.ModifierExtension) > 0 {
		return "", &InputError{Param: paramPatient, Code: "invalid", Msg: "must carry a valueReference"}
	}
	id, found := strings.CutPrefix(ref.Reference, "Patient/")
	if !found || id == "" || strings.Contains(id, "/") {
		return "", &InputError{Param: paramPatient, Code: "invalid", Msg: "must reference Patient/[id]"}
	}
	return ref.Reference, nil
}

// onlyPatients keeps the grants of the members whose Patient is among
// refs; ok is false when a ref names no member of grants (a patient the
// requester did not match, or whose consent is no longer in force).
func (h *Handler) onlyPatients(grants []store.MatchGrant, refs []string) (kept []store.MatchGrant, ok bool) {
	if h.d.PatientRef == nil {
		return nil, false
	}
	found := map[string]bool{}
	for _, g := range grants {
		if ref := h.d.PatientRef(g.MemberID); slices.Contains(refs, ref) {
			found[ref] = true
			kept = append(kept, g)
		}
	}
	for _, r := range refs {
		if !found[r] {
			return nil, false
		}
	}
	return kept, true
}

// grantedMembers are the grants in force of requester at now.
func (h *Handler) grantedMembers(ctx context.Context, requester string, now time.Time) ([]store.MatchGrant, error) {
	gs, err := h.d.Store.MatchGrants(ctx, requester)
	if err != nil {
		return nil, err
	}
	var out []store.MatchGrant
	for _, g := range gs {
		if g.Valid(now) {
			out = append(out, g)
		}
	}
	return out, nil
}

// job returns the requester's served export with id, or answers 404:
// another partner's export is as unknown as one that does not exist.
func (h *Handler) job(w http.ResponseWriter, r *http.Request, requester string) (transfer.Transfer, bool) {
	t, err := h.d.Store.GetTransfer(r.Context(), chi.URLParam(r, "id"))
	if err == nil && (t.PartnerID != requester || t.ClientID != ClientID(requester)) {
		err = store.ErrNotFound
	}
	if err == nil && ((t.Export != nil && t.Export.Withdrawn) ||
		(t.State == transfer.StateFailed && t.Error != nil && t.Error.Type == transfer.ErrorCancelled)) {
		err = store.ErrNotFound // deleted or expired
	}
	if errors.Is(err, store.ErrNotFound) {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such export (it may have been deleted or have expired)"))
		return t, false
	}
	if err != nil {
		h.d.Logger.Error("bulk export", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be read"))
		return t, false
	}
	return t, true
}

// prepared reports whether the export's files are built.
func prepared(s transfer.State) bool {
	switch s {
	case transfer.StatePayloadPrepared, transfer.StateSent, transfer.StateAcknowledged, transfer.StateComplete:
		return true
	}
	return false
}

// BulkManifest is the Bulk Data complete-status body.
type BulkManifest struct {
	TransactionTime     string           `json:"transactionTime"`
	Request             string           `json:"request"`
	RequiresAccessToken bool             `json:"requiresAccessToken"`
	Output              []BulkOutputFile `json:"output"`
	Error               []BulkOutputFile `json:"error"`
}

// BulkOutputFile is an entry of BulkManifest.output or .error.
type BulkOutputFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count,omitempty"`
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	requester, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	t, ok := h.job(w, r, requester)
	if !ok {
		return
	}
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("transfer_id", t.ID))
	if t.State == transfer.StateFailed {
		status, code := http.StatusInternalServerError, "exception"
		typ := transfer.ErrorInternal
		if t.Error != nil {
			typ = t.Error.Type
		}
		if typ == transfer.ErrorConsentDenied {
			status, code = http.StatusForbidden, "forbidden"
		}
		writeOutcome(w, status, issue(code, typ, "the export failed: "+typ))
		return
	}
	if !prepared(t.State) || t.Export == nil {
		w.Header().Set("X-Progress", progress(t.State))
		w.Header().Set("Retry-After", strconv.Itoa(int((h.d.StatusRetryAfter+time.Second-1)/time.Second)))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	man, ok := h.manifest(w, r, t)
	if !ok {
		return
	}
	if t.State == transfer.StatePayloadPrepared {
		// The export is sent when the requester first sees its files: the
		// workflow must know before the manifest leaves.
		if err := h.d.Exports.ManifestServed(r.Context(), t.ID); err != nil {
			log.Error("bulk status: telling the export", zap.Error(err))
			w.Header().Set("Retry-After", "5")
			writeOutcome(w, http.StatusServiceUnavailable, issue("transient", OutcomeError, "try again shortly"))
			return
		}
	}
	base := h.base(r, strings.Index(r.URL.Path, "/bulk-status/"))
	out := BulkManifest{TransactionTime: man.TransactionTime, Request: man.Request, RequiresAccessToken: true,
		Output: []BulkOutputFile{}, Error: []BulkOutputFile{}}
	for _, f := range man.Files {
		out.Output = append(out.Output, BulkOutputFile{Type: f.Type, URL: base + "/bulk-files/" + t.ID + "/" + f.SHA256, Count: f.Count})
	}
	if exp, err := time.Parse(time.RFC3339Nano, man.Expires); err == nil {
		w.Header().Set("Expires", exp.UTC().Format(http.TimeFormat))
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}

// progress is the X-Progress of an export in state s.
func progress(s transfer.State) string {
	switch s {
	case transfer.StateInitiated, transfer.StateIdentityPending:
		return "checking match grants"
	case transfer.StateConsentVerified:
		return "building files"
	}
	return string(s)
}

// manifest reads the export's BulkManifest, or answers.
func (h *Handler) manifest(w http.ResponseWriter, r *http.Request, t transfer.Transfer) (export.BulkManifest, bool) {
	art, err := h.d.Store.GetArtifact(r.Context(), t.Export.ManifestSHA256)
	if errors.Is(err, store.ErrWithdrawn) || errors.Is(err, store.ErrNotFound) {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such export (it may have been deleted or have expired)"))
		return export.BulkManifest{}, false
	}
	var man export.BulkManifest
	if err == nil {
		man, err = export.ParseBulkManifest(art.Data)
	}
	if err != nil {
		h.d.Logger.Error("bulk export manifest", zap.String("transfer_id", t.ID), zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be read"))
		return man, false
	}
	if exp, err := time.Parse(time.RFC3339Nano, man.Expires); err == nil && h.d.Now().After(exp) {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "the export has expired"))
		return man, false
	}
	return man, true
}

func (h *Handler) deleteExport(w http.ResponseWriter, r *http.Request) {
	requester, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	t, ok := h.job(w, r, requester)
	if !ok {
		return
	}
	if t.State == transfer.StateFailed {
		writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such export (it has ended)"))
		return
	}
	if err := h.d.Exports.DeleteExport(r.Context(), t.ID); err != nil {
		h.d.Logger.Error("bulk delete", zap.String("transfer_id", t.ID), zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the export could not be deleted"))
		return
	}
	h.d.Logger.Info("bulk export deleted", zap.String("requester", requester), zap.String("transfer_id", t.ID))
	writeFHIR(w, http.StatusAccepted, fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
		Severity: "information", Code: "informational", Diagnostics: "export deleted",
	}}})
}

func (h *Handler) file(w http.ResponseWriter, r *http.Request) {
	now := h.d.Now()
	c, ok := h.caller(w, r)
	if !ok {
		return
	}
	requester := c.PartnerID
	t, ok := h.job(w, r, requester)
	if !ok {
		return
	}
	notFound := func() { writeOutcome(w, http.StatusNotFound, issue("not-found", "", "no such file")) }
	if !prepared(t.State) || t.Export == nil {
		notFound()
		return
	}
	man, ok := h.manifest(w, r, t)
	if !ok {
		return
	}
	digest := chi.URLParam(r, "digest")
	f, ok := man.File(digest)
	if !ok {
		notFound()
		return
	}
	if !c.readsFile(f.Type) {
		insufficientScope("system/" + f.Type + ".r (or system/*.r)").write(w)
		return
	}
	log := h.d.Logger.With(zap.String("requester", requester), zap.String("transfer_id", t.ID), zap.String("sha256", digest))
	// The member's consent, again: the grant in force now must still
	// reach the member, with a scope that covers the file.
	gs, err := h.grantedMembers(r.Context(), requester, now)
	if err != nil {
		log.Error("bulk file", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the file could not be read"))
		return
	}
	i := slices.IndexFunc(gs, func(g store.MatchGrant) bool { return g.MemberID == f.MemberID })
	switch {
	case i < 0:
		log.Info("bulk file refused", zap.String("reason", ConsentPeriod))
		writeOutcome(w, http.StatusForbidden, issue("forbidden", OutcomeConsentDenied, "the member's consent no longer permits this disclosure"))
		return
	case f.Sensitive && gs[i].ConsentScope != transfer.ScopeSensitive:
		log.Info("bulk file refused", zap.String("reason", "consent_scope_narrowed"))
		writeOutcome(w, http.StatusForbidden, issue("forbidden", OutcomeConsentDenied, "the member's consent no longer covers sensitive data"))
		return
	}
	art, err := h.d.Store.GetArtifact(r.Context(), digest)
	if errors.Is(err, store.ErrWithdrawn) || errors.Is(err, store.ErrNotFound) {
		notFound()
		return
	}
	if err != nil {
		log.Error("bulk file", zap.Error(err))
		writeOutcome(w, http.StatusInternalServerError, issue("exception", OutcomeError, "the file could not be read"))
		return
	}
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(art.Data)))
	if _, err := w.Write(art.Data); err != nil {
		log.Info("bulk file not delivered", zap.Error(err))
		return
	}
	// Evidence of who read which file, then the workflow's count. The
	// file has left: a failure here is logged, not answered.
	key, _ := uuid.NewV7()
	if _, err := h.d.Store.RecordAccess(r.Context(), []store.Access{{TransferID: t.ID,
		Event: transfer.FileDownload(requester, key.String(), digest, f.Type, f.MemberID, f.Count).Stamped(now.UTC()),
	}}); err != nil {
		log.Error("bulk file: recording the download", zap.Error(err))
	}
	if err := h.d.Exports.FileDownloaded(r.Context(), t.ID, digest); err != nil {
		log.Error("bulk file: telling the export", zap.Error(err))
	}
}

// Grant is the match grant m gives its requester: the member, and the
// consent's id (its resource id, else the SHA-256 of its JSON as
// received), scope and last instant.
func (m Match) Grant() store.MatchGrant {
	return store.MatchGrant{Requester: m.Requester, MemberID: m.MemberID, ConsentID: consentID(m.ConsentJSON),
		ConsentScope: m.Consent.Scope, ConsentExpires: m.Consent.Expires, GrantedAt: m.At, TransferID: m.TransferID}
}
