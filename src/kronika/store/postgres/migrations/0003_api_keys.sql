-- Kronika PostgreSQL schema, version 3: API keys for the server.
--
-- Only a hash of each key's secret is stored. Times are given by the caller (the server's
-- clock), so every backend records the same instants.
CREATE TABLE {schema}.api_keys (
    namespace text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,                     -- public lookup handle: kr_<id>_<secret>
    name text NOT NULL,
    secret_hash bytea NOT NULL,                       -- SHA-256 of the secret
    roles text[] NOT NULL,
    categories text[],                                -- NULL: every category
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,                         -- updated at most once a minute
    PRIMARY KEY (namespace, id)
);
