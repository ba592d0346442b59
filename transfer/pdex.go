package transfer

import "time"

// What the workflows and package pdex (the FHIR side we serve to partner
// payers) share: the kick-off of a bulk export we serve, an accepted
// $bulk-member-match batch, and the names under which their transfers and
// artifacts are kept. The workflows import this, never pdex.

// PartnerClientID is the transfer client id of what a partner asks for
// through our FHIR API (its $member-match requests and the exports it
// kicks off).
func PartnerClientID(requester string) string { return "fhir:" + requester }

// Kickoff is an accepted request for a bulk export we serve. No PHI:
// member ids and the request's parameters.
type Kickoff struct {
	TransferID      string
	Requester       string
	MemberIDs       []string
	Types           []string   // _type; empty: every type
	Since           *time.Time // _since
	Patients        []string   // patient: Patient/[id] references; empty: every matched member
	TransactionTime time.Time
	Request         string // the kick-off URL
	// MatchTransfers names, by member id, the $member-match transfer whose
	// grant lets the requester reach the member; members granted
	// otherwise (a $bulk-member-match batch) are absent.
	MatchTransfers map[string]string
}

// BulkMatch is an accepted $bulk-member-match batch: the digests of its
// members as stored (under BulkMatchRequestOwner), in order. No PHI.
type BulkMatch struct {
	ID        string
	Requester string
	Members   []string
}

// BulkMatchRequestOwner owns (store.Artifact.TransferID) the members of
// requester's batch id as received; BulkMatchResultOwner its result.
// The requester is part of both, so a batch is found only by its own
// requester.
func BulkMatchRequestOwner(requester, id string) string {
	return "bulk-member-match:" + requester + ":" + id + ":request"
}

// BulkMatchResultOwner: see BulkMatchRequestOwner.
func BulkMatchResultOwner(requester, id string) string {
	return "bulk-member-match:" + requester + ":" + id
}
