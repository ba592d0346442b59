-- Audit leaf version 2 (internal/auditleaf): the leaf also covers the
-- transfer's partner, which the audit export shows and filters on. Each
-- event now records the partner of its transfer as it was when the event
-- was written (transfers is a mutable table; timeline_events is not), and
-- each audit entry the version its leaf was encoded with. Entries written
-- before keep version 1 and their NULL partner: a leaf is never re-encoded,
-- so the hashes already signed stay valid.

-- +goose Up
ALTER TABLE timeline_events ADD COLUMN partner_id text;
ALTER TABLE audit_log ADD COLUMN leaf_version smallint NOT NULL DEFAULT 1 CHECK (leaf_version IN (1, 2));

-- +goose Down
ALTER TABLE audit_log DROP COLUMN leaf_version;
ALTER TABLE timeline_events DROP COLUMN partner_id;
