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
-- tags, correlation_id, recorded_at, hash.
INSERT INTO events (
    position, namespace, stream, category, version, id, type, data, metadata, tags,
    correlation_id, recorded_at, hash
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_event_tag
-- Positional: namespace, tag, position.
INSERT INTO event_tags (namespace, tag, position) VALUES (?, ?, ?)

-- name: save_stream_version
-- Record a stream's new version and chain head after an append; an append revives a
-- soft-deleted stream. Positional: namespace, stream, version, hash.
INSERT INTO streams (namespace, stream, version, hash) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, stream) DO UPDATE
SET version = excluded.version, state = 'active', hash = excluded.hash

-- name: insert_tombstone
-- Hard-delete a stream that never existed: it can never be created afterwards.
INSERT INTO streams (namespace, stream, state) VALUES (:namespace, :stream, 'tombstoned')

-- name: delete_stream_events
-- Physically remove a stream's events below a version (the trigger removes their tags).
DELETE FROM events
WHERE namespace = :namespace AND stream = :stream AND version < :before_version

-- name: anchor_stream
-- Before a purge removes versions below :before_version: keep the chain hash of the last
-- version it removes as the stream's anchor (unchanged when that event is gone already).
UPDATE streams
SET anchor = (
    SELECT e.hash FROM events e
    WHERE e.namespace = streams.namespace AND e.stream = streams.stream
      AND e.version = min(:before_version, streams.version + 1) - 1)
WHERE namespace = :namespace AND stream = :stream
  AND EXISTS (
    SELECT 1 FROM events e
    WHERE e.namespace = streams.namespace AND e.stream = streams.stream
      AND e.version = min(:before_version, streams.version + 1) - 1)

-- name: drop_purged_checkpoints
-- Before a purge removes versions below :before_version: delete the global chain's
-- checkpoints at or after the lowest position it removes (they no longer hold).
DELETE FROM chain_checkpoints
WHERE namespace = :namespace
  AND position >= (
    SELECT min(position) FROM events
    WHERE namespace = :namespace AND stream = :stream AND version < :before_version)

-- name: count_purge
-- Count a purge of the namespace (a verifier reading meanwhile records no checkpoint).
INSERT INTO chain_purges (namespace, purges, purged_at) VALUES (:namespace, 1, :now)
ON CONFLICT (namespace) DO UPDATE
SET purges = chain_purges.purges + 1, purged_at = excluded.purged_at

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
-- A stream's row (with its chain head), or nothing if it never existed.
SELECT version, state, truncated_before, max_age, max_count, metadata, hash
FROM streams
WHERE namespace = :namespace AND stream = :stream

-- name: list_streams
-- Streams in name order from an inclusive lower bound (the cursor folded in) below an
-- exclusive upper one, optionally of one category (see kronika.store.listing). A range
-- scan of the primary key.
SELECT stream, version, state, truncated_before, max_age, max_count, metadata
FROM streams
WHERE namespace = :namespace AND stream >= :low AND stream < :high
  AND (:category IS NULL OR stream = :category
       OR substr(stream, 1, length(:category) + 1) = :category || '-')
ORDER BY stream
LIMIT :limit

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

-- name: read_window_scan
-- The same filters checked row by row along the positions of the window (the rowid), for
-- windows where most events match: cheaper than a lookup of the row of each index entry.
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events NOT INDEXED
WHERE position BETWEEN :low AND :high
  AND namespace = :namespace
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
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

-- Retention (kronika.store.retention) ------------------------------------------------------
-- Retention changes events only through the truncate path above; these find streams with
-- limits and delete snapshots. :orphaned is 0 or 1; :recorded_before is microseconds since
-- the epoch or NULL (then no snapshot is old).

-- name: limited_streams
-- Active streams with a max_age or max_count, in name order after a cursor (one page).
SELECT stream, version, state, truncated_before, max_age, max_count, metadata
FROM streams
WHERE namespace = :namespace AND stream > :after AND state = 'active'
  AND (max_age IS NOT NULL OR max_count IS NOT NULL)
ORDER BY stream
LIMIT :limit

-- name: count_snapshots
-- Snapshots of streams that are not active (orphaned), or written before a time.
SELECT count(*)
FROM snapshots AS n
WHERE n.namespace = :namespace
  AND ((:orphaned AND NOT EXISTS (
            SELECT 1 FROM streams AS s
            WHERE s.namespace = n.namespace AND s.stream = n.stream AND s.state = 'active'))
       OR n.recorded_at < :recorded_before)

-- name: delete_snapshots
-- Delete at most :limit of the snapshots count_snapshots counts.
DELETE FROM snapshots
WHERE rowid IN (
    SELECT n.rowid
    FROM snapshots AS n
    WHERE n.namespace = :namespace
      AND ((:orphaned AND NOT EXISTS (
                SELECT 1 FROM streams AS s
                WHERE s.namespace = n.namespace AND s.stream = n.stream AND s.state = 'active'))
           OR n.recorded_at < :recorded_before)
    ORDER BY n.stream
    LIMIT :limit)

-- Hash chains (kronika.store.integrity, kronika verify) ----------------------------------
-- Raw reads of what is stored: no stream limits, no states.

-- name: chain_scan
-- Events after a position up to a bound, in position order, with their chain hashes. The
-- content comes as the JSON text of [stream, id, type, data, metadata, tags] (the id as
-- its canonical UUID string), built here so that Python parses each event only once; a
-- BLOB, so that it reaches Python without being decoded.
SELECT position, stream, version,
       CAST('[' || json_quote(stream) || ',"'
            || lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4)
                     || '-' || substr(h, 17, 4) || '-' || substr(h, 21))
            || '",' || json_quote(type) || ',' || CAST(data AS TEXT) || ','
            || CAST(metadata AS TEXT) || ',' || coalesce(tags, '[]') || ']' AS BLOB),
       hash
FROM (
    SELECT position, stream, version, hex(id) AS h, type, data, metadata, tags, hash
    FROM events
    WHERE namespace = :namespace AND position > :after AND position <= :upto
    ORDER BY position
    LIMIT :limit
)

-- name: chain_priors
-- For each [stream, version] pair of :wanted (a JSON array): whether the stream has a row,
-- its truncation mark and anchor, and the position and hash of the event one version lower.
SELECT json_extract(w.value, '$[0]'), s.stream IS NOT NULL, coalesce(s.truncated_before, 0),
       s.anchor, e.position, e.hash
FROM json_each(:wanted) AS w
LEFT JOIN streams s
    ON s.namespace = :namespace AND s.stream = json_extract(w.value, '$[0]')
LEFT JOIN events e
    ON e.namespace = :namespace AND e.stream = json_extract(w.value, '$[0]')
   AND e.version = json_extract(w.value, '$[1]') - 1

-- name: chain_tails
-- Stream rows after a name, in name order, each with its newest stored event.
SELECT s.stream, s.version, s.state, s.truncated_before, s.hash, e.version, e.hash, e.position
FROM streams s
LEFT JOIN events e
    ON e.namespace = s.namespace AND e.stream = s.stream
   AND e.version = (SELECT max(m.version) FROM events m
                    WHERE m.namespace = s.namespace AND m.stream = s.stream)
WHERE s.namespace = :namespace AND s.stream > :after
ORDER BY s.stream
LIMIT :limit

-- name: chain_checkpoints
-- The global chain's checkpoints after a position up to a bound, oldest first.
SELECT position, events, hash, created_at
FROM chain_checkpoints
WHERE namespace = :namespace AND position > :after AND position <= :upto
ORDER BY position

-- name: last_chain_checkpoint
SELECT position, events, hash, created_at
FROM chain_checkpoints
WHERE namespace = :namespace
ORDER BY position DESC
LIMIT 1

-- name: chain_purge_count
-- How many purges the namespace has had (0 if none).
SELECT coalesce((SELECT purges FROM chain_purges WHERE namespace = :namespace), 0)

-- name: record_chain_checkpoint
-- Keep a checkpoint of the global chain (an existing one at the position stays).
INSERT INTO chain_checkpoints (namespace, position, events, hash, created_at)
VALUES (:namespace, :position, :events, :hash, :created_at)
ON CONFLICT (namespace, position) DO NOTHING
