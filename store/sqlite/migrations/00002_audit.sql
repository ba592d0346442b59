-- The audit log: every timeline event gets a global, gapless position
-- (0..n-1, in commit order) and is a leaf of an RFC 6962 Merkle tree whose
-- stored hashes (golang.org/x/mod/sumdb/tlog) live in audit_hashes, so tree
-- heads and proofs never reread the events. Signed tree heads are kept in
-- audit_checkpoints. All three are append-only; audit_head only counts up.

-- +goose Up
CREATE TABLE audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    size INTEGER NOT NULL CHECK (size >= 0)
) STRICT;
INSERT INTO audit_head (one, size) VALUES (1, 0);

CREATE TABLE audit_log (
    position  INTEGER PRIMARY KEY,
    event_id  INTEGER NOT NULL UNIQUE REFERENCES timeline_events (id),
    leaf_hash BLOB NOT NULL -- tlog.RecordHash of audit.LeafData
) STRICT;

CREATE TABLE audit_hashes (
    idx  INTEGER PRIMARY KEY, -- tlog.StoredHashIndex
    hash BLOB NOT NULL
) STRICT;

CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    size      INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    signed_at TEXT NOT NULL,
    kid       TEXT NOT NULL,
    jws       TEXT NOT NULL
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
WHEN NEW.size <> OLD.size + 1 OR NEW.one <> OLD.one
BEGIN
    SELECT RAISE(ABORT, 'audit_head only grows by one');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_head is permanent');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN
    SELECT RAISE(ABORT, 'audit_hashes is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_hashes;
DROP TABLE audit_log;
DROP TABLE audit_head;
