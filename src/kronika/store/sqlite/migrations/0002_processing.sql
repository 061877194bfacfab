-- Migration 0002: snapshots, and the processing runtime's state.
--
-- Times are microseconds since the Unix epoch (UTC), like events.recorded_at.

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
