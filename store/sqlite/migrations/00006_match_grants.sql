-- Match grants: what a partner's successful $member-match (package pdex)
-- lets it do later. A requester may export the data of a member only while
-- it holds a grant for the member whose consent has not expired, within the
-- consent's scope (regular leaves sensitive resources out). The latest
-- grant of (requester, member) is the one in force; grants are append-only,
-- so every match stays as evidence. No PHI: ids, a scope and times.

-- +goose Up
CREATE TABLE match_grants (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    requester       TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    consent_id      TEXT NOT NULL,
    consent_scope   TEXT NOT NULL CHECK (consent_scope IN ('regular', 'sensitive')),
    consent_expires TEXT NOT NULL,
    granted_at      TEXT NOT NULL
) STRICT;
CREATE INDEX match_grants_requester ON match_grants (requester, member_id, seq);

-- +goose StatementBegin
CREATE TRIGGER match_grants_no_update BEFORE UPDATE ON match_grants
BEGIN
    SELECT RAISE(ABORT, 'match_grants is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE match_grants;
