-- The canonical schema of Kronika's SQLite backend, at the newest migration.
--
-- It must always equal the result of applying every file in migrations/ to an empty
-- database (tests/integration/test_sqlite_store.py compares sqlite_master). Change the
-- schema by adding a migration, then update this file to match.

-- Which migrations have been applied. Migration 0001 creates it.
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at TEXT    NOT NULL
) STRICT;

-- The global log. position is the rowid: unique, increasing, never reused (AUTOINCREMENT
-- keeps the high-water mark in sqlite_sequence even after the newest events are deleted).
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace      TEXT    NOT NULL,
    stream         TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    id             BLOB    NOT NULL,
    type           TEXT    NOT NULL,
    data           BLOB    NOT NULL,
    metadata       BLOB    NOT NULL,
    tags           TEXT,
    correlation_id TEXT,
    recorded_at    INTEGER NOT NULL,
    hash           BLOB                -- chain hash (migration 0005); NULL: stored before
) STRICT;

CREATE UNIQUE INDEX events_stream_version ON events (namespace, stream, version);

CREATE UNIQUE INDEX events_id ON events (namespace, id);

CREATE INDEX events_namespace_position ON events (namespace, position);

CREATE INDEX events_type ON events (namespace, type, position);

CREATE INDEX events_category ON events (namespace, category, position);

CREATE INDEX events_correlation ON events (namespace, correlation_id, position)
    WHERE correlation_id IS NOT NULL;

-- One row per (event, distinct tag), for tag filters and append conditions.
CREATE TABLE event_tags (
    namespace TEXT    NOT NULL,
    tag       TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (namespace, tag, position)
) STRICT, WITHOUT ROWID;

-- One row per stream that ever had an event, settings, or a tombstone.
CREATE TABLE streams (
    namespace        TEXT    NOT NULL,
    stream           TEXT    NOT NULL,
    version          INTEGER,
    state            TEXT    NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'deleted', 'tombstoned')),
    truncated_before INTEGER NOT NULL DEFAULT 0,
    max_age          REAL,
    max_count        INTEGER,
    metadata         BLOB    NOT NULL DEFAULT X'7B7D',
    hash             BLOB,           -- the chain's head: the last event's hash (0005)
    anchor           BLOB,           -- the chain hash before the first stored event (0005)
    PRIMARY KEY (namespace, stream)
) STRICT, WITHOUT ROWID;

-- Events are immutable: only the store's delete and truncate paths remove them.
CREATE TRIGGER events_immutable BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'kronika: events are immutable; they can only be deleted by the store');
END;

-- Deleting an event deletes its tag rows.
CREATE TRIGGER events_delete_tags AFTER DELETE ON events
WHEN old.tags IS NOT NULL
BEGIN
    DELETE FROM event_tags
    WHERE namespace = old.namespace
      AND tag IN (SELECT value FROM json_each(old.tags))
      AND position = old.position;
END;

-- Snapshots and the processing runtime's state (migration 0002). Times are microseconds
-- since the Unix epoch (UTC), like events.recorded_at.

-- The latest snapshot of a stream. Deleting the stream (soft or hard) deletes it.
CREATE TABLE snapshots (
    namespace      TEXT    NOT NULL,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    state          BLOB    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, stream)
) STRICT;

-- One row per processor (projection, reactor) that has run.
CREATE TABLE processors (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    partitions INTEGER NOT NULL CHECK (partitions >= 1),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    generation INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (namespace, name)
) STRICT, WITHOUT ROWID;

-- One row per partition of a processor: its checkpoint and its lease, so a checkpoint is
-- fenced by the lease in one UPDATE. position is NULL until the partition handled an
-- event; owner and lease_expires_at are NULL while nobody holds the lease.
CREATE TABLE partitions (
    namespace        TEXT    NOT NULL,
    processor        TEXT    NOT NULL,
    partition        INTEGER NOT NULL,
    position         INTEGER,
    owner            TEXT,
    lease_expires_at INTEGER,
    PRIMARY KEY (namespace, processor, partition)
) STRICT, WITHOUT ROWID;

-- Keys parked (retrying) or quarantined by a processor, one row per key.
CREATE TABLE failures (
    namespace       TEXT    NOT NULL,
    processor       TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    error           TEXT    NOT NULL,
    stack           TEXT    NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at  INTEGER NOT NULL,
    next_retry_at   INTEGER,
    state           TEXT    NOT NULL CHECK (state IN ('retrying', 'quarantined')),
    requested       TEXT    CHECK (requested IN ('retry', 'skip')),
    PRIMARY KEY (namespace, processor, key)
) STRICT;

CREATE INDEX failures_age ON failures (namespace, first_failed_at, position);

-- Read-model documents (JSON text), written in processing transactions.
CREATE TABLE documents (
    namespace  TEXT NOT NULL,
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (namespace, collection, key)
) STRICT;

-- Live workers: each heartbeat pushes expires_at forward.
CREATE TABLE workers (
    namespace  TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, owner)
) STRICT, WITHOUT ROWID;

-- API keys for the server (migration 0003). Only a hash of each secret is stored; roles
-- and categories are JSON arrays of names (categories NULL: every category).
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

-- Jobs: replays of projections (migration 0004). At most one under way per processor.
CREATE TABLE jobs (
    namespace  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    processor  TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('running', 'stopped', 'completed')),
    step       TEXT    NOT NULL,
    target     INTEGER NOT NULL,
    error      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) STRICT;

CREATE UNIQUE INDEX jobs_active ON jobs (namespace, processor)
WHERE state IN ('running', 'stopped');

-- Hash chains (migration 0005, see kronika.store.integrity): events.hash, streams.hash and
-- streams.anchor above, and the global chain's checkpoints. A checkpoint holds the position
-- of the last event it covers, how many chained events it covers and the global hash G;
-- kronika verify records them, and purges delete those at or after the lowest position
-- they remove. chain_purges counts purges per namespace.
CREATE TABLE chain_checkpoints (
    namespace  TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE chain_purges (
    namespace TEXT    NOT NULL,
    purges    INTEGER NOT NULL,
    purged_at INTEGER NOT NULL,
    PRIMARY KEY (namespace)
) STRICT, WITHOUT ROWID;

-- The backups catalog (migration 0006): one row per finished kronika backup of this
-- database (every namespace, so no namespace column). verified_at is NULL for an archive
-- never read back.
CREATE TABLE backups (
    id            TEXT    NOT NULL PRIMARY KEY,
    path          TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    last_position INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    engine        TEXT    NOT NULL,
    verified_at   INTEGER
) STRICT;

CREATE INDEX backups_finished ON backups (finished_at);

-- Inline projections (migration 0007, see kronika.store.inline): one row per projection a
-- store of the namespace has registered. types is the JSON array of the event types it
-- handled when last registered (NULL: every type); needs_rebuild is 1 while its read model
-- misses events stored before it handled them.
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
