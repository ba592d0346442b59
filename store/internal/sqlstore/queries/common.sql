-- The store's queries, written once for both engines. Each block is named
-- by its "-- name:" line; full-line comments are dropped. Parameters are
-- $1, $2, …; the SQLite dialect writes them ?1, ?2, …, or plain ? where they
-- appear in order (SQLite binds those faster). Two blocks expand
-- per call, their parameters following the query's own:
--   {{rows TYPE…}}  rows of values: unnest of one array per column
--                   (TYPE[]) on PostgreSQL, multi-row VALUES on SQLite;
--   {{filters}}     "AND cond …", the conditions a listing was asked for.
-- A query only one engine needs, or that differs, is in postgres.sql or
-- sqlite.sql.

-- No row: the key is taken.
-- name: ClaimIdempotency
INSERT INTO idempotency_keys (client_id, idempotency_key, fingerprint, transfer_id, status, created_at)
VALUES ($1, $2, $3, $4, 'pending', $5)
ON CONFLICT (client_id, idempotency_key) DO NOTHING
RETURNING client_id, idempotency_key, fingerprint, transfer_id, status, response_status, response_body, created_at

-- name: GetIdempotency
SELECT client_id, idempotency_key, fingerprint, transfer_id, status, response_status, response_body, created_at
FROM idempotency_keys WHERE client_id = $1 AND idempotency_key = $2

-- name: CompleteIdempotency
UPDATE idempotency_keys SET status = 'complete', response_status = $3, response_body = $4
WHERE client_id = $1 AND idempotency_key = $2 AND status = 'pending'

-- name: PendingIdempotency
SELECT client_id, idempotency_key, fingerprint, transfer_id, status, response_status, response_body, created_at
FROM idempotency_keys WHERE status = 'pending' AND created_at < $1
    AND ($2 = 0 OR (created_at, client_id, idempotency_key) > ($3, $4, $5))
ORDER BY created_at, client_id, idempotency_key LIMIT $6

-- name: InsertTransfer
INSERT INTO transfers (id, client_id, partner_id, direction, correlation_id, state, created_at, updated_at,
    identity, consent, export, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)

-- name: InsertTransferRequest
INSERT INTO transfer_requests (transfer_id, request) VALUES ($1, $2)

-- name: GetTransfer
SELECT id, client_id, partner_id, direction, correlation_id, state, created_at, updated_at, identity, consent, export, error
FROM transfers WHERE id = $1

-- name: GetTransferRequest
SELECT request FROM transfer_requests WHERE transfer_id = $1

-- One row more than the page ($1) tells whether another page follows.
-- name: ListTransfers
SELECT id, client_id, partner_id, direction, correlation_id, state, created_at, updated_at, identity, consent, export, error
FROM transfers WHERE true {{filters}}
ORDER BY created_at DESC, id DESC LIMIT $1

-- The last event's seq, read after LockTransfer: in READ COMMITTED a new
-- statement sees what the previous holder of the lock committed.
-- name: LastSeq
SELECT coalesce(max(seq), 0) FROM timeline_events WHERE transfer_id = $1

-- No row when the key is recorded: the event is not new. The event
-- records its transfer's partner, which its audit leaf covers.
-- name: InsertEvent
INSERT INTO timeline_events (transfer_id, seq, event_key, occurred_at, state, actor, event_type, detail, partner_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, (SELECT partner_id FROM transfers WHERE id = $1))
ON CONFLICT (transfer_id, event_key) DO NOTHING
RETURNING id, partner_id

-- name: UpdateTransfer
UPDATE transfers SET
    updated_at = $2,
    state = coalesce($3, state),
    identity = coalesce($4, identity),
    consent = coalesce($5, consent),
    export = coalesce($6, export),
    error = coalesce($7, error)
WHERE id = $1

-- name: Timeline
SELECT seq, event_key, occurred_at, state, actor, event_type, detail
FROM timeline_events WHERE transfer_id = $1 ORDER BY seq

-- The one row of audit_head, locked until the transaction ends: appenders
-- take positions one at a time, in commit order.
-- name: NextAuditPosition
UPDATE audit_head SET size = size + 1 RETURNING size - 1

-- name: InsertAuditLeaf
INSERT INTO audit_log (position, event_id, leaf_hash, leaf_version) VALUES ($1, $2, $3, $4)

-- name: InsertAuditHashes
INSERT INTO audit_hashes (idx, hash) {{rows bigint bytea}}

-- One row per index asked for, in the order asked; the hash is NULL if
-- there is none.
-- name: ReadAuditHashes
WITH asked (ord, idx) AS ({{rows bigint bigint}})
SELECT asked.idx, h.hash FROM asked LEFT JOIN audit_hashes h ON h.idx = asked.idx ORDER BY asked.ord

-- name: AuditSize
SELECT size FROM audit_head

-- $2 is the limit; the largest int64 for none. The partner is the one the
-- event recorded ('' before leaf version 2): the one its leaf covers.
-- name: AuditEvents
SELECT a.position, a.leaf_hash, a.leaf_version, e.transfer_id, coalesce(e.partner_id, ''),
    e.seq, e.event_key, e.occurred_at, e.state, e.actor, e.event_type, e.detail
FROM audit_log a
JOIN timeline_events e ON e.id = a.event_id
JOIN transfers t ON t.id = e.transfer_id
WHERE a.position >= $1 {{filters}}
ORDER BY a.position LIMIT $2

-- name: PutCheckpoint
INSERT INTO audit_checkpoints (size, root_hash, signed_at, kid, jws) VALUES ($1, $2, $3, $4, $5)

-- name: Checkpoints
SELECT size, root_hash, signed_at, kid, jws FROM audit_checkpoints ORDER BY id

-- name: LatestCheckpoint
SELECT size, root_hash, signed_at, kid, jws FROM audit_checkpoints ORDER BY id DESC LIMIT 1

-- A withdrawn payload stays withdrawn: a retried export changes nothing.
-- name: PutArtifact
INSERT INTO artifacts (transfer_id, digest, name, content_type, size, data, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (transfer_id, digest) DO NOTHING

-- When several transfers hold the digest, one that still has the payload
-- wins.
-- name: GetArtifact
SELECT transfer_id, digest, name, content_type, size, created_at, withdrawn_at, data
FROM artifacts WHERE digest = $1
ORDER BY withdrawn_at IS NOT NULL, created_at, transfer_id LIMIT 1

-- name: ListArtifacts
SELECT transfer_id, digest, name, content_type, size, created_at, withdrawn_at
FROM artifacts WHERE transfer_id = $1 ORDER BY created_at, name, digest

-- name: WithdrawArtifacts
UPDATE artifacts SET data = NULL, withdrawn_at = $2 WHERE transfer_id = $1 AND withdrawn_at IS NULL

-- name: PurgeArtifacts
UPDATE artifacts SET data = NULL, withdrawn_at = $3
WHERE transfer_id = $1 AND content_type = $2 AND withdrawn_at IS NULL

-- name: ExpiredArtifacts
SELECT t.id, t.updated_at, count(*) FROM transfers t
JOIN artifacts a ON a.transfer_id = t.id AND a.withdrawn_at IS NULL AND a.content_type = $1
WHERE t.state IN ({{rows text}}) AND t.updated_at < $2
GROUP BY t.id, t.updated_at ORDER BY t.updated_at, t.id LIMIT $3

-- name: InsertIdentityLink
INSERT INTO identity_links (partner_id, external_ref, member_id, valid_from, valid_to, ends, made_by, provenance)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq

-- name: IdentityLinks
SELECT seq, member_id, valid_from, valid_to, ends, made_by, provenance
FROM identity_links WHERE partner_id = $1 AND external_ref = $2 ORDER BY seq

-- name: InsertIdentityReview
INSERT INTO identity_reviews (partner_id, presentation, decision, member_id, reviewer, decided_at, transfer_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: IdentityReviews
SELECT decision, member_id, reviewer, decided_at, transfer_id
FROM identity_reviews WHERE partner_id = $1 AND presentation = $2 ORDER BY id

-- name: PresentationKey
SELECT key FROM identity_key WHERE one = 1

-- A concurrent first use may have created it: theirs wins.
-- name: InsertPresentationKey
INSERT INTO identity_key (one, key) VALUES (1, $1) ON CONFLICT (one) DO NOTHING

-- name: InsertMatchGrant
INSERT INTO match_grants (requester, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq

-- The latest grant of each member: the one in force.
-- name: MatchGrants
SELECT seq, member_id, consent_id, consent_scope, consent_expires, granted_at, transfer_id
FROM match_grants g WHERE requester = $1
AND seq = (SELECT max(seq) FROM match_grants l WHERE l.requester = g.requester AND l.member_id = g.member_id)
ORDER BY member_id

-- name: ForgetMatchFailures
DELETE FROM match_failures WHERE requester = $1 AND failed_at < $2

-- name: InsertMatchFailure
INSERT INTO match_failures (requester, failed_at) VALUES ($1, $2)

-- name: MatchFailures
SELECT failed_at FROM match_failures
WHERE requester = $1 AND failed_at > $2 ORDER BY failed_at DESC, id DESC LIMIT $3

-- Every row of one write carries that write's version (see MemberVersion).
-- name: UpsertMembers
INSERT INTO members (id, given, family, birth_date, sex, street, city, state, postal_code, phone, version)
{{rows text text text text text text text text text text bigint}}
ON CONFLICT (id) DO UPDATE SET
    given = excluded.given, family = excluded.family, birth_date = excluded.birth_date,
    sex = excluded.sex, street = excluded.street, city = excluded.city, state = excluded.state,
    postal_code = excluded.postal_code, phone = excluded.phone, version = excluded.version

-- The version of the last member write; 0 before any. Under LockMembers it
-- is the last committed one, and the next write's is one more.
-- name: MemberVersion
SELECT coalesce(max(version), 0) FROM members

-- The members written after the cursor (version, id), in that order.
-- name: MemberChanges
SELECT version, id, given, family, birth_date, sex, street, city, state, postal_code, phone
FROM members WHERE (version, id) > ($1, $2) ORDER BY version, id LIMIT $3

-- name: GetMember
SELECT id, given, family, birth_date, sex, street, city, state, postal_code, phone FROM members WHERE id = $1

-- name: MembersByBirthDate
SELECT id, given, family, birth_date, sex, street, city, state, postal_code, phone
FROM members WHERE birth_date = $1 ORDER BY id

-- name: ListMembers
SELECT id, given, family, birth_date, sex, street, city, state, postal_code, phone
FROM members WHERE id > $1 ORDER BY id LIMIT $2

-- name: CountMembers
SELECT count(*) FROM members

-- ---------------------------------------------------------------------
-- authn (issue 11): /v1 API clients and the assertion replay cache.

-- name: CreateClient
INSERT INTO api_clients (id, name, scopes, jwks_url, jwks, person, disabled_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (id) DO NOTHING

-- A client disabled stays disabled; created_at is the first registration's.
-- name: UpsertClient
INSERT INTO api_clients (id, name, scopes, jwks_url, jwks, person, disabled_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, scopes = excluded.scopes, jwks_url = excluded.jwks_url, jwks = excluded.jwks,
    person = excluded.person, updated_at = excluded.updated_at,
    disabled_at = COALESCE(api_clients.disabled_at, excluded.disabled_at)

-- name: DeleteClientCerts
DELETE FROM api_client_certs WHERE client_id = $1

-- name: InsertClientCert
INSERT INTO api_client_certs (sha256, client_id) VALUES ($1, $2)

-- name: GetClient
SELECT id, name, scopes, jwks_url, jwks, person, disabled_at, created_at, updated_at FROM api_clients WHERE id = $1

-- name: ClientByCert
SELECT client_id FROM api_client_certs WHERE sha256 = $1

-- name: ClientCerts
SELECT sha256 FROM api_client_certs WHERE client_id = $1 ORDER BY sha256

-- name: ListClients
SELECT id, name, scopes, jwks_url, jwks, person, disabled_at, created_at, updated_at FROM api_clients ORDER BY id

-- name: AllClientCerts
SELECT client_id, sha256 FROM api_client_certs ORDER BY client_id, sha256

-- name: DisableClient
UPDATE api_clients SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 WHERE id = $1

-- name: ForgetAssertions
DELETE FROM assertion_jtis WHERE expires_at < $1

-- name: InsertAssertion
INSERT INTO assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING

-- ---- authz (issue 11): paginated timelines ----

-- A page of a timeline, each event with its audit-log place (none for
-- events recorded before the audit log existed).
-- name: TimelinePage
SELECT a.position, a.leaf_hash, e.seq, e.event_key, e.occurred_at, e.state, e.actor, e.event_type, e.detail
FROM timeline_events e LEFT JOIN audit_log a ON a.event_id = e.id
WHERE e.transfer_id = $1 AND e.seq > $2 AND e.seq <= $3
ORDER BY e.seq LIMIT $4

-- The model in force is the one stored last.
-- name: LatestIdentityModel
SELECT id, params, method, training_size, trained_at FROM identity_models ORDER BY id DESC LIMIT 1

-- name: IdentityModelID
SELECT coalesce(max(id), 0) FROM identity_models

-- name: InsertIdentityModel
INSERT INTO identity_models (params, method, training_size, trained_at, created_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
