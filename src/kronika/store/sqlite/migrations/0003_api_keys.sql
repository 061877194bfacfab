-- Migration 0003: API keys for the server.
--
-- Only a hash of each key's secret is stored. Times are microseconds since the Unix epoch
-- (UTC); roles and categories are JSON arrays of names (categories NULL: every category).
CREATE TABLE api_keys (
    namespace    TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    roles        TEXT    NOT NULL,
    categories   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    PRIMARY KEY (namespace, id)
) STRICT, WITHOUT ROWID;
