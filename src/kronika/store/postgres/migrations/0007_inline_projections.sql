-- Migration 0007: inline projections (K8, see kronika.store.inline).
--
-- One row per inline projection a store of the namespace has registered. types holds the
-- event types it handled when last registered (NULL: every type). needs_rebuild is true
-- while its read model misses events stored before it handled them; a rebuild clears it.
CREATE TABLE {schema}.inline_projections (
    namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    types text[],
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_position bigint NOT NULL,              -- the head when first registered
    needs_rebuild boolean NOT NULL,
    rebuilt_at timestamptz,
    rebuilt_position bigint,                          -- the head when last rebuilt
    PRIMARY KEY (namespace, name)
);
