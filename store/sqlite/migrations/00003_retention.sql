-- Retention: the daily purge looks for transfers that ended (state) before
-- a cutoff (updated_at) and still hold export payloads.

-- +goose Up
CREATE INDEX transfers_state_updated_idx ON transfers (state, updated_at);

-- +goose Down
DROP INDEX transfers_state_updated_idx;
