package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ServeStore is what a served export's activities use of the store.
type ServeStore interface {
	store.Members   // the members exported
	store.Transfers // every step recorded
	store.Artifacts // the export's files and BulkManifest
	store.Grants    // the requester's match grants
}

// Serve holds the activities of a bulk export we serve to a partner
// (workflows.ServeExport; we are the old payer): CheckGrants and
// PrepareServedExport. Transfer's WithdrawExport undoes the latter.
type Serve struct {
	Env
	Store  ServeStore
	Source export.Source
	// Transmitter is us as the Provenance of served exports names the
	// transmitter; zero: export.DefaultPayerName by display.
	Transmitter fhir.Reference
}

// BulkManifestName is the artifact name of a served export's BulkManifest.
const BulkManifestName = "bulk-manifest.json"

// GrantedMember is a member a requester may reach: its match grant's
// consent, scope and expiry.
type GrantedMember struct {
	MemberID     string
	ConsentID    string
	ConsentScope string
	Expires      time.Time
}

// GrantsInput names the members a served export asks for.
type GrantsInput struct {
	TransferID string
	Requester  string
	MemberIDs  []string
}

// Grants is the outcome of a grant check: the members still reachable,
// and how many asked for are not (expired, or never matched).
type Grants struct {
	Members []GrantedMember
	Dropped int
}

// CheckGrants re-checks, against the clock, that the requester still holds
// a match grant in force for each member the export asks for, and records
// the check. A member whose grant lapsed since the kick-off is left out;
// none left is a denial for the workflow to decide on, not an error.
func (a *Serve) CheckGrants(ctx context.Context, in GrantsInput) (Grants, error) {
	gs, err := a.Store.MatchGrants(ctx, in.Requester)
	if err != nil {
		return Grants{}, appError(ctx, NameCheckGrants, err)
	}
	now := a.now()
	byMember := map[string]store.MatchGrant{}
	for _, g := range gs {
		byMember[g.MemberID] = g
	}
	var out Grants
	var members []transfer.GrantDetail
	for _, id := range in.MemberIDs {
		g, ok := byMember[id]
		if !ok || !g.Valid(now) {
			out.Dropped++
			continue
		}
		out.Members = append(out.Members, GrantedMember{MemberID: id, ConsentID: g.ConsentID, ConsentScope: g.ConsentScope, Expires: g.ConsentExpires})
		members = append(members, transfer.NewGrantDetail(id, g.ConsentID, g.ConsentScope, g.ConsentExpires, g.GrantedAt))
	}
	result := transfer.ConsentVerified
	if len(out.Members) == 0 {
		result = transfer.ConsentDenied
	}
	if err := a.record(ctx, a.Store, in.TransferID, store.Change{
		Event: transfer.GrantsChecked(in.Requester, members, out.Dropped, result).Stamped(now),
	}); err != nil {
		return Grants{}, appError(ctx, NameCheckGrants, err)
	}
	return out, nil
}

// ServeInput is a served bulk export to build.
type ServeInput struct {
	TransferID      string
	Requester       string
	Members         []GrantedMember
	Types           []string   // empty: every supported type
	Since           *time.Time // Bulk Data _since
	TransactionTime time.Time
	Request         string // the kick-off URL
	Expires         time.Time
}

// PrepareServedExport builds the NDJSON files of a served bulk export —
// per member, one file per resource type within the member's consent scope
// (export.Build: a regular consent leaves out sensitive resources) and one
// Provenance file naming us as transmitter of each resource — and stores
// them and the export's BulkManifest by digest. Deterministic for the same
// input, so a retry stores the same digests. Undone by WithdrawExport.
func (a *Serve) PrepareServedExport(ctx context.Context, in ServeInput) (Prepared, error) {
	fail := func(err error) (Prepared, error) { return Prepared{}, appError(ctx, NamePrepareServedExport, err) }
	// Each member's source call may take longer than the heartbeat
	// timeout: heartbeat for as long as the worker works on the export.
	defer heartbeat(ctx, heartbeatInterval(ctx))()
	man := export.BulkManifest{
		Version: export.BulkManifestVersion, TransferID: in.TransferID, Requester: in.Requester, Request: in.Request,
		TransactionTime: in.TransactionTime.UTC().Format(time.RFC3339Nano), Expires: in.Expires.UTC().Format(time.RFC3339Nano),
		Files: []export.BulkFile{},
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
	ds := transfer.DataScope{ResourceTypes: in.Types, Since: in.Since}
	for i, gm := range in.Members {
		m, err := a.Store.GetMember(ctx, gm.MemberID)
		if err != nil {
			return fail(err)
		}
		build := func(scope string) (*export.Export, error) {
			return export.Build(ctx, export.Input{
				TransferID: in.TransferID, PartnerID: in.Requester, ConsentID: gm.ConsentID, ConsentScope: scope,
				DataScope: ds, Member: m, Source: a.Source, CreatedAt: in.TransactionTime,
			})
		}
		exp, err := build(gm.ConsentScope)
		if err != nil {
			return fail(err)
		}
		// Which files hold what a regular consent leaves out: a download
		// under a grant narrowed to regular since must not get them.
		sensitive := map[string]bool{}
		if gm.ConsentScope == transfer.ScopeSensitive {
			reg, err := build(transfer.ScopeRegular)
			if err != nil {
				return fail(err)
			}
			regular := map[string]int{}
			for _, f := range reg.Files {
				regular[f.Type] = f.Count
			}
			for _, f := range exp.Files {
				if f.Count != regular[f.Type] {
					sensitive[f.Type], sensitive[export.ProvenanceType] = true, true
				}
			}
		}
		man.ExcludedSensitive += exp.ExcludedSensitive
		files := exp.Files
		prov, ok, err := export.ProvenanceFile(exp.Files, a.transmitter(), man.TransactionTime)
		if err != nil {
			return fail(err)
		}
		if ok {
			files = append(files, prov)
		}
		for _, f := range files {
			if err := put(fmt.Sprintf("%s.%d.ndjson", f.Type, i+1), contentTypeNDJSON, f.Data, f.SHA256); err != nil {
				return fail(err)
			}
			man.Files = append(man.Files, export.BulkFile{Type: f.Type, MemberID: gm.MemberID, ConsentScope: gm.ConsentScope,
				Sensitive: sensitive[f.Type], Count: f.Count, SHA256: f.SHA256, Bytes: int64(len(f.Data))})
		}
	}
	b, err := json.Marshal(man)
	if err != nil {
		return fail(fault.Wrap(fault.Validation, ErrTypeValidation, "bulk manifest", err))
	}
	info := transfer.ExportInfo{ManifestSHA256: digest(b), ExcludedSensitive: man.ExcludedSensitive}
	for _, f := range man.Files {
		info.Files = append(info.Files, transfer.ExportFile{Type: f.Type, Count: f.Count, SHA256: f.SHA256, Bytes: f.Bytes})
	}
	if err := put(BulkManifestName, contentTypeManifest, b, info.ManifestSHA256); err != nil {
		return fail(err)
	}
	a.log(in.TransferID).Info("served export prepared", zap.String("manifest_sha256", info.ManifestSHA256),
		zap.Int("members", len(in.Members)), zap.Int("files", len(man.Files)))
	return Prepared{Export: info}, nil
}

// transmitter is us as Provenance names the transmitter of the data.
func (a *Serve) transmitter() fhir.Reference {
	if a.Transmitter.Display != "" || a.Transmitter.Identifier != nil || a.Transmitter.Reference != "" {
		return a.Transmitter
	}
	return fhir.Reference{Display: export.DefaultPayerName}
}
