-- The first schema of the Postgres store. Identifiers compare in byte order
-- (COLLATE "C") so that listing by id agrees with SQLite whatever the
-- database's locale; times are timestamptz (microseconds, as the store
-- writes them); the outcomes of each step are jsonb.

-- +goose Up
CREATE TABLE members (
    id          text COLLATE "C" PRIMARY KEY,
    given       text NOT NULL,
    family      text NOT NULL,
    birth_date  text NOT NULL, -- YYYY-MM-DD, the matcher's blocking key
    sex         text NOT NULL,
    street      text NOT NULL,
    city        text NOT NULL,
    state       text NOT NULL,
    postal_code text NOT NULL,
    phone       text NOT NULL
);

CREATE INDEX members_birth_date_idx ON members (birth_date, id);

-- The projection of each transfer's workflow state.
CREATE TABLE transfers (
    id             text COLLATE "C" PRIMARY KEY,
    client_id      text COLLATE "C" NOT NULL,
    partner_id     text COLLATE "C" NOT NULL,
    correlation_id text NOT NULL,
    state          text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    identity       jsonb,
    consent        jsonb,
    export         jsonb,
    error          jsonb
);

CREATE INDEX transfers_created_idx ON transfers (created_at DESC, id DESC);
CREATE INDEX transfers_state_idx ON transfers (state, created_at DESC, id DESC);
CREATE INDEX transfers_partner_idx ON transfers (partner_id, created_at DESC, id DESC);

-- What the client sent (PHI), apart from the projection that lists show.
CREATE TABLE transfer_requests (
    transfer_id text COLLATE "C" PRIMARY KEY REFERENCES transfers (id),
    request     jsonb NOT NULL
);

-- The key is claimed first and the transfer inserted after it, in the same
-- transaction: the reference is checked at commit.
CREATE TABLE idempotency_keys (
    client_id       text COLLATE "C" NOT NULL,
    idempotency_key text COLLATE "C" NOT NULL,
    fingerprint     text NOT NULL,
    transfer_id     text COLLATE "C" NOT NULL REFERENCES transfers (id) DEFERRABLE INITIALLY DEFERRED,
    status          text NOT NULL CHECK (status IN ('pending', 'complete')),
    response_status integer NOT NULL DEFAULT 0,
    response_body   bytea,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);

CREATE INDEX idempotency_keys_pending_idx ON idempotency_keys (created_at) WHERE status = 'pending';

-- The audit timeline. Rows are append-only (a later migration hash-chains
-- them in id order); the triggers below refuse updates and deletes.
CREATE TABLE timeline_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id text COLLATE "C" NOT NULL REFERENCES transfers (id),
    seq         bigint NOT NULL,
    event_key   text COLLATE "C" NOT NULL,
    occurred_at timestamptz NOT NULL,
    state       text NOT NULL,
    actor       text NOT NULL,
    event_type  text NOT NULL,
    detail      jsonb,
    UNIQUE (transfer_id, seq),
    UNIQUE (transfer_id, event_key)
);

-- +goose StatementBegin
CREATE FUNCTION timeline_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'timeline_events is append-only';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER timeline_events_no_change BEFORE UPDATE OR DELETE ON timeline_events
    FOR EACH ROW EXECUTE FUNCTION timeline_events_append_only();
CREATE TRIGGER timeline_events_no_truncate BEFORE TRUNCATE ON timeline_events
    FOR EACH STATEMENT EXECUTE FUNCTION timeline_events_append_only();

-- Export artifacts by digest. Each transfer owns its copy of a digest, so
-- withdrawing one transfer's export never touches another's. data is NULL
-- exactly when the payload was withdrawn; the row stays as evidence. No
-- reference to transfers: the contract lets artifacts be stored first.
CREATE TABLE artifacts (
    transfer_id  text COLLATE "C" NOT NULL,
    digest       text COLLATE "C" NOT NULL,
    name         text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    data         bytea,
    created_at   timestamptz NOT NULL,
    withdrawn_at timestamptz,
    PRIMARY KEY (transfer_id, digest),
    CHECK ((data IS NULL) = (withdrawn_at IS NOT NULL))
);

CREATE INDEX artifacts_digest_idx ON artifacts (digest);

-- +goose Down
DROP TABLE artifacts;
DROP TABLE timeline_events;
DROP FUNCTION timeline_events_append_only();
DROP TABLE idempotency_keys;
DROP TABLE transfer_requests;
DROP TABLE transfers;
DROP TABLE members;
