-- +goose Up
-- Which way a transfer moves a member's data: export (to the partner; every
-- transfer recorded before this migration) or import (from the partner).
ALTER TABLE transfers ADD COLUMN direction TEXT NOT NULL DEFAULT 'export' CHECK (direction IN ('export', 'import'));
CREATE INDEX transfers_direction_idx ON transfers (direction, created_at DESC, id DESC);

-- +goose Down
DROP INDEX transfers_direction_idx;
ALTER TABLE transfers DROP COLUMN direction;
