-- API clients (issue 11, authn): the registered clients of /v1, how each
-- authenticates (a JWKS for its client assertions, by URL or inline, and/or
-- pinned certificates by the SHA-256 of their DER), the scopes it may be
-- granted and the person acting through it, if one. A disabled client gets
-- no token and its tokens stop working. No PHI: ids, scopes, keys and the
-- name of a member of our staff.
--
-- assertion_jtis is the replay cache of the token endpoints: each client
-- assertion's (client, jti) until the assertion expires, shared by every
-- API process. Rows past expires_at are deleted as new ones come.

-- +goose Up
CREATE TABLE api_clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL, -- space-separated caller.Scope values
    jwks_url    TEXT NOT NULL,
    jwks        TEXT NOT NULL, -- an inline JWKS (JSON), or ''
    person      TEXT NOT NULL,
    disabled_at TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

-- One certificate names one client.
CREATE TABLE api_client_certs (
    sha256    TEXT PRIMARY KEY, -- lower-case hex SHA-256 of the DER certificate (RFC 8705 x5t#S256)
    client_id TEXT NOT NULL REFERENCES api_clients (id) ON DELETE CASCADE
) STRICT;
CREATE INDEX api_client_certs_client ON api_client_certs (client_id);

CREATE TABLE assertion_jtis (
    client_id  TEXT NOT NULL, -- prefixed with the token endpoint's surface
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT;
CREATE INDEX assertion_jtis_expires ON assertion_jtis (expires_at);

-- +goose Down
DROP TABLE assertion_jtis;
DROP TABLE api_client_certs;
DROP TABLE api_clients;
