-- The transfer that recorded a grant's $member-match (package pdex), so
-- that a served export can name the matches it rests on. '' for grants
-- recorded before, and for matches of a $bulk-member-match batch.

-- +goose Up
ALTER TABLE match_grants ADD COLUMN transfer_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE match_grants DROP COLUMN transfer_id;
