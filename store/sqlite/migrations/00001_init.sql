-- The first schema of the embedded store. Times are TEXT in one fixed-width
-- UTC form (2006-01-02T15:04:05.000000Z), so they sort as they compare;
-- JSON columns are TEXT. Tables are STRICT so a wrong type fails loudly.

-- +goose Up
CREATE TABLE members (
    id          TEXT PRIMARY KEY,
    given       TEXT NOT NULL,
    family      TEXT NOT NULL,
    birth_date  TEXT NOT NULL, -- YYYY-MM-DD, the matcher's blocking key
    sex         TEXT NOT NULL,
    street      TEXT NOT NULL,
    city        TEXT NOT NULL,
    state       TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    phone       TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX members_birth_date_idx ON members (birth_date, id);

-- The projection of each transfer's workflow state.
CREATE TABLE transfers (
    id             TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    partner_id     TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    state          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    identity       TEXT, -- JSON transfer.IdentityOutcome
    consent        TEXT, -- JSON transfer.ConsentOutcome
    export         TEXT, -- JSON transfer.ExportInfo
    error          TEXT  -- JSON transfer.ErrorInfo
) STRICT;

CREATE INDEX transfers_created_idx ON transfers (created_at DESC, id DESC);
CREATE INDEX transfers_state_idx ON transfers (state, created_at DESC, id DESC);
CREATE INDEX transfers_partner_idx ON transfers (partner_id, created_at DESC, id DESC);

-- What the client sent (PHI), apart from the projection that lists show.
CREATE TABLE transfer_requests (
    transfer_id TEXT PRIMARY KEY REFERENCES transfers (id),
    request     TEXT NOT NULL -- JSON transfer.Request
) STRICT;

-- The transfer is inserted after its key is claimed, in the same
-- transaction: the reference is checked at commit.
CREATE TABLE idempotency_keys (
    client_id       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    transfer_id     TEXT NOT NULL REFERENCES transfers (id) DEFERRABLE INITIALLY DEFERRED,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'complete')),
    response_status INTEGER NOT NULL DEFAULT 0,
    response_body   BLOB,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
) STRICT;

CREATE INDEX idempotency_keys_pending_idx ON idempotency_keys (created_at) WHERE status = 'pending';

-- The audit timeline. Rows are append-only (a later migration hash-chains
-- them in id order); the triggers below refuse updates and deletes.
CREATE TABLE timeline_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL REFERENCES transfers (id),
    seq         INTEGER NOT NULL,
    event_key   TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    state       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    detail      TEXT, -- JSON object
    UNIQUE (transfer_id, seq),
    UNIQUE (transfer_id, event_key)
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER timeline_events_no_update BEFORE UPDATE ON timeline_events
BEGIN
    SELECT RAISE(ABORT, 'timeline_events is append-only');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER timeline_events_no_delete BEFORE DELETE ON timeline_events
BEGIN
    SELECT RAISE(ABORT, 'timeline_events is append-only');
END;
-- +goose StatementEnd

-- Export artifacts by digest. Each transfer owns its copy of a digest, so
-- withdrawing one transfer's export never touches another's. data is NULL
-- exactly when the payload was withdrawn; the row stays as evidence. No
-- reference to transfers: the contract lets artifacts be stored first.
CREATE TABLE artifacts (
    transfer_id  TEXT NOT NULL,
    digest       TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    data         BLOB,
    created_at   TEXT NOT NULL,
    withdrawn_at TEXT,
    PRIMARY KEY (transfer_id, digest),
    CHECK ((data IS NULL) = (withdrawn_at IS NOT NULL))
) STRICT;

CREATE INDEX artifacts_digest_idx ON artifacts (digest);

-- +goose Down
DROP TABLE artifacts;
DROP TABLE timeline_events;
DROP TABLE idempotency_keys;
DROP TABLE transfer_requests;
DROP TABLE transfers;
DROP TABLE members;
