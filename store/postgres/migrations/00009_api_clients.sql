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
    id          text PRIMARY KEY,
    name        text NOT NULL,
    scopes      text NOT NULL, -- space-separated caller.Scope values
    jwks_url    text NOT NULL,
    jwks        text NOT NULL, -- an inline JWKS (JSON), or ''
    person      text NOT NULL,
    disabled_at timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- One certificate names one client.
CREATE TABLE api_client_certs (
    sha256    text PRIMARY KEY, -- lower-case hex SHA-256 of the DER certificate (RFC 8705 x5t#S256)
    client_id text NOT NULL REFERENCES api_clients (id) ON DELETE CASCADE
);
CREATE INDEX api_client_certs_client ON api_client_certs (client_id);

CREATE TABLE assertion_jtis (
    client_id  text NOT NULL, -- prefixed with the token endpoint's surface
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX assertion_jtis_expires ON assertion_jtis (expires_at);

-- +goose Down
DROP TABLE assertion_jtis;
DROP TABLE api_client_certs;
DROP TABLE api_clients;
