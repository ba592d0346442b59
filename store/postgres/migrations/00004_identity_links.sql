-- The identity graph (identity/graph). identity_links ties an external
-- identity (a partner and its reference: the presentation digest) to one of
-- our members from valid_from; a link ends by a later record whose ends is
-- its seq and whose valid_to is the end, never by an UPDATE. made_by and
-- provenance are graph.Maker and graph.Provenance. identity_reviews
-- remembers reviewers' decisions by presentation, so the same presentation
-- is not reviewed twice. Neither holds PHI: presentations are HMAC-SHA256
-- digests under the one key in identity_key. Appenders of a link take a
-- transaction advisory lock on its external identity, so that two links of
-- one identity are decided one after the other.

-- +goose Up
CREATE TABLE identity_links (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id   text NOT NULL,
    external_ref text NOT NULL,
    member_id    text NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    ends         bigint REFERENCES identity_links (seq),
    made_by      jsonb NOT NULL,
    provenance   jsonb NOT NULL,
    CHECK ((ends IS NULL) = (valid_to IS NULL))
);
CREATE INDEX identity_links_ref ON identity_links (partner_id, external_ref, seq);

CREATE TABLE identity_reviews (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id   text NOT NULL,
    presentation text NOT NULL,
    decision     text NOT NULL CHECK (decision IN ('approve', 'reject')),
    member_id    text NOT NULL,
    reviewer     text NOT NULL,
    decided_at   timestamptz NOT NULL,
    transfer_id  text NOT NULL
);
CREATE INDEX identity_reviews_presentation ON identity_reviews (partner_id, presentation, id);

CREATE TABLE identity_key (
    one int PRIMARY KEY CHECK (one = 1),
    key bytea NOT NULL CHECK (length(key) = 32)
);

-- audit_append_only() is 00002's: it refuses the change.
CREATE TRIGGER identity_links_no_change BEFORE UPDATE OR DELETE ON identity_links
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER identity_links_no_truncate BEFORE TRUNCATE ON identity_links
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER identity_reviews_no_change BEFORE UPDATE OR DELETE ON identity_reviews
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER identity_reviews_no_truncate BEFORE TRUNCATE ON identity_reviews
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER identity_key_no_change BEFORE UPDATE OR DELETE ON identity_key
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- +goose Down
DROP TABLE identity_key;
DROP TABLE identity_reviews;
DROP TABLE identity_links;
