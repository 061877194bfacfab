-- Named queries of the SQLite backend, loaded by kronika.store.sqlite.sql.
--
-- Parameters are always bound by sqlite3. The three statements of an append use positional "?"
-- parameters (bound from tuples: the fastest path for executemany); every other query
-- uses named ":name" parameters. Event rows are always selected with the same columns,
-- in the order kronika.store.sqlite.rows.decode_events expects:
-- position, id, stream, version, type, data, metadata, tags, recorded_at.

-- Transactions ---------------------------------------------------------------------------

-- name: begin_immediate
-- Start a write transaction, taking the database's write lock now (waits busy_timeout).
BEGIN IMMEDIATE

-- name: begin_deferred
-- Start a read transaction: every later SELECT sees one snapshot.
BEGIN DEFERRED

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: savepoint
-- Isolate one request of a group commit, so a failure undoes only its own writes.
SAVEPOINT kronika_request

-- name: release_savepoint
RELEASE kronika_request

-- name: rollback_to_savepoint
ROLLBACK TO kronika_request

-- Connection settings --------------------------------------------------------------------

-- name: enable_wal
-- Returns the journal mode now in force ("wal" unless the file system cannot do it).
PRAGMA journal_mode = WAL

-- name: synchronous_full
-- fsync the WAL on every commit: a committed append survives power loss.
PRAGMA synchronous = FULL

-- name: synchronous_normal
-- fsync only at checkpoints: faster; the newest commits may be lost on power loss.
PRAGMA synchronous = NORMAL

-- name: writer_cache_size
-- 64 MiB of page cache for the writer (allocated as used): index pages keyed by random
-- event ids stay in memory while the log grows.
PRAGMA cache_size = -65536

-- name: limit_wal_size
-- Truncate the WAL file back to 64 MiB after a checkpoint instead of letting it stay large.
PRAGMA journal_size_limit = 67108864

-- name: query_only
-- Reader connections refuse writes.
PRAGMA query_only = ON

-- name: data_version
-- Changes whenever another connection (of any process) commits to the database.
PRAGMA data_version

-- Schema migrations ----------------------------------------------------------------------

-- name: migrations_table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'

-- name: applied_migrations
SELECT version, checksum FROM schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (:version, :name, :checksum, :applied_at)

-- Writes ---------------------------------------------------------------------------------

-- name: last_position
-- The highest position ever assigned, including events deleted since.
SELECT seq FROM sqlite_sequence WHERE name = 'events'

-- name: insert_event
-- Positional: position, namespace, stream, category, version, id, type, data, metadata,
-- tags, correlation_id, recorded_at.
INSERT INTO events (
    position, namespace, stream, category, version, id, type, data, metadata, tags,
    correlation_id, recorded_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_event_tag
-- Positional: namespace, tag, position.
INSERT INTO event_tags (namespace, tag, position) VALUES (?, ?, ?)

-- name: save_stream_version
-- Record a stream's new version after an append; an append revives a soft-deleted stream.
-- Positional: namespace, stream, version.
INSERT INTO streams (namespace, stream, version) VALUES (?, ?, ?)
ON CONFLICT (namespace, stream) DO UPDATE SET version = excluded.version, state = 'active'

-- name: insert_tombstone
-- Hard-delete a stream that never existed: it can never be created afterwards.
INSERT INTO streams (namespace, stream, state) VALUES (:namespace, :stream, 'tombstoned')

-- name: delete_stream_events
-- Physically remove a stream's events below a version (the trigger removes their tags).
DELETE FROM events
WHERE namespace = :namespace AND stream = :stream AND version < :before_version

-- name: mark_stream
-- Set a stream's state and raise its truncation mark after deleting events.
UPDATE streams
SET state = :state, truncated_before = max(truncated_before, :before_version)
WHERE namespace = :namespace AND stream = :stream

-- name: save_stream_settings
-- Replace retention limits and metadata, creating the stream row (without events) if needed.
INSERT INTO streams (namespace, stream, max_age, max_count, metadata)
VALUES (:namespace, :stream, :max_age, :max_count, :metadata)
ON CONFLICT (namespace, stream) DO UPDATE
SET max_age = excluded.max_age, max_count = excluded.max_count, metadata = excluded.metadata

-- Reads ----------------------------------------------------------------------------------

-- name: select_stream
-- A stream's row, or nothing if it never existed.
SELECT version, state, truncated_before, max_age, max_count, metadata
FROM streams
WHERE namespace = :namespace AND stream = :stream

-- name: stream_last_position
-- Global position of the newest remaining event of a stream.
SELECT position FROM events
WHERE namespace = :namespace AND stream = :stream
ORDER BY version DESC
LIMIT 1

-- name: select_event_by_id
-- The stored event with an id, to recognise a retried append.
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events
WHERE namespace = :namespace AND id = :id

-- name: read_stream_forwards
-- Events of a stream from a version up, newer than a recording time (max_age).
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events
WHERE namespace = :namespace AND stream = :stream
  AND version >= :low AND recorded_at >= :recorded_since
ORDER BY version
LIMIT :limit

-- name: read_stream_backwards
-- Events of a stream from a version down to a lower bound (max_count), newest first.
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events
WHERE namespace = :namespace AND stream = :stream
  AND version BETWEEN :low AND :high AND recorded_at >= :recorded_since
ORDER BY version DESC
LIMIT :limit

-- name: head_position
SELECT max(position) FROM events WHERE namespace = :namespace

-- name: read_all
-- The global log from a position, unfiltered.
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events
WHERE namespace = :namespace AND position >= :from_position
ORDER BY position
LIMIT :limit

-- Filtered reads scan one window of positions [:low, :high] at a time (the caller widens
-- the window while matches are sparse), so sorting a window's matches stays cheap while
-- the filter is answered from an index. :types, :categories and :tags are JSON arrays or
-- NULL; :tag_count is the number of distinct tags an event must all carry.

-- name: read_window_by_types
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events INDEXED BY events_type
WHERE namespace = :namespace
  AND type IN (SELECT value FROM json_each(:types))
  AND position BETWEEN :low AND :high
  AND (:categories IS NULL OR category IN (SELECT value FROM json_each(:categories)))
  AND (:tags IS NULL OR position IN (
      SELECT position FROM event_tags
      WHERE namespace = :namespace
        AND tag IN (SELECT value FROM json_each(:tags))
        AND position BETWEEN :low AND :high
      GROUP BY position
      HAVING count(*) = :tag_count))
ORDER BY position
LIMIT :limit

-- name: read_window_by_categories
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events INDEXED BY events_category
WHERE namespace = :namespace
  AND category IN (SELECT value FROM json_each(:categories))
  AND position BETWEEN :low AND :high
  AND (:tags IS NULL OR position IN (
      SELECT position FROM event_tags
      WHERE namespace = :namespace
        AND tag IN (SELECT value FROM json_each(:tags))
        AND position BETWEEN :low AND :high
      GROUP BY position
      HAVING count(*) = :tag_count))
ORDER BY position
LIMIT :limit

-- name: read_window_by_tags
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events NOT INDEXED
WHERE position IN (
      SELECT position FROM event_tags
      WHERE namespace = :namespace
        AND tag IN (SELECT value FROM json_each(:tags))
        AND position BETWEEN :low AND :high
      GROUP BY position
      HAVING count(*) = :tag_count)
ORDER BY position
LIMIT :limit
