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

-- Snapshots ------------------------------------------------------------------------------

-- name: save_snapshot
-- Keep a stream's latest snapshot, replacing the one before.
INSERT INTO snapshots (namespace, stream, version, schema_version, state, recorded_at)
VALUES (:namespace, :stream, :version, :schema_version, :state, :recorded_at)
ON CONFLICT (namespace, stream) DO UPDATE
SET version = excluded.version, schema_version = excluded.schema_version,
    state = excluded.state, recorded_at = excluded.recorded_at

-- name: select_snapshot
SELECT version, schema_version, state
FROM snapshots
WHERE namespace = :namespace AND stream = :stream

-- name: delete_snapshot
-- Deleting a stream (soft or hard) deletes its snapshot, in the same transaction.
DELETE FROM snapshots WHERE namespace = :namespace AND stream = :stream

-- Processing: processors and checkpoints -------------------------------------------------
-- Times are microseconds since the Unix epoch; :now is the caller's clock.

-- name: insert_processor
-- Record a processor the first time it runs (register_processor then checks the count).
INSERT INTO processors (namespace, name, partitions)
VALUES (:namespace, :name, :partitions)
ON CONFLICT (namespace, name) DO NOTHING

-- name: select_processors
-- Processors (one, or all when :name is NULL) with one row per partition that has a
-- checkpoint (partition and position are NULL when none has).
SELECT p.name, p.partitions, p.paused, p.generation, c.partition, c.position
FROM processors AS p
LEFT JOIN partitions AS c
    ON c.namespace = p.namespace AND c.processor = p.name AND c.position IS NOT NULL
WHERE p.namespace = :namespace AND (:name IS NULL OR p.name = :name)
ORDER BY p.name, c.partition

-- name: set_paused
UPDATE processors SET paused = :paused WHERE namespace = :namespace AND name = :name

-- name: save_checkpoint
-- Move a partition's checkpoint, without a lease check.
INSERT INTO partitions (namespace, processor, partition, position)
VALUES (:namespace, :processor, :partition, :position)
ON CONFLICT (namespace, processor, partition) DO UPDATE SET position = excluded.position

-- name: save_fenced_checkpoint
-- Move a partition's checkpoint only while :owner holds its lease: no row changed means
-- the lease was lost (another worker may own the partition now).
UPDATE partitions
SET position = :position
WHERE namespace = :namespace AND processor = :processor AND partition = :partition
  AND owner = :owner AND lease_expires_at > :now

-- Processing: failed keys ----------------------------------------------------------------

-- name: save_failure
-- Park a key or update its record. requested is never overwritten here: an operator's
-- pending request survives the runner's own updates (clear_request clears it).
INSERT INTO failures (
    namespace, processor, key, partition, position, event_id, event_type, attempts, error,
    stack, first_failed_at, last_failed_at, next_retry_at, state
) VALUES (
    :namespace, :processor, :key, :partition, :position, :event_id, :event_type, :attempts,
    :error, :stack, :first_failed_at, :last_failed_at, :next_retry_at, :state
)
ON CONFLICT (namespace, processor, key) DO UPDATE
SET partition = excluded.partition, position = excluded.position,
    event_id = excluded.event_id, event_type = excluded.event_type,
    attempts = excluded.attempts, error = excluded.error, stack = excluded.stack,
    first_failed_at = excluded.first_failed_at, last_failed_at = excluded.last_failed_at,
    next_retry_at = excluded.next_retry_at, state = excluded.state

-- name: clear_request
UPDATE failures SET requested = NULL
WHERE namespace = :namespace AND processor = :processor AND key = :key

-- name: delete_failure
DELETE FROM failures WHERE namespace = :namespace AND processor = :processor AND key = :key

-- name: request_action
-- An operator's retry or skip of a failed key; no row changed means the key is not failed.
UPDATE failures SET requested = :action
WHERE namespace = :namespace AND processor = :processor AND key = :key

-- name: select_failures
-- Failed keys of one processor (or all when :processor is NULL), oldest first.
SELECT processor, partition, key, position, event_id, event_type, attempts, error, stack,
       first_failed_at, last_failed_at, next_retry_at, state, requested
FROM failures
WHERE namespace = :namespace AND (:processor IS NULL OR processor = :processor)
ORDER BY first_failed_at, position

-- Processing: workers and leases ---------------------------------------------------------

-- name: save_heartbeat
INSERT INTO workers (namespace, owner, expires_at) VALUES (:namespace, :owner, :expires_at)
ON CONFLICT (namespace, owner) DO UPDATE SET expires_at = excluded.expires_at

-- name: delete_expired_workers
DELETE FROM workers WHERE namespace = :namespace AND expires_at <= :now

-- name: live_workers
SELECT owner FROM workers WHERE namespace = :namespace AND expires_at > :now ORDER BY owner

-- name: claim_lease
-- Take or renew a partition's lease if it is free, lapsed or already :owner's (creating
-- the partition's row if needed). One row changed means :owner holds it now.
INSERT INTO partitions (namespace, processor, partition, owner, lease_expires_at)
VALUES (:namespace, :processor, :partition, :owner, :expires_at)
ON CONFLICT (namespace, processor, partition) DO UPDATE
SET owner = excluded.owner, lease_expires_at = excluded.lease_expires_at
WHERE partitions.owner IS NULL OR partitions.owner = excluded.owner
   OR partitions.lease_expires_at <= :now

-- name: release_leases_except
-- Give up :owner's leases on a processor except the partitions in :keep (a JSON array).
UPDATE partitions SET owner = NULL, lease_expires_at = NULL
WHERE namespace = :namespace AND processor = :processor AND owner = :owner
  AND partition NOT IN (SELECT value FROM json_each(:keep))

-- name: select_leases
-- Leases on a processor, lapsed ones included until someone takes or releases them.
SELECT partition, owner, lease_expires_at
FROM partitions
WHERE namespace = :namespace AND processor = :processor AND owner IS NOT NULL
ORDER BY partition

-- Processing: documents ------------------------------------------------------------------

-- name: select_document
SELECT data FROM documents WHERE namespace = :namespace AND collection = :collection AND key = :key

-- name: save_document
INSERT INTO documents (namespace, collection, key, data)
VALUES (:namespace, :collection, :key, :data)
ON CONFLICT (namespace, collection, key) DO UPDATE SET data = excluded.data

-- name: delete_document
DELETE FROM documents WHERE namespace = :namespace AND collection = :collection AND key = :key

-- name: clear_documents
DELETE FROM documents WHERE namespace = :namespace AND collection = :collection

-- Processing: dropping a processor's state and jobs (replays) ----------------------------

-- name: drop_partitions
DELETE FROM partitions WHERE namespace = :namespace AND processor = :name

-- name: drop_failures
DELETE FROM failures WHERE namespace = :namespace AND processor = :name

-- name: drop_processor
DELETE FROM processors WHERE namespace = :namespace AND name = :name

-- name: insert_job
-- A new job; the partial unique index jobs_active refuses a second active one per processor.
INSERT INTO jobs (
    namespace, id, kind, processor, generation, state, step, target, error, created_at,
    updated_at
) VALUES (
    :namespace, :id, :kind, :processor, :generation, :state, :step, :target, :error,
    :created_at, :updated_at
)
ON CONFLICT DO NOTHING

-- name: select_jobs
SELECT id, kind, processor, generation, state, step, target, error, created_at, updated_at
FROM jobs
WHERE namespace = :namespace AND (:processor IS NULL OR processor = :processor)
ORDER BY created_at, id

-- name: update_job
-- Move a job to :state only from one of the :expected states (a JSON array).
UPDATE jobs
SET state = :state, error = :error, updated_at = :now,
    step = CASE WHEN :state = 'completed' THEN 'done' ELSE step END
WHERE namespace = :namespace AND id = :id
  AND state IN (SELECT value FROM json_each(:expected))

-- name: delete_job
DELETE FROM jobs WHERE namespace = :namespace AND id = :id

-- name: set_generation
UPDATE processors SET generation = :generation WHERE namespace = :namespace AND name = :name

-- API keys --------------------------------------------------------------------------------
-- Times are microseconds since the Unix epoch, given by the caller.

-- name: insert_api_key
-- Store a new key; a key with the same id is left alone (the caller sees rowcount 0).
INSERT INTO api_keys
    (namespace, id, name, secret_hash, roles, categories, created_at, expires_at)
VALUES
    (:namespace, :id, :name, :secret_hash, :roles, :categories, :created_at, :expires_at)
ON CONFLICT (namespace, id) DO NOTHING

-- name: select_api_keys
-- One key (:id), or every key when :id is NULL, oldest first.
SELECT id, name, secret_hash, roles, categories, created_at, expires_at, revoked_at,
       last_used_at
FROM api_keys
WHERE namespace = :namespace AND (:id IS NULL OR id = :id)
ORDER BY created_at, id

-- name: revoke_api_key
-- A key revoked before keeps its first revocation time.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, :at)
WHERE namespace = :namespace AND id = :id

-- name: touch_api_key
-- Record a use at most once per period: skip when a use at or after :stale_before is recorded.
UPDATE api_keys SET last_used_at = :at
WHERE namespace = :namespace AND id = :id
  AND (last_used_at IS NULL OR last_used_at < :stale_before)
