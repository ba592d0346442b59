package transfer

import (
	"encoding/json"
	"testing"
	"time"
)

// TestEventsKeepTheirRecordedForm pins every event constructor to the
// type, key, actor and detail JSON the event was recorded with before the
// constructors existed: each want is the map literal the recording code
// built then. The audit log's leaf hashes, golden files and workflow
// histories hold these bytes.
func TestEventsKeepTheirRecordedForm(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123000, time.UTC)
	later := at.Add(48 * time.Hour)
	since := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	types := []string{"Patient", "Coverage"}
	files := []ExportFile{{Type: "Patient", Count: 1, SHA256: "aa", Bytes: 10}, {Type: "Coverage", Count: 2, SHA256: "bb", Bytes: 20}}
	two, zero := 2, 0
	manifest := "mm"
	rationale := &Rationale{Rule: "score", Summary: "s", Fields: []FieldContribution{{Field: "given", Level: "exact", Weight: 2.5}},
		RunnerUp: &RunnerUp{MemberID: "m2", Score: 0.4}}
	fileMaps := []map[string]any{{"type": "Patient", "count": 1, "sha256": "aa", "bytes": int64(10)},
		{"type": "Coverage", "count": 2, "sha256": "bb", "bytes": int64(20)}}
	cases := []struct {
		name       string
		ev         Event
		typ, key   string
		state      State
		actor      string
		want       map[string]any // nil: no detail
		wantAbsent bool
	}{
		{"request received", RequestReceived("c1", RequestDetail{PartnerID: "p", ClientID: "c1", IdempotencyKeyHMAC: "h", RequestID: "r",
			ConsentID: "k", CorrelationIDHMAC: "cc", Direction: DirectionImport, ResourceTypes: &[]string{}, Since: &since}),
			EventState, "state:initiated", StateInitiated, "client:c1",
			map[string]any{"partner_id": "p", "client_id": "c1", "idempotency_key_hmac": "h", "request_id": "r", "consent_id": "k",
				"correlation_id_hmac": "cc", "direction": "import", "resource_types": []string{}, "since": since}, false},
		{"request received, plain", RequestReceived("c1", RequestDetail{PartnerID: "p", ClientID: "c1", IdempotencyKeyHMAC: "h", RequestID: "r"}),
			EventState, "state:initiated", StateInitiated, "client:c1",
			map[string]any{"partner_id": "p", "client_id": "c1", "idempotency_key_hmac": "h", "request_id": "r", "consent_id": ""}, false},
		{"export requested", ExportRequested("np", "https://x/$export", []string{"m1"}, types, at, map[string]string{"m1": "t1"}),
			EventState, "state:initiated", StateInitiated, "partner:np",
			map[string]any{"operation": "bulk-export", "request": "https://x/$export", "member_ids": []string{"m1"},
				"transaction_time": at.Format(time.RFC3339Nano), "requester": "np", "types": types, "match_transfers": map[string]string{"m1": "t1"}}, false},
		{"export requested, plain", ExportRequested("np", "u", nil, nil, at, nil), EventState, "state:initiated", StateInitiated, "partner:np",
			map[string]any{"operation": "bulk-export", "request": "u", "member_ids": []string(nil),
				"transaction_time": at.Format(time.RFC3339Nano), "requester": "np"}, false},
		{"member-match received", MemberMatchReceived(MemberMatchDetail{RequestID: "r", Requester: "np", Presentation: "pp", ConsentID: "Consent/1", CoverageToLink: true}),
			EventState, "state:initiated", StateInitiated, "partner:np",
			map[string]any{"operation": "member-match", "request_id": "r", "requester": "np", "presentation": "pp", "consent_id": "Consent/1", "coverage_to_link": true}, false},
		{"bulk match received", BulkMatchReceived("b", "np", 3), EventState, "state:initiated", StateInitiated, "partner:np",
			map[string]any{"operation": "bulk-member-match", "batch_id": "b", "requester": "np", "members": 3}, false},

		{"entered, no detail", Entered(StateComplete, nil), EventState, "state:complete", StateComplete, "", nil, true},
		{"import pending", ImportPending("old"), EventState, "state:identity_pending", StateIdentityPending, "",
			map[string]any{"direction": "import", "partner_id": "old"}, false},
		{"serve pending", ServePending([]string{"m1"}), EventState, "state:identity_pending", StateIdentityPending, "",
			map[string]any{"member_ids": []string{"m1"}, "basis": "match_grant"}, false},
		{"member-match pending", MemberMatchPending(), EventState, "state:identity_pending", StateIdentityPending, "",
			map[string]any{"basis": "member-match"}, false},
		{"bulk match pending", BulkMatchPending(3), EventState, "state:identity_pending", StateIdentityPending, "",
			map[string]any{"basis": "bulk-member-match", "members": 3}, false},

		{"identity decided", IdentityDecided(IdentityOutcome{Status: IdentityAmbiguous, Score: 0.7, Candidates: []string{"m1", "m2"}, ReviewedBy: "ops", Rationale: rationale}),
			EventIdentityDecision, "identity:decision", "", "",
			map[string]any{"status": "ambiguous", "score": 0.7, "candidates": []string{"m1", "m2"}, "reviewed_by": "ops", "rule": "score", "summary": "s",
				"fields":    []map[string]any{{"field": "given", "level": "exact", "weight": 2.5}},
				"runner_up": map[string]any{"member_id": "m2", "score": 0.4}}, false},
		{"identity decided, plain", IdentityDecided(IdentityOutcome{Status: IdentityResolved, MemberID: "m1", Score: 1, Rationale: &Rationale{Rule: "exact"}}),
			EventIdentityDecision, "identity:decision", "", "",
			map[string]any{"status": "resolved", "score": 1.0, "member_id": "m1", "rule": "exact", "summary": ""}, false},
		{"identity decided, no rationale", IdentityDecided(IdentityOutcome{Status: IdentityNoMatch}), EventIdentityDecision, "identity:decision", "", "",
			map[string]any{"status": "no_match", "score": 0.0}, false},
		{"in review", InReview(2), EventState, "state:manual_review", StateManualReview, "", map[string]any{"candidates": 2}, false},
		{"review approved", ReviewDecided("approve", "ops", []string{"m1"}, "m1"), EventReviewDecision, "review:decision", "", "reviewer:ops",
			map[string]any{"decision": "approve", "reviewer": "ops", "candidates": []string{"m1"}, "member_id": "m1"}, false},
		{"review rejected", ReviewDecided("reject", "ops", nil, ""), EventReviewDecision, "review:decision", "", "reviewer:ops",
			map[string]any{"decision": "reject", "reviewer": "ops", "candidates": []string(nil)}, false},
		{"review noted", ReviewNoted("ops", "reject", "dd", 12), EventReviewNote, "review:note", "", "reviewer:ops",
			map[string]any{"decision": "reject", "reason_hmac": "dd", "reason_bytes": 12}, false},

		{"consent checked", ConsentChecked("initial", Consent{ID: "k", Status: "active", Scope: "regular", PeriodStart: since, PeriodEnd: later, GrantedAt: at},
			ConsentOutcome{Status: ConsentDenied, Reason: "no"}), EventConsentChecked, "consent:check:initial", "", "",
			map[string]any{"phase": "initial", "consent_id": "k", "asserted_status": "active", "scope": "regular", "period_start": "2020-01-01T00:00:00Z",
				"result": "denied", "period_end": "2025-03-06T05:06:07Z", "granted_at": "2025-03-04T05:06:07Z", "reason": "no"}, false},
		{"consent checked, plain", ConsentChecked("before_send", Consent{ID: "k", Status: "active", Scope: "regular", PeriodStart: since},
			ConsentOutcome{Status: ConsentVerified}), EventConsentChecked, "consent:check:before_send", "", "",
			map[string]any{"phase": "before_send", "consent_id": "k", "asserted_status": "active", "scope": "regular", "period_start": "2020-01-01T00:00:00Z",
				"result": "verified"}, false},
		{"grants checked", GrantsChecked("np", []GrantDetail{NewGrantDetail("m1", "Consent/1", "regular", later, at)}, 1, ConsentVerified),
			EventConsentChecked, "consent:check:grants", "", "",
			map[string]any{"phase": "grants", "requester": "np", "dropped": 1, "result": "verified", "members": []map[string]any{{"member_id": "m1",
				"consent_id": "Consent/1", "scope": "regular", "expires": "2025-03-06T05:06:07Z", "granted_at": "2025-03-04T05:06:07Z"}}}, false},
		{"grants checked, none", GrantsChecked("np", nil, 2, ConsentDenied), EventConsentChecked, "consent:check:grants", "", "",
			map[string]any{"phase": "grants", "requester": "np", "members": []map[string]any{}, "dropped": 2, "result": "denied"}, false},
		{"consent verified", ConsentVerifiedFor("m1", ConsentOutcome{ConsentID: "k", Scope: "sensitive"}), EventState, "state:consent_verified", StateConsentVerified, "",
			map[string]any{"consent_id": "k", "scope": "sensitive", "member_id": "m1"}, false},
		{"import verified", ImportVerified("old", "pm", "pp", "k", "regular"), EventState, "state:consent_verified", StateConsentVerified, "",
			map[string]any{"partner_member_id": "pm", "partner_patient_id": "pp", "consent_id": "k", "scope": "regular", "verified_by": "partner:old"}, false},
		{"serve verified", ServeVerified([]string{"m1"}, 1), EventState, "state:consent_verified", StateConsentVerified, "",
			map[string]any{"member_ids": []string{"m1"}, "dropped": 1}, false},
		{"match verified", MatchVerified("m1", "Consent/1", "regular", later), EventState, "state:consent_verified", StateConsentVerified, "",
			map[string]any{"member_id": "m1", "consent_id": "Consent/1", "scope": "regular", "expires": "2025-03-06T05:06:07Z", "result": "verified"}, false},
		{"consent rechecked", ConsentRechecked(ConsentOutcome{ConsentID: "k", Scope: "regular", Status: ConsentVerified}), EventConsentRechecked, "consent:before_send", "", "",
			map[string]any{"consent_id": "k", "scope": "regular", "result": "verified"}, false},

		{"export prepared", ExportPrepared(ExportInfo{ManifestSHA256: "mm", KID: "kid", Files: files, ExcludedSensitive: 1}, "ss"),
			EventState, "state:payload_prepared", StatePayloadPrepared, "",
			map[string]any{"manifest_sha256": "mm", "signature_sha256": "ss", "kid": "kid", "files": fileMaps,
				"resource_counts": map[string]any{"Patient": 1, "Coverage": 2}, "resources": 3, "excluded_sensitive": 1}, false},
		{"export prepared, empty", ExportPrepared(ExportInfo{ManifestSHA256: "mm"}, ""), EventState, "state:payload_prepared", StatePayloadPrepared, "",
			map[string]any{"manifest_sha256": "mm", "signature_sha256": "", "kid": "", "files": []map[string]any{},
				"resource_counts": map[string]any{}, "resources": 0, "excluded_sensitive": 0}, false},
		{"served prepared", ServedPrepared(ExportInfo{ManifestSHA256: "mm", Files: files}), EventState, "state:payload_prepared", StatePayloadPrepared, "",
			map[string]any{"manifest_sha256": "mm", "files": fileMaps, "resources": 3, "excluded_sensitive": 0}, false},
		{"import prepared", ImportPrepared(ExportInfo{ManifestSHA256: "mm", Files: files, TransactionTime: &at, Partial: true}, 3, 2),
			EventState, "state:payload_prepared", StatePayloadPrepared, "",
			map[string]any{"manifest_sha256": "mm", "files": 2, "resources": 3, "partial": true, "transaction_time": "2025-03-04T05:06:07.890Z", "round": 2}, false},

		{"delivered", Delivered(SentDetail{PartnerID: "p", Endpoint: "https://p/push", Attempt: 2, HTTPStatus: 202, PartnerStatus: "accepted", DeliveryKey: "dk"}),
			EventState, "state:sent", StateSent, "workflow",
			map[string]any{"partner_id": "p", "endpoint": "https://p/push", "attempt": int32(2), "http_status": 202,
				"partner_status": "accepted", "duplicate": false, "delivery_key": "dk"}, false},
		{"import sent", ImportSent("fhir", "t1", 3), EventState, "state:sent", StateSent, "workflow",
			map[string]any{"sink": "fhir", "location": "t1", "files": 3}, false},
		{"manifest fetched", ManifestFetched("np", 3), EventState, "state:sent", StateSent, "partner:np",
			map[string]any{"requester": "np", "files": 3, "via": "bulk-status"}, false},
		{"acknowledged, signed", Acknowledged("p", "r1", AckBySignal, "kid"), EventState, "state:acknowledged", StateAcknowledged, "partner:p",
			map[string]any{"receipt_id": "r1", "ack_via": "signal", "ack_signature": "verified", "ack_signature_kid": "kid", "ack_verified": true}, false},
		{"acknowledged, unsigned", Acknowledged("p", "r1", AckInResponse, ""), EventState, "state:acknowledged", StateAcknowledged, "partner:p",
			map[string]any{"receipt_id": "r1", "ack_via": "push_response", "ack_signature": "none", "ack_verified": true}, false},
		{"acknowledged, by word", Acknowledged("p", "r1", AckBySignal, ""), EventState, "state:acknowledged", StateAcknowledged, "partner:p",
			map[string]any{"receipt_id": "r1", "ack_via": "signal", "ack_signature": "none", "ack_verified": false}, false},
		{"import acknowledged", ImportAcknowledged("ndjson-dir", "rr"), EventState, "state:acknowledged", StateAcknowledged, "sink:ndjson-dir",
			map[string]any{"receipt_id": "rr", "via": "sink_readback"}, false},
		{"files downloaded", FilesDownloaded("np", 3), EventState, "state:acknowledged", StateAcknowledged, "partner:np",
			map[string]any{"files_downloaded": 3, "via": "downloads"}, false},

		{"match complete", MatchComplete("np", "m1", "Consent/1", "regular", later, at), EventState, "state:complete", StateComplete, "",
			map[string]any{"outcome": "matched", "member_id": "m1", "consent_id": "Consent/1", "scope": "regular", "expires": "2025-03-06T05:06:07Z",
				"grant": map[string]any{"requester": "np", "member_id": "m1", "consent_id": "Consent/1", "scope": "regular",
					"expires": "2025-03-06T05:06:07Z", "granted_at": "2025-03-04T05:06:07Z"}}, false},
		{"bulk match complete", BulkMatchComplete(3, map[string]int{"matched": 2, "error": 1}, "rr"), EventState, "state:complete", StateComplete, "",
			map[string]any{"members": 3, "outcomes": map[string]int{"matched": 2, "error": 1}, "result_sha256": "rr"}, false},

		{"failed", Failed(FailedDetail{ErrorType: ErrorReviewRejected, AfterState: StateManualReview, ReviewedBy: "ops"}),
			EventState, "state:failed", StateFailed, "",
			map[string]any{"error_type": "review_rejected", "after_state": "manual_review", "export_withdrawn": false, "reviewed_by": "ops"}, false},
		{"failed, withdrawn", Failed(FailedDetail{ErrorType: ErrorPartnerRejected, AfterState: StatePayloadPrepared, ExportWithdrawn: true}),
			EventState, "state:failed", StateFailed, "",
			map[string]any{"error_type": "partner_rejected", "after_state": "payload_prepared", "export_withdrawn": true}, false},
		{"import failed", ImportFailed(ImportFailedDetail{ErrorType: ErrorExportFailed, AfterState: StateConsentVerified, ExportDeleted: new(bool), StagedDiscarded: true}),
			EventState, "state:failed", StateFailed, "",
			map[string]any{"error_type": "export_failed", "after_state": "consent_verified", "export_deleted": false, "staged_discarded": true}, false},
		{"import failed, plain", ImportFailed(ImportFailedDetail{ErrorType: ErrorNoMatch, AfterState: StateIdentityPending}),
			EventState, "state:failed", StateFailed, "",
			map[string]any{"error_type": "no_match", "after_state": "identity_pending"}, false},
		{"bulk match cancelled", BulkMatchCancelled("partner:np", "deleted_by_requester", 3, 1), EventState, "state:failed", StateFailed, "partner:np",
			map[string]any{"error_type": "cancelled", "reason": "deleted_by_requester", "members": 3, "decided": 1, "after_state": "identity_pending"}, false},
		{"kick-off interrupted", KickoffInterrupted(), EventState, "state:failed", StateFailed, "api",
			map[string]any{"error_type": "cancelled", "reason": "kickoff_interrupted"}, false},
		{"match refused, consent", MatchRefused("consent_denied", ErrorConsentDenied, "consent_period", nil), EventState, "state:failed", StateFailed, "",
			map[string]any{"outcome": "consent_denied", "after_state": "identity_pending", "reason": "consent_period", "error_type": "consent_denied"}, false},
		{"match refused, several", MatchRefused("multiple_matches", ErrorNoMatch, "", &two), EventState, "state:failed", StateFailed, "",
			map[string]any{"outcome": "multiple_matches", "after_state": "identity_pending", "candidates": 2, "error_type": "no_match"}, false},
		{"match refused, several of none", MatchRefused("multiple_matches", ErrorNoMatch, "", &zero), EventState, "state:failed", StateFailed, "",
			map[string]any{"outcome": "multiple_matches", "after_state": "identity_pending", "candidates": 0, "error_type": "no_match"}, false},
		{"match aborted", MatchAborted("why", StateIdentityPending), EventState, "state:failed", StateFailed, "",
			map[string]any{"error_type": "internal", "reason": "why", "after_state": "identity_pending"}, false},

		{"send failed", SendFailed(SendFailedDetail{PartnerID: "p", Endpoint: "e", Attempt: 3, ErrorType: "downstream", ErrorClass: "downstream", HTTPStatus: 503, DeliveryKey: "dk"}),
			EventSendFailed, "send:attempt:3", "", "",
			map[string]any{"partner_id": "p", "endpoint": "e", "attempt": int32(3), "error_type": "downstream", "delivery_key": "dk",
				"error_class": "downstream", "http_status": 503}, false},
		{"send failed, unclassified", SendFailed(SendFailedDetail{PartnerID: "p", Endpoint: "e", Attempt: 1, ErrorType: "transport", DeliveryKey: "dk"}),
			EventSendFailed, "send:attempt:1", "", "",
			map[string]any{"partner_id": "p", "endpoint": "e", "attempt": int32(1), "error_type": "transport", "delivery_key": "dk"}, false},
		{"export withdrawn", ExportWithdrawn("partner_rejected", 2, &manifest), EventExportWithdrawn, "compensation:WithdrawExport", "", "workflow",
			map[string]any{"reason": "partner_rejected", "artifacts_withdrawn": 2, "manifest_sha256": "mm"}, false},
		{"export withdrawn, no export", ExportWithdrawn("expired", 0, nil), EventExportWithdrawn, "compensation:WithdrawExport", "", "workflow",
			map[string]any{"reason": "expired", "artifacts_withdrawn": 0}, false},
		{"phi purged", PHIPurged(4, 30*24*time.Hour), EventPHIPurged, "retention:phi_purged", "", "retention",
			map[string]any{"artifacts": 4, "retention_hours": int64(720)}, false},
		{"read", Read("c1", "", "GET /v1/transfers/{id}", "req"), EventRead, "read:req", "", "client:c1",
			map[string]any{"route": "GET /v1/transfers/{id}", "request_id": "req"}, false},
		{"read by a person", Read("c1", "ann", "GET /v1/transfers/{id}", "req"), EventRead, "read:req", "", "client:c1",
			map[string]any{"route": "GET /v1/transfers/{id}", "request_id": "req", "person": "ann"}, false},
		{"member read", MemberRead("c1", "ann", "GET /v1/members/{member_id}", "req", "m1"), EventRead, "read:req", "", "client:c1",
			map[string]any{"route": "GET /v1/members/{member_id}", "request_id": "req", "person": "ann", "member_id": "m1"}, false},
		{"file download", FileDownload("np", "u1", "aa", "Patient", "m1", 1), EventFileDownloaded, "download:u1", "", "partner:np",
			map[string]any{"sha256": "aa", "type": "Patient", "member_id": "m1", "count": 1}, false},
		{"member matched", MemberDecided(BulkMemberOutcome{Index: 2, Outcome: BulkOutcomeMatched, MemberID: "m1"}), EventMemberDecided, "member:2", "", "",
			map[string]any{"index": 2, "outcome": "matched", "member_id": "m1"}, false},
		{"member refused", MemberDecided(BulkMemberOutcome{Index: 0, Outcome: "consent_denied", MemberID: "m1", Reason: "consent_period"}), EventMemberDecided, "member:0", "", "",
			map[string]any{"index": 0, "outcome": "consent_denied", "reason": "consent_period"}, false},
		{"bulk result deleted", BulkResultDeleted("np", "rr"), EventBulkMatchDeleted, "bulk:deleted", "", "partner:np",
			map[string]any{"reason": "deleted_by_requester", "result_sha256": "rr"}, false},

		{"partner matched", PartnerMatched(PartnerMatchDetail{PartnerID: "old", Outcome: "resolved", HTTPStatus: 200, Attempt: 1,
			PartnerMember: &PartnerMember{MemberID: "pm", System: "", PatientID: "pp"}}), EventMemberMatch, "member_match", "", "",
			map[string]any{"partner_id": "old", "outcome": "resolved", "http_status": 200, "attempt": int32(1),
				"partner_member_id": "pm", "partner_member_system": "", "partner_patient_id": "pp"}, false},
		{"partner refused", PartnerMatched(PartnerMatchDetail{PartnerID: "old", Outcome: "no_match", HTTPStatus: 422, Attempt: 2, Reason: "no_match"}),
			EventMemberMatch, "member_match", "", "",
			map[string]any{"partner_id": "old", "outcome": "no_match", "http_status": 422, "attempt": int32(2), "reason": "no_match"}, false},
		{"import planned", ImportPlanned(nil, since, "run_off", "t0"), EventImportPlanned, "import_planned", "", "",
			map[string]any{"since": "2020-01-01T00:00:00Z", "since_source": "run_off", "resource_types": []string(nil), "run_off_of": "t0"}, false},
		{"import planned, window", ImportPlanned(types, since, "window", ""), EventImportPlanned, "import_planned", "", "",
			map[string]any{"since": "2020-01-01T00:00:00Z", "since_source": "window", "resource_types": types}, false},
		{"bulk kicked off", BulkKickedOff("old", "https://old/status/1", 2, 1, since, types), EventBulkKickOff, "bulk:kickoff:2", "", "",
			map[string]any{"partner_id": "old", "status_url": "https://old/status/1", "round": 2, "attempt": int32(1),
				"since": "2020-01-01T00:00:00Z", "resource_types": types}, false},
		{"bulk rekicked", BulkRekicked(2), EventImportRekicked, "bulk:rekickoff:2", "", "", map[string]any{"round": 2}, false},
		{"bulk manifest", BulkManifest(1, "mm", 3, 1, at, true), EventBulkManifest, "bulk:manifest:1", "", "",
			map[string]any{"round": 1, "manifest_sha256": "mm", "output_files": 3, "error_files": 1,
				"transaction_time": "2025-03-04T05:06:07.890Z", "requires_access_token": true}, false},
		{"bulk errors", BulkErrors(1, 2), EventBulkErrors, "bulk:errors:1", "", "", map[string]any{"round": 1, "error_files": 2, "partial": true}, false},
		{"bulk file", BulkFile("old", files[1], 2, 1, true), EventBulkFile, "bulk:file:1:true:Coverage:2", "", "",
			map[string]any{"partner_id": "old", "type": "Coverage", "count": 2, "sha256": "bb", "bytes": int64(20), "n": 2, "round": 1, "error_file": true}, false},
		{"bulk deleted", BulkDeleted("old", "https://old/status/1", "0123456789abcdef", "done"), EventBulkDeleted, "bulk:delete:0123456789abcdef", "", "",
			map[string]any{"partner_id": "old", "status_url": "https://old/status/1", "reason": "done"}, false},
		{"bulk delete failed", BulkDeleteFailed(2, "timeout"), EventBulkDeleteFailed, "bulk:delete-failed:2", "", "",
			map[string]any{"round": 2, "reason": "file_expired", "error_type": "timeout"}, false},
		{"import discarded", ImportDiscarded("no_match", true), EventImportDiscard, "compensation:DiscardImport", "", "",
			map[string]any{"reason": "no_match", "staged_files_removed": true}, false},
		{"import loaded", ImportLoaded(map[string]int{"Patient": 1}, 1, 2), EventImportLoaded, "import:loaded:2", "", "",
			map[string]any{"resources": map[string]int{"Patient": 1}, "batches": 1, "round": 2}, false},
		{"egress refused", EgressRefused(EgressRefusedDetail{PartnerID: "old", Operation: "download", Host: "files.old:443", Reason: "a loopback address"}),
			EventEgressRefused, "egress:refused:download:files.old:443", "", "",
			map[string]any{"partner_id": "old", "operation": "download", "host": "files.old:443", "reason": "a loopback address"}, false},
		{"import limit", ImportLimit(ImportLimitDetail{PartnerID: "old", Limit: "import_too_large", Cap: 100, Round: 2}),
			EventImportLimit, "import:limit:2:import_too_large", "", "",
			map[string]any{"partner_id": "old", "limit": "import_too_large", "cap": int64(100), "round": 2}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.ev.Type != c.typ || c.ev.Key != c.key || c.ev.State != c.state || c.ev.Actor != c.actor {
				t.Errorf("type, key, state, actor = %q %q %q %q, want %q %q %q %q", c.ev.Type, c.ev.Key, c.ev.State, c.ev.Actor, c.typ, c.key, c.state, c.actor)
			}
			if c.wantAbsent {
				if c.ev.Detail != nil {
					t.Errorf("detail = %v, want none", c.ev.Detail)
				}
				return
			}
			got, err := json.Marshal(c.ev.Detail)
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(c.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("detail\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestEventDetailsRoundTripTheStore checks that a detail read back from
// JSON (as every store returns it) marshals to the same bytes again.
func TestEventDetailsRoundTripTheStore(t *testing.T) {
	ev := SendFailed(SendFailedDetail{PartnerID: "p", Attempt: 3, HTTPStatus: 503})
	b, _ := json.Marshal(ev.Detail)
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b) != string(b2) {
		t.Errorf("%s became %s", b, b2)
	}
}
