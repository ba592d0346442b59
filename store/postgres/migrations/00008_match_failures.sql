-- Failed matches: each $member-match, or member of a $bulk-member-match,
-- that found no member or several, by requester, so that the brute-force
-- cap (package pdex, Throttle) counts one partner's failures across every
-- process and restart. A counter, not evidence (the transfers' timelines
-- are): rows older than the window are deleted as new ones come. No PHI: a
-- partner id and a time.

-- +goose Up
CREATE TABLE match_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester text NOT NULL,
    failed_at timestamptz NOT NULL
);
CREATE INDEX match_failures_requester ON match_failures (requester, failed_at);

-- +goose Down
DROP TABLE match_failures;
