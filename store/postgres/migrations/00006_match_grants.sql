-- Match grants: what a partner's successful $member-match (package pdex)
-- lets it do later. A requester may export the data of a member only while
-- it holds a grant for the member whose consent has not expired, within the
-- consent's scope (regular leaves sensitive resources out). The latest
-- grant of (requester, member) is the one in force; grants are append-only,
-- so every match stays as evidence. No PHI: ids, a scope and times.

-- +goose Up
CREATE TABLE match_grants (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester       text NOT NULL,
    member_id       text NOT NULL,
    consent_id      text NOT NULL,
    consent_scope   text NOT NULL CHECK (consent_scope IN ('regular', 'sensitive')),
    consent_expires timestamptz NOT NULL,
    granted_at      timestamptz NOT NULL
);
CREATE INDEX match_grants_requester ON match_grants (requester, member_id, seq);

-- +goose StatementBegin
CREATE FUNCTION match_grants_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'match_grants is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER match_grants_no_update BEFORE UPDATE ON match_grants
    FOR EACH ROW EXECUTE FUNCTION match_grants_append_only();

-- +goose Down
DROP TABLE match_grants;
DROP FUNCTION match_grants_append_only();
