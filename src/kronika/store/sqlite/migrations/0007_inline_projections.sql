-- Migration 0007: inline projections (K8, see kronika.store.inline).
--
-- One row per inline projection a store of the namespace has registered. types is the JSON
-- array of the event types it handled when last registered (NULL: every type). Times are
-- microseconds since the Unix epoch (UTC). needs_rebuild is 1 while its read model misses
-- events stored before it handled them; a rebuild clears it.
CREATE TABLE inline_projections (
    namespace           TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    types               TEXT,
    registered_at       INTEGER NOT NULL,
    registered_position INTEGER NOT NULL,
    needs_rebuild       INTEGER NOT NULL,
    rebuilt_at          INTEGER,
    rebuilt_position    INTEGER,
    PRIMARY KEY (namespace, name)
) STRICT, WITHOUT ROWID;
