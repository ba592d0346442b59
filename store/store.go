// Package store is p2p's durable state: the member index, idempotency
// records, the transfer projection, the timeline and audit log, export
// artifacts, the identity graph and match grants. Store is every role
// interface on one database; one implementation (store/internal/sqlstore)
// runs it on PostgreSQL (store/postgres) and on SQLite (store/sqlite), and
// both pass the contract suite in store/storetest.
package store

import (
	"context"
	"errors"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/identity/graph"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// Errors every implementation returns for the same conditions.
var (
	ErrNotFound  = errors.New("not found")
	ErrWithdrawn = errors.New("artifact withdrawn")
	ErrBadCursor = errors.New("bad cursor")
	// ErrExists: CreateClient found the id taken.
	ErrExists = errors.New("already exists")
)

// Store is the persistence contract of p2p: every role below, on one
// database. Every method is safe for concurrent use; every write is a
// single transaction. A consumer should name only the roles it uses.
type Store interface {
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error

	Members
	Transfers
	Idempotency
	Timelines
	AuditLog
	Artifacts
	IdentityGraph
	IdentityModels
	Grants
	FailedMatches
	Clients
	AssertionReplay
}

// Members is the member index the matcher searches. It holds PHI.
type Members interface {
	// UpsertMembers inserts or replaces members of the index, all or none.
	UpsertMembers(ctx context.Context, ms []member.Record) error
	// GetMember returns the member with id, or ErrNotFound.
	GetMember(ctx context.Context, id string) (member.Record, error)
	// MembersByBirthDate returns every member born on date (YYYY-MM-DD),
	// ordered by id: the block the deterministic matcher compares within.
	MembersByBirthDate(ctx context.Context, date string) ([]member.Record, error)
	// ListMembers pages through the index in id order, after afterID.
	ListMembers(ctx context.Context, afterID string, limit int) ([]member.Record, error)
	// CountMembers returns the size of the index.
	CountMembers(ctx context.Context) (int, error)
	// MemberVersion returns the version of the last member write (0 before
	// any). Each UpsertMembers stamps every row it writes with one new
	// version, and versions become visible in order: a reader that sees
	// version v sees every write up to v.
	MemberVersion(ctx context.Context) (int64, error)
	// MemberChanges returns up to limit members written after the cursor
	// (afterVersion, afterID), ordered by version then id: what an
	// in-memory index applies to catch up. An empty afterID stands after
	// every member of afterVersion. A member rewritten since appears once,
	// at its latest version.
	MemberChanges(ctx context.Context, afterVersion int64, afterID string, limit int) ([]MemberChange, error)
}

// MemberChange is a member as last written, with that write's version.
type MemberChange struct {
	Version int64
	member.Record
}

// Transfers creates transfers and moves them along: the projection of each
// transfer's workflow, changed only together with its timeline.
type Transfers interface {
	// CreateTransfer claims the idempotency key and, if it was free, creates
	// the transfer, its request, its first timeline event and then applies
	// nt.Changes as ApplyChanges does, all in one transaction. If the key
	// was taken it creates nothing and returns the existing record with
	// Created false.
	CreateTransfer(ctx context.Context, nt NewTransfer) (CreateResult, error)
	// GetTransfer returns the transfer projection, or ErrNotFound.
	GetTransfer(ctx context.Context, id string) (transfer.Transfer, error)
	// GetTransferRequest returns what the client sent, or ErrNotFound.
	GetTransferRequest(ctx context.Context, id string) (transfer.Request, error)
	// ListTransfers returns transfers newest first.
	ListTransfers(ctx context.Context, f ListFilter) (TransferPage, error)
	// ApplyChange appends ch.Event to the transfer's timeline and updates the
	// projection with the non-nil parts of ch, in one transaction. If an
	// event with the same Key was already recorded it changes nothing and
	// returns false: activities that retry record each step once.
	ApplyChange(ctx context.Context, transferID string, ch Change) (bool, error)
	// ApplyChanges applies chs in order, each as ApplyChange would, all in
	// one transaction: a step of several events (a decision and its
	// outcome) is recorded whole or not at all. applied[i] says whether
	// chs[i] was new; a change whose Key the transfer already has (or an
	// earlier change of chs has) is skipped and the others still apply. Any
	// error records none of chs. No changes: nothing, and no error.
	ApplyChanges(ctx context.Context, transferID string, chs []Change) (applied []bool, err error)
}

// Idempotency keeps the response of each (client, key) that created a
// transfer, so that a retried request replays it.
type Idempotency interface {
	// CompleteIdempotency stores the response of a pending idempotency
	// record. The first response stored wins; it returns the record as
	// stored, so every caller replays the same bytes.
	CompleteIdempotency(ctx context.Context, clientID, key string, status int, body []byte) (IdempotencyRecord, error)
	// GetIdempotency returns the record of (clientID, key), or ErrNotFound.
	GetIdempotency(ctx context.Context, clientID, key string) (IdempotencyRecord, error)
	// PendingIdempotency returns records still pending that were created
	// before olderThan: transfers whose workflow may never have started.
	// They come oldest first (by creation time, client, key); after, when
	// not nil, is the last record of the previous page, so a caller that
	// leaves a record pending still reaches the ones behind it.
	PendingIdempotency(ctx context.Context, olderThan time.Time, after *IdempotencyRecord, limit int) ([]IdempotencyRecord, error)
}

// Timelines reads transfers' timelines and records reads of them.
type Timelines interface {
	// RecordAccess appends each access's event to its transfer's timeline
	// (and so to the audit log) in one transaction, without touching any
	// projection, updated_at included: reading a transfer is evidence,
	// not a change of it. Events whose key their transfer already has are
	// skipped. If a transfer does not exist it records nothing and returns
	// ErrNotFound. It returns how many events it recorded.
	RecordAccess(ctx context.Context, as []Access) (int, error)
	// Timeline returns the transfer's events in order, or ErrNotFound.
	Timeline(ctx context.Context, transferID string) ([]transfer.Event, error)
	// TimelinePage returns the part of the transfer's timeline r selects,
	// each event with its place in the audit log, and the seq of the
	// transfer's last event; ErrNotFound when there is no such transfer.
	TimelinePage(ctx context.Context, transferID string, r TimelineRange) (TimelinePage, error)
}

// Artifacts are the files and manifests of exports, by digest.
type Artifacts interface {
	// PutArtifact stores an export artifact under its digest; storing the
	// same digest again is a no-op.
	PutArtifact(ctx context.Context, a Artifact) error
	// GetArtifact returns the artifact with digest, ErrNotFound, or
	// ErrWithdrawn (with the metadata filled) if its payload was purged.
	GetArtifact(ctx context.Context, digest string) (Artifact, error)
	// ListArtifacts returns the metadata (no Data) of a transfer's artifacts.
	ListArtifacts(ctx context.Context, transferID string) ([]Artifact, error)
	// WithdrawArtifacts deletes the payloads of a transfer's artifacts and
	// keeps their digests and metadata as evidence. It returns how many it
	// withdrew now.
	WithdrawArtifacts(ctx context.Context, transferID string, at time.Time) (int, error)
	// ExpiredArtifacts lists the transfers whose artifacts of f.ContentType
	// retention has expired: in one of f.States, last updated before
	// f.Before, still holding such payloads. Oldest first, at most f.Limit.
	ExpiredArtifacts(ctx context.Context, f ArtifactPurge) ([]ExpiredArtifacts, error)
	// PurgeArtifacts deletes the payloads of a transfer's artifacts of
	// contentType, keeps their rows (digest, size, metadata) as evidence,
	// and returns how many it purged now. Other artifacts (the manifest
	// and its signature) are untouched.
	PurgeArtifacts(ctx context.Context, transferID, contentType string, at time.Time) (int, error)
}

// AuditLog reads the audit log. The timeline is the audit log:
// CreateTransfer, ApplyChange(s) and RecordAccess give every event they
// record the next global position (0..n-1, gapless, in commit order) and
// append its leaf (tlog.RecordHash of auditleaf.Leaf.Data, version
// auditleaf.Current, with the transfer's partner) to an RFC 6962
// Merkle tree, in the same transaction.
type AuditLog interface {
	// AuditSize returns the number of entries in the audit log.
	AuditSize(ctx context.Context) (int64, error)
	// ReadAuditHashes returns the tree's stored hashes at the given
	// tlog.StoredHashIndex indexes, in order; a missing one is an error.
	ReadAuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// AuditEvents calls fn for every entry that f selects, in position
	// order, as the rows are read (memory does not grow with the log). An
	// error from fn stops the walk and is returned.
	AuditEvents(ctx context.Context, f AuditFilter, fn func(AuditEvent) error) error
	// PutCheckpoint stores a signed tree head.
	PutCheckpoint(ctx context.Context, c Checkpoint) error
	// Checkpoints returns every stored checkpoint, oldest first.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// LatestCheckpoint returns the checkpoint stored last, or ErrNotFound.
	LatestCheckpoint(ctx context.Context) (Checkpoint, error)
}

// IdentityGraph is the identity graph (identity/graph): links between an
// external identity and a member, and reviewers' decisions. Both are
// append-only: a link ends by a superseding record (graph.Link.Ends),
// never an UPDATE. Change.Link and Change.Review write them with a
// transfer's step, in its transaction.
type IdentityGraph interface {
	// AppendIdentityLink appends a link as graph.Supersede says (ending a
	// current link to another member first; nothing when the current link
	// is to the same member) and returns the current link after it, with its
	// Seq. An end record (Ends set) is appended as it is.
	AppendIdentityLink(ctx context.Context, l graph.Link) (graph.Link, error)
	// IdentityLinks returns every record of one external identity, oldest
	// first.
	IdentityLinks(ctx context.Context, partner, externalRef string) ([]graph.Link, error)
	// AppendIdentityReview remembers a reviewer's decision on a presentation.
	AppendIdentityReview(ctx context.Context, r graph.Review) error
	// IdentityReviews returns the decisions on one presentation, oldest
	// first.
	IdentityReviews(ctx context.Context, partner, presentation string) ([]graph.Review, error)
	// PresentationKey returns the secret that presentation digests are keyed
	// with (graph.Presentation), creating it on first use. It lives with
	// the demographics it protects, so that a digest found in a log, an
	// audit entry or a workflow history cannot be reversed without the
	// database.
	PresentationKey(ctx context.Context) ([]byte, error)
}

// IdentityModels are the scoring models of the identity matcher as data
// (identity.ModelParams), so that every process and every restart decides
// with the same weights until someone retrains. Append-only: the model in
// force is the one stored last, which has the highest id.
type IdentityModels interface {
	// LatestIdentityModel returns the model in force and its id, or
	// ErrNotFound when none was stored.
	LatestIdentityModel(ctx context.Context) (int64, identity.ModelParams, error)
	// SaveIdentityModel stores p as the model in force (a retrain), by
	// who stored it ("worker", an operator), and returns its id. It
	// refuses parameters that identity.ModelParams.Model refuses.
	SaveIdentityModel(ctx context.Context, p identity.ModelParams, by string) (int64, error)
	// InitIdentityModel stores p only if no model was stored yet, and
	// returns the model in force: of processes starting together on an
	// empty store, the first wins and all get its model.
	InitIdentityModel(ctx context.Context, p identity.ModelParams, by string) (int64, identity.ModelParams, error)
	// IdentityModelID returns the id of the model in force, 0 when none:
	// a cheap read, to notice a retrain.
	IdentityModelID(ctx context.Context) (int64, error)
}

// Grants are match grants: a partner's successful $member-match, which
// lets it export that member's data later, within the consent's scope and
// until the consent expires. Append-only; the latest grant of a
// (requester, member) pair is the one in force.
type Grants interface {
	// AppendMatchGrant records g and returns it with its Seq.
	AppendMatchGrant(ctx context.Context, g MatchGrant) (MatchGrant, error)
	// MatchGrants returns the grant in force of every member requester
	// matched, expired ones included (the caller judges them against its
	// clock), ordered by member id.
	MatchGrants(ctx context.Context, requester string) ([]MatchGrant, error)
}

// FailedMatches counts failed matches (a $member-match that found no
// member or several) per requester for the brute-force cap
// (pdex.Throttle), so that every process sees one count. A counter, not
// evidence: no PHI, and old ones are forgotten.
type FailedMatches interface {
	// AppendMatchFailure records a failed match by requester at at and
	// forgets requester's failures before forgetBefore, in one
	// transaction.
	AppendMatchFailure(ctx context.Context, requester string, at, forgetBefore time.Time) error
	// MatchFailures returns the times of requester's failed matches
	// strictly after after, newest first, at most limit (0: none).
	MatchFailures(ctx context.Context, requester string, after time.Time, limit int) ([]time.Time, error)
}

// MatchGrant is a partner's successful $member-match of one member: the
// consent that let us answer, its scope and its expiry. No PHI.
type MatchGrant struct {
	Seq            int64 // assigned by the store
	Requester      string
	MemberID       string
	ConsentID      string
	ConsentScope   string    // transfer.ScopeRegular or transfer.ScopeSensitive
	ConsentExpires time.Time // the last instant the consent covers
	GrantedAt      time.Time
	// TransferID is the transfer that recorded the $member-match; "" when
	// none did (a $bulk-member-match member, a grant from before).
	TransferID string
}

// Valid reports whether g lets its requester reach the member at now.
func (g MatchGrant) Valid(now time.Time) bool {
	return !now.After(g.ConsentExpires)
}

// ArtifactPurge selects the artifacts whose retention has expired.
type ArtifactPurge struct {
	ContentType string           // only artifacts of this content type
	States      []transfer.State // of transfers in one of these states
	Before      time.Time        // last updated before this time
	Limit       int              // at most this many transfers; 0: 100
}

// ExpiredArtifacts is a transfer with artifacts past their retention.
type ExpiredArtifacts struct {
	TransferID string
	Artifacts  int
	UpdatedAt  time.Time
}

// TimelineRange selects part of a transfer's timeline: the events with
// After < seq <= Until (Until 0: no bound), at most Limit of them.
type TimelineRange struct {
	After int64
	Until int64
	Limit int // 1..1000; 0 or less means 100
}

// TimelinePage is part of a transfer's timeline.
type TimelinePage struct {
	Entries []TimelineEntry // in seq order
	// Last is the seq of the transfer's last event when the page was read.
	Last int64
}

// TimelineEntry is a timeline event and, when it has one (every event
// recorded since the audit log exists), its place in the audit log.
type TimelineEntry struct {
	Event    transfer.Event
	Logged   bool // false: recorded before the audit log existed
	Position int64
	LeafHash tlog.Hash
}

// AuditFilter selects audit entries; zero fields match everything.
// PartnerID matches the partner the event recorded, or for entries written
// before events recorded one (leaf version 1) the transfer's.
type AuditFilter struct {
	FromPosition int64     // entries at this position and after
	Since        time.Time // events at or after
	Until        time.Time // events before
	TransferID   string
	PartnerID    string
	Type         string
	Limit        int // at most this many entries; 0: no limit
}

// AuditEvent is one entry of the audit log: a timeline event with its
// global position, the leaf hash stored for it and the version of the
// leaf's encoding (auditleaf.V1, V2).
type AuditEvent struct {
	Position   int64
	TransferID string
	// PartnerID is the transfer's partner as the event recorded it, which
	// its leaf covers; "" for a version 1 leaf, which does not.
	PartnerID   string
	Event       transfer.Event
	LeafHash    tlog.Hash
	LeafVersion int
}

// Checkpoint is a signed tree head: the root of the audit log's first Size
// entries, signed (JWS) by the key KID at At.
type Checkpoint struct {
	Size int64
	Root tlog.Hash
	At   time.Time
	KID  string
	JWS  string
}

// NewTransfer is a transfer to create under an idempotency key.
type NewTransfer struct {
	ClientID       string
	IdempotencyKey string
	// Fingerprint is the SHA-256 (hex) of the canonical request body.
	Fingerprint string
	Transfer    transfer.Transfer // ID, ClientID, PartnerID, State, CreatedAt, UpdatedAt
	Request     transfer.Request
	Event       transfer.Event // the first timeline event
	// Changes are applied after Event, in the same transaction, as
	// ApplyChanges applies them: a transfer created with its first steps.
	Changes []Change
}

// CreateResult is what CreateTransfer did.
type CreateResult struct {
	Created bool
	Record  IdempotencyRecord
}

// Idempotency record statuses.
const (
	IdempotencyPending  = "pending"  // transfer created; response not yet stored
	IdempotencyComplete = "complete" // response stored; replay it
)

// IdempotencyRecord binds (client, key) to one transfer and one response.
type IdempotencyRecord struct {
	ClientID       string
	Key            string
	Fingerprint    string
	TransferID     string
	Status         string
	ResponseStatus int
	ResponseBody   []byte
	CreatedAt      time.Time
}

// ListFilter selects transfers; zero fields match everything.
type ListFilter struct {
	State     transfer.State
	PartnerID string
	ClientID  string             // only transfers this client created
	Direction transfer.Direction // "" = both
	Limit     int                // 1..200; 0 means 50
	Cursor    string             // opaque, from TransferPage.NextCursor
}

// TransferPage is one page of transfers, newest first.
type TransferPage struct {
	Items      []transfer.Transfer
	NextCursor string // empty on the last page
}

// Change is one step of a transfer: an event and what it changes in the
// projection. Nil parts leave the projection as it is.
type Change struct {
	Event    transfer.Event // Seq is assigned by the store; Key is required
	State    transfer.State // empty: unchanged
	Identity *transfer.IdentityOutcome
	Consent  *transfer.ConsentOutcome
	Export   *transfer.ExportInfo
	Error    *transfer.ErrorInfo
	// Link, if set, is appended to the identity graph as AppendIdentityLink
	// does; Review, if set, is remembered; Grant, if set, is appended as
	// AppendMatchGrant does (GrantedAt defaults to the event's time). All
	// only when the event is new, so that the event saying a grant was
	// given and the grant are one write.
	Link   *graph.Link
	Review *graph.Review
	Grant  *MatchGrant
}

// Access is a read of a transfer to record: who read it (Event.Actor), how
// (Event.Type and Detail), under a key unique to the request (Event.Key,
// required).
type Access struct {
	TransferID string
	Event      transfer.Event
}

// Artifact is a stored export file or manifest, addressed by the SHA-256 of
// its bytes.
type Artifact struct {
	Digest      string // hex SHA-256 of Data
	TransferID  string
	Name        string // e.g. "Patient.ndjson", "manifest.json"
	ContentType string
	Size        int64
	Data        []byte // nil once withdrawn, and in ListArtifacts
	CreatedAt   time.Time
	WithdrawnAt *time.Time
}

// Clients is the registry of /v1 API clients (package smartauth
// authenticates them): who they are, how they prove it, what they may be
// granted.
type Clients interface {
	// CreateClient registers c; ErrExists when its id is taken. A
	// certificate fingerprint registered to another client is an error.
	CreateClient(ctx context.Context, c Client) error
	// UpsertClient registers c or replaces the registration of its id
	// (name, scopes, keys, certificates, person), keeping its CreatedAt.
	// A disabled client stays disabled; c.Disabled disables it.
	UpsertClient(ctx context.Context, c Client) error
	// GetClient returns the client with id, or ErrNotFound.
	GetClient(ctx context.Context, id string) (Client, error)
	// ClientByCert returns the client that registered the certificate
	// with this fingerprint (lower-case hex SHA-256 of its DER), or
	// ErrNotFound.
	ClientByCert(ctx context.Context, sha256 string) (Client, error)
	// ListClients returns every client, by id.
	ListClients(ctx context.Context) ([]Client, error)
	// DisableClient disables the client from at on (a disabled one keeps
	// its first time); ErrNotFound for an unknown id.
	DisableClient(ctx context.Context, id string, at time.Time) error
}

// AssertionReplay is the replay cache of the token endpoints: every
// process that takes client assertions shares it, so an assertion buys
// one token across all of them.
type AssertionReplay interface {
	// UseAssertion records (clientID, jti) until expires and reports
	// whether it was new. Entries expired before now are forgotten first.
	UseAssertion(ctx context.Context, clientID, jti string, expires, now time.Time) (bool, error)
}

// Client is a registered /v1 API client. It authenticates with a client
// assertion signed by a key of its JWKS (JWKSURL or inline JWKS) or with
// a client certificate whose fingerprint it registered. No PHI.
type Client struct {
	ID     string
	Name   string
	Scopes []string // caller.Scope values
	// JWKSURL is where its assertion keys are published; JWKS holds them
	// inline instead (JSON). Either may be empty.
	JWKSURL string
	JWKS    []byte
	// CertSHA256 are the lower-case hex SHA-256 fingerprints of the DER
	// certificates it may present (RFC 8705's x5t#S256, in hex).
	CertSHA256 []string
	// Person is the person acting through the client (a reviewer's
	// name), or "" for a system.
	Person     string
	Disabled   bool      // set by DisableClient, or by UpsertClient
	DisabledAt time.Time // zero while enabled
	CreatedAt  time.Time // set by the store
	UpdatedAt  time.Time // set by the store
}
