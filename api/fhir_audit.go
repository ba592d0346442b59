package api

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// The FHIR R4 AuditEvent of an audit entry, hand-written: only the
// elements we fill (the FHIR Go model modules are not a dependency).
// https://hl7.org/fhir/R4/auditevent.html

// Code systems of the AuditEvent mapping.
const (
	sysAuditEventType = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysDICOM          = "http://dicom.nema.org/resources/ontology/DCM"
	sysRESTful        = "http://hl7.org/fhir/restful-interaction"
	sysSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	// Our own identifier systems and the code system of p2p's event types.
	sysP2PEvent    = "urn:p2p:audit-event"
	sysP2PActor    = "urn:p2p:actor"
	sysP2PTransfer = "urn:p2p:transfer"
	sysP2PMember   = "urn:p2p:member"
	sysP2P         = "urn:p2p"
)

type fhirCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
	Display    string          `json:"display,omitempty"`
}

type fhirAgent struct {
	Who       fhirReference `json:"who"`
	Requestor bool          `json:"requestor"`
}

type fhirSource struct {
	Observer fhirReference `json:"observer"`
	Type     []fhirCoding  `json:"type"`
}

type fhirEntityDetail struct {
	Type              string `json:"type"`
	ValueString       string `json:"valueString,omitempty"`
	ValueBase64Binary []byte `json:"valueBase64Binary,omitempty"`
}

type fhirEntity struct {
	What   fhirReference      `json:"what"`
	Type   fhirCoding         `json:"type"`
	Role   fhirCoding         `json:"role"`
	Detail []fhirEntityDetail `json:"detail,omitempty"`
}

// fhirAuditEvent is a FHIR R4 AuditEvent resource.
type fhirAuditEvent struct {
	ResourceType string       `json:"resourceType"` // "AuditEvent"
	ID           string       `json:"id"`
	Type         fhirCoding   `json:"type"`
	Subtype      []fhirCoding `json:"subtype"`
	Action       string       `json:"action"`   // C R U D E
	Recorded     string       `json:"recorded"` // instant
	Outcome      string       `json:"outcome"`  // 0 success, 8 serious failure
	Agent        []fhirAgent  `json:"agent"`
	Source       fhirSource   `json:"source"`
	Entity       []fhirEntity `json:"entity"`
}

// The event types of the mapping.
var (
	typeREST          = fhirCoding{System: sysAuditEventType, Code: "rest", Display: "RESTful Operation"}
	typeExport        = fhirCoding{System: sysDICOM, Code: "110106", Display: "Export"}
	typeQuery         = fhirCoding{System: sysDICOM, Code: "110112", Display: "Query"}
	typePatientRecord = fhirCoding{System: sysDICOM, Code: "110110", Display: "Patient Record"}
)

// auditKind is how one kind of p2p event maps to an AuditEvent's type,
// extra subtype and action.
type auditKind struct {
	typ     fhirCoding
	subtype *fhirCoding
	action  string
}

// kindsByState maps the state events; kindsByType the other event types.
// Anything else is a Patient Record event with action E: a new event type
// exports without a code change.
var (
	kindsByState = map[transfer.State]auditKind{
		// A client's POST /v1/transfers.
		transfer.StateInitiated: {typeREST, &fhirCoding{System: sysRESTful, Code: "create", Display: "create"}, "C"},
		// Matching the requested member against our index.
		transfer.StateIdentityPending: {typeQuery, nil, "E"},
		transfer.StateManualReview:    {typePatientRecord, nil, "U"},
		// The export is assembled, delivered and acknowledged.
		transfer.StatePayloadPrepared: {typeExport, nil, "C"},
		transfer.StateSent:            {typeExport, nil, "R"},
		transfer.StateAcknowledged:    {typeExport, nil, "E"},
	}
	kindsByType = map[string]auditKind{
		"review_decision":  {typePatientRecord, nil, "U"},
		"review_note":      {typePatientRecord, nil, "U"},
		"export_withdrawn": {typePatientRecord, nil, "D"},
		"phi_purged":       {typePatientRecord, nil, "D"}, // the retention purge
	}
)

func kindOf(ev transfer.Event) auditKind {
	if ev.Type == transfer.EventState {
		if k, ok := kindsByState[ev.State]; ok {
			return k
		}
	} else if k, ok := kindsByType[ev.Type]; ok {
		return k
	}
	return auditKind{typ: typePatientRecord, action: "E"}
}

// fhirAuditEventOf maps an audit entry to its AuditEvent. The member is
// named by our member id only, from the event's detail; nothing else of
// the detail is copied, so no PHI can reach the resource.
func fhirAuditEventOf(ae store.AuditEvent) fhirAuditEvent {
	ev := ae.Event
	k := kindOf(ev)
	code := ev.Type
	if ev.Type == transfer.EventState && ev.State != "" {
		code = transfer.StateKey(ev.State) // "state:<state>", as the state's event key
	}
	sub := []fhirCoding{{System: sysP2PEvent, Code: code}}
	if k.subtype != nil {
		sub = append([]fhirCoding{*k.subtype}, sub...)
	}
	outcome := "0"
	if ev.State == transfer.StateFailed {
		outcome = "8"
	}
	pos := strconv.FormatInt(ae.Position, 10)
	res := fhirAuditEvent{
		ResourceType: "AuditEvent",
		ID:           "p2p-audit-" + pos,
		Type:         k.typ,
		Subtype:      sub,
		Action:       k.action,
		Recorded:     ev.At.UTC().Format(time.RFC3339Nano),
		Outcome:      outcome,
		Agent: []fhirAgent{{
			Who: fhirReference{Identifier: &fhirIdentifier{System: sysP2PActor, Value: ev.Actor}, Display: ev.Actor},
			// People and systems outside p2p ask; p2p's own workflow does not.
			Requestor: strings.HasPrefix(ev.Actor, "client:") || strings.HasPrefix(ev.Actor, "reviewer:") || ev.Actor == "api",
		}},
		Source: fhirSource{
			Observer: fhirReference{Identifier: &fhirIdentifier{System: sysP2P, Value: "p2p"}, Display: "p2p"},
			Type:     []fhirCoding{{System: sysSourceType, Code: "4", Display: "Application Server"}},
		},
		Entity: []fhirEntity{{
			What: fhirReference{Identifier: &fhirIdentifier{System: sysP2PTransfer, Value: ae.TransferID}},
			Type: fhirCoding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role: fhirCoding{System: sysObjectRole, Code: "20", Display: "Job"},
			Detail: []fhirEntityDetail{
				{Type: "position", ValueString: pos},
				{Type: "seq", ValueString: strconv.FormatInt(ev.Seq, 10)},
				{Type: "leaf_hash", ValueBase64Binary: ae.LeafHash[:]},
			},
		}},
	}
	if ae.PartnerID != "" { // a version 1 entry's leaf does not cover its partner: not shown
		d := &res.Entity[0].Detail
		*d = slices.Insert(*d, 2, fhirEntityDetail{Type: "partner_id", ValueString: ae.PartnerID})
	}
	if id, ok := ev.Detail["member_id"].(string); ok && id != "" {
		res.Entity = append(res.Entity, fhirEntity{
			What: fhirReference{Identifier: &fhirIdentifier{System: sysP2PMember, Value: id}},
			Type: fhirCoding{System: sysEntityType, Code: "1", Display: "Person"},
			Role: fhirCoding{System: sysObjectRole, Code: "1", Display: "Patient"},
		})
	}
	return res
}
