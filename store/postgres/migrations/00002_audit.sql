-- The audit log: every timeline event gets a global, gapless position
-- (0..n-1, in commit order) and is a leaf of an RFC 6962 Merkle tree whose
-- stored hashes (golang.org/x/mod/sumdb/tlog) live in audit_hashes, so tree
-- heads and proofs never reread the events. Signed tree heads are kept in
-- audit_checkpoints. Appenders take the one row of audit_head
-- (UPDATE … RETURNING) inside their transaction, which serialises them:
-- positions follow commit order. The tables are append-only; audit_head
-- only counts up by one.

-- +goose Up
CREATE TABLE audit_head (
    one  int PRIMARY KEY CHECK (one = 1),
    size bigint NOT NULL CHECK (size >= 0)
);
INSERT INTO audit_head (one, size) VALUES (1, 0);

CREATE TABLE audit_log (
    position  bigint PRIMARY KEY,
    event_id  bigint NOT NULL UNIQUE REFERENCES timeline_events (id),
    leaf_hash bytea NOT NULL -- tlog.RecordHash of audit.LeafData
);

CREATE TABLE audit_hashes (
    idx  bigint PRIMARY KEY, -- tlog.StoredHashIndex
    hash bytea NOT NULL
);

CREATE TABLE audit_checkpoints (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size      bigint NOT NULL,
    root_hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    kid       text NOT NULL,
    jws       text NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION audit_head_grows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size <> OLD.size + 1 OR NEW.one <> OLD.one THEN
        RAISE EXCEPTION 'audit_head only grows by one';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_grows();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_hashes_no_change BEFORE UPDATE OR DELETE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_hashes_no_truncate BEFORE TRUNCATE ON audit_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_hashes;
DROP TABLE audit_log;
DROP TABLE audit_head;
DROP FUNCTION audit_head_grows();
DROP FUNCTION audit_append_only();
