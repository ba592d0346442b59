-- Member versions (issue 12): every write of members stamps the rows it
-- writes with the next version, one per transaction, under a lock that
-- makes versions commit in order. A process that holds the index in memory
-- reads the rows with a version above the last it applied, before each
-- decision, and so never decides on a stale copy. Rows written before this
-- migration keep version 0: a full load reads them.

-- +goose Up
ALTER TABLE members ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX members_version_idx ON members (version, id);

-- +goose Down
DROP INDEX members_version_idx;
ALTER TABLE members DROP COLUMN version;
