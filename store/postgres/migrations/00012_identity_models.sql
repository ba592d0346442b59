-- Identity models (issue 12): the Fellegi–Sunter parameters the matcher
-- decides with (identity.ModelParams, as JSON), kept as data so that every
-- process and every restart decides with the same weights. The model in
-- force is the one with the highest id; a retrain (`p2p identity train`)
-- appends one. Writers lock the table (SHARE ROW EXCLUSIVE, which
-- conflicts with itself) so that the first start stores one model and ids
-- are in force in commit order. Append-only: a decision can be traced to
-- the model that made it. No PHI: probabilities, counts, a time and who
-- stored it ("worker", or the operator of the CLI).

-- +goose Up
CREATE TABLE identity_models (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    params        jsonb NOT NULL,
    method        text NOT NULL CHECK (method IN ('estimated', 'trained')),
    training_size bigint NOT NULL CHECK (training_size >= 0),
    trained_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    created_by    text NOT NULL
);

-- audit_append_only() is 00002's: it refuses the change.
CREATE TRIGGER identity_models_no_change BEFORE UPDATE OR DELETE ON identity_models
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER identity_models_no_truncate BEFORE TRUNCATE ON identity_models
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- +goose Down
DROP TABLE identity_models;
