-- The identity graph (identity/graph). identity_links ties an external
-- identity (a partner and its reference: the presentation digest) to one of
-- our members from valid_from; a link ends by a later record whose ends is
-- its seq and whose valid_to is the end, never by an UPDATE. made_by and
-- provenance are the JSON of graph.Maker and graph.Provenance.
-- identity_reviews remembers reviewers' decisions by presentation, so the
-- same presentation is not reviewed twice. Neither holds PHI: presentations
-- are HMAC-SHA256 digests under the one key in identity_key.

-- +goose Up
CREATE TABLE identity_links (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id   TEXT NOT NULL,
    external_ref TEXT NOT NULL,
    member_id    TEXT NOT NULL,
    valid_from   TEXT NOT NULL,
    valid_to     TEXT,
    ends         INTEGER REFERENCES identity_links (seq),
    made_by      TEXT NOT NULL,
    provenance   TEXT NOT NULL,
    CHECK ((ends IS NULL) = (valid_to IS NULL))
) STRICT;
CREATE INDEX identity_links_ref ON identity_links (partner_id, external_ref, seq);

CREATE TABLE identity_reviews (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id   TEXT NOT NULL,
    presentation TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    member_id    TEXT NOT NULL,
    reviewer     TEXT NOT NULL,
    decided_at   TEXT NOT NULL,
    transfer_id  TEXT NOT NULL
) STRICT;
CREATE INDEX identity_reviews_presentation ON identity_reviews (partner_id, presentation, id);

CREATE TABLE identity_key (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    key BLOB NOT NULL CHECK (length(key) = 32)
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER identity_links_no_update BEFORE UPDATE ON identity_links
BEGIN
    SELECT RAISE(ABORT, 'identity_links is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_links_no_delete BEFORE DELETE ON identity_links
BEGIN
    SELECT RAISE(ABORT, 'identity_links is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_reviews_no_update BEFORE UPDATE ON identity_reviews
BEGIN
    SELECT RAISE(ABORT, 'identity_reviews is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_reviews_no_delete BEFORE DELETE ON identity_reviews
BEGIN
    SELECT RAISE(ABORT, 'identity_reviews is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_key_no_update BEFORE UPDATE ON identity_key
BEGIN
    SELECT RAISE(ABORT, 'identity_key is permanent');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_key_no_delete BEFORE DELETE ON identity_key
BEGIN
    SELECT RAISE(ABORT, 'identity_key is permanent');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE identity_key;
DROP TABLE identity_reviews;
DROP TABLE identity_links;
