-- Identity models (issue 12): the Fellegi–Sunter parameters the matcher
-- decides with (identity.ModelParams, as JSON), kept as data so that every
-- process and every restart decides with the same weights. The model in
-- force is the one with the highest id; a retrain (`p2p identity train`)
-- appends one. Writers hold SQLite's write lock, so the first start
-- stores one model. Append-only: a decision can be traced to the model
-- that made it. No PHI: probabilities, counts, a time and who stored it
-- ("worker", or the operator of the CLI).

-- +goose Up
CREATE TABLE identity_models (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    params        TEXT NOT NULL,
    method        TEXT NOT NULL CHECK (method IN ('estimated', 'trained')),
    training_size INTEGER NOT NULL CHECK (training_size >= 0),
    trained_at    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
) STRICT;

-- +goose StatementBegin
CREATE TRIGGER identity_models_no_update BEFORE UPDATE ON identity_models
BEGIN
    SELECT RAISE(ABORT, 'identity_models is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER identity_models_no_delete BEFORE DELETE ON identity_models
BEGIN
    SELECT RAISE(ABORT, 'identity_models is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE identity_models;
