-- Named queries of the PostgreSQL backend.
--
-- {schema} (and {channel}) are replaced by quoted identifiers with psycopg.sql.Identifier;
-- values are always bound as parameters. The schema itself is in schema.sql and migrations/.

-- ---------------------------------------------------------------------------------------
-- Schema management

-- name: migrations_table_exists
-- Whether the schema has been set up at all (works before any migration).
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_tables
    WHERE schemaname = %(schema)s AND tablename = 'schema_migrations'
)

-- name: create_migrations_table
-- The schema and the table that records applied migrations.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
-- Migrations applied to the database, oldest first.
SELECT version, name, checksum FROM {schema}.schema_migrations ORDER BY version

-- name: record_migration
-- Remember that a migration was applied (in the migration's own transaction).
INSERT INTO {schema}.schema_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s)

-- name: lock_migrations
-- Serialise migrators of one schema (session lock: held across the per-migration transactions).
SELECT pg_advisory_lock(hashtextextended('kronika migrate ' || %(schema)s, 0))

-- name: unlock_migrations
SELECT pg_advisory_unlock(hashtextextended('kronika migrate ' || %(schema)s, 0))

-- ---------------------------------------------------------------------------------------
-- Sessions

-- name: configure_session
-- Every pooled connection reports times in UTC, and finds unqualified tables (a
-- projection's own read-model tables) in the store's schema first.
SELECT set_config('TimeZone', 'UTC', false),
       set_config('search_path', quote_ident(%(schema)s) || ', public', false)

-- name: set_statement_timeout
SELECT set_config('statement_timeout', %(milliseconds)s, false)

-- name: relax_commit
-- For the notification sender only: a lost notification is harmless, waiting for fsync is not.
SELECT set_config('synchronous_commit', 'off', false)

-- name: listen
LISTEN {channel}

-- name: notify
-- Wake the subscribers of other processes (sent outside append transactions).
SELECT pg_notify(%(channel)s, '')

-- ---------------------------------------------------------------------------------------
-- Writes

-- name: append
-- One round trip per append; see kronika_append in schema.sql.
SELECT o_versions, o_positions, o_stored FROM {schema}.kronika_append(
    %(namespace)s, %(streams)b, %(expected)b, %(counts)b, %(keys)b, %(exclusive)b,
    %(ids)b, %(types)b, %(data)b, %(metadata)b, %(tags)b, %(correlations)b, %(digests)b,
    %(condition)s, %(lookup)s
)

-- name: events_by_ids
-- Stored events with the given ids (to resolve a retried append).
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.id = ANY (%(ids)s::uuid[])
ORDER BY e.position

-- name: lock_stream
-- Exclusive lock on a stream for the rest of the transaction (same key as appends use).
SELECT pg_advisory_xact_lock(%(key)s)

-- name: stream_row
-- The stream's version and state, read under its lock.
SELECT version, state FROM {schema}.streams
WHERE namespace = %(namespace)s AND stream = %(stream)s

-- name: stream_tail
-- What a check-only part of a retried append reports: the version (-1 unless the stream is
-- active with events) and the last event's position (0 if none).
SELECT CASE WHEN s.state = 'active' THEN coalesce(s.version, -1) ELSE -1 END,
       coalesce((SELECT e.position FROM {schema}.events e
                 WHERE e.namespace = s.namespace AND e.stream = s.stream
                 ORDER BY e.version DESC LIMIT 1), 0)
FROM {schema}.streams s
WHERE s.namespace = %(namespace)s AND s.stream = %(stream)s

-- name: enable_purge
-- The documented privileged path: lets this transaction (only) delete events.
SELECT set_config('kronika.purge', 'on', true)

-- name: count_purge
-- The purge path's first step: count a purge of the namespace, locking its counter row
-- until the transaction ends (a verifier recording a checkpoint locks it too; see
-- record_chain_checkpoint), so purge_events then sees every checkpoint recorded before.
INSERT INTO {schema}.chain_purges AS p (namespace, purges)
VALUES (%(namespace)s, 1)
ON CONFLICT (namespace) DO UPDATE SET purges = p.purges + 1, purged_at = now()

-- name: purge_events
-- Physically remove a stream's events below a version, with their tag rows. Before they
-- go, the chain hash of the last one becomes the stream's anchor (unless it is gone
-- already), and the global chain's checkpoints from the lowest removed position go too.
WITH anchored AS (
    UPDATE {schema}.streams s SET anchor = e.hash
    FROM {schema}.events e
    WHERE s.namespace = %(namespace)s AND s.stream = %(stream)s
      AND e.namespace = s.namespace AND e.stream = s.stream
      AND e.version = least(%(before)s::bigint, s.version + 1) - 1
), gone AS (
    DELETE FROM {schema}.events
    WHERE namespace = %(namespace)s AND stream = %(stream)s AND version < %(before)s
    RETURNING position, tags
), stale AS (
    DELETE FROM {schema}.chain_checkpoints c
    WHERE c.namespace = %(namespace)s AND c.position >= (SELECT min(position) FROM gone)
)
DELETE FROM {schema}.event_tags t
USING gone CROSS JOIN LATERAL unnest(gone.tags) AS g(tag)
WHERE t.namespace = %(namespace)s AND t.tag = g.tag AND t.position = gone.position

-- name: insert_tombstone
-- Hard delete of a stream that never existed: it can never be created.
INSERT INTO {schema}.streams (namespace, stream, state)
VALUES (%(namespace)s, %(stream)s, 'tombstoned')

-- name: mark_removed
-- Record a (soft or hard) delete or a truncation of a stream.
UPDATE {schema}.streams
SET state = %(state)s, truncated_before = greatest(truncated_before, %(before)s)
WHERE namespace = %(namespace)s AND stream = %(stream)s

-- name: set_stream_metadata
-- Replace a stream's retention limits and metadata, creating its row if needed. No row
-- comes back when the stream is tombstoned.
INSERT INTO {schema}.streams AS s (namespace, stream, max_age, max_count, metadata)
VALUES (%(namespace)s, %(stream)s, %(max_age)s, %(max_count)s, %(metadata)s)
ON CONFLICT (namespace, stream) DO UPDATE
SET max_age = EXCLUDED.max_age, max_count = EXCLUDED.max_count, metadata = EXCLUDED.metadata
WHERE s.state <> 'tombstoned'
RETURNING version, state, truncated_before, max_age, max_count, metadata

-- ---------------------------------------------------------------------------------------
-- Reads. Stream reads are strongly consistent; global reads stop at kronika_horizon().

-- name: stream_info
SELECT version, state, truncated_before, max_age, max_count, metadata
FROM {schema}.streams
WHERE namespace = %(namespace)s AND stream = %(stream)s

-- name: list_streams
-- Streams in name order after a cursor, within [low, high), optionally of one category
-- (see kronika.store.listing). A range scan of the primary key: names compare byte-wise.
SELECT stream, version, state, truncated_before, max_age, max_count, metadata
FROM {schema}.streams
WHERE namespace = %(namespace)s AND stream > %(after)s
  AND stream >= %(low)s AND stream < %(high)s
  AND (%(category)s::text IS NULL OR split_part(stream, '-', 1) = %(category)s::text)
ORDER BY stream
LIMIT %(limit)s

-- name: read_stream_forward
-- The stream's state, then its visible events from a version (one NULL row if none).
SELECT s.state, e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags,
       e.recorded_at
FROM {schema}.streams s
LEFT JOIN LATERAL (
    SELECT ev.id, ev.stream, ev.version, ev.position, ev.type, ev.data, ev.metadata, ev.tags,
           ev.recorded_at
    FROM {schema}.events ev
    WHERE ev.namespace = s.namespace AND ev.stream = s.stream
      AND ev.version >= greatest(%(from_version)s::bigint, s.version - s.max_count + 1)
      AND (s.max_age IS NULL OR ev.recorded_at >= now() - make_interval(secs => s.max_age))
    ORDER BY ev.version
    LIMIT %(limit)s
) e ON true
WHERE s.namespace = %(namespace)s AND s.stream = %(stream)s

-- name: read_stream_backward
-- Like read_stream_forward, newest first, from a version (default: the last).
SELECT s.state, e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags,
       e.recorded_at
FROM {schema}.streams s
LEFT JOIN LATERAL (
    SELECT ev.id, ev.stream, ev.version, ev.position, ev.type, ev.data, ev.metadata, ev.tags,
           ev.recorded_at
    FROM {schema}.events ev
    WHERE ev.namespace = s.namespace AND ev.stream = s.stream
      AND ev.version <= coalesce(%(from_version)s::bigint, s.version)
      AND ev.version >= coalesce(s.version - s.max_count + 1, 0)
      AND (s.max_age IS NULL OR ev.recorded_at >= now() - make_interval(secs => s.max_age))
    ORDER BY ev.version DESC
    LIMIT %(limit)s
) e ON true
WHERE s.namespace = %(namespace)s AND s.stream = %(stream)s

-- name: read_all
-- The global log from a position, below the horizon.
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s
  AND e.position >= %(from_position)s AND e.position < {schema}.kronika_horizon()
ORDER BY e.position
LIMIT %(limit)s

-- name: read_all_type
-- The global log filtered by one event type (and optional categories): one index range,
-- already in order (read_all_types merges several, and sorts even one).
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.type = %(type)s
  AND e.position >= %(from_position)s AND e.position < {schema}.kronika_horizon()
  AND (%(categories)s::text[] IS NULL OR e.category = ANY (%(categories)s::text[]))
ORDER BY e.position
LIMIT %(limit)s

-- name: read_all_types
-- The global log filtered by event types (one index range per type, merged).
SELECT h.id, h.stream, h.version, h.position, h.type, h.data, h.metadata, h.tags, h.recorded_at
FROM unnest(%(types)s::text[]) AS f(type)
CROSS JOIN LATERAL (
    SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags,
           e.recorded_at
    FROM {schema}.events e
    WHERE e.namespace = %(namespace)s AND e.type = f.type
      AND e.position >= %(from_position)s AND e.position < {schema}.kronika_horizon()
      AND (%(categories)s::text[] IS NULL OR e.category = ANY (%(categories)s::text[]))
    ORDER BY e.position
    LIMIT %(limit)s
) h
ORDER BY h.position
LIMIT %(limit)s

-- name: read_all_category
-- The global log of one stream category: one index range, already in order.
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.category = %(category)s
  AND e.position >= %(from_position)s AND e.position < {schema}.kronika_horizon()
ORDER BY e.position
LIMIT %(limit)s

-- name: read_all_categories
-- The global log filtered by stream categories (one index range per category, merged).
SELECT h.id, h.stream, h.version, h.position, h.type, h.data, h.metadata, h.tags, h.recorded_at
FROM unnest(%(categories)s::text[]) AS f(category)
CROSS JOIN LATERAL (
    SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags,
           e.recorded_at
    FROM {schema}.events e
    WHERE e.namespace = %(namespace)s AND e.category = f.category
      AND e.position >= %(from_position)s AND e.position < {schema}.kronika_horizon()
    ORDER BY e.position
    LIMIT %(limit)s
) h
ORDER BY h.position
LIMIT %(limit)s

-- name: read_all_tags
-- The global log filtered by tags (driven by the first tag's index range), plus optional
-- type and category filters.
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.event_tags t
JOIN {schema}.events e ON e.namespace = t.namespace AND e.position = t.position
WHERE t.namespace = %(namespace)s AND t.tag = %(tag)s
  AND t.position >= %(from_position)s AND t.position < {schema}.kronika_horizon()
  AND e.tags @> %(tags)s::text[]
  AND (%(types)s::text[] IS NULL OR e.type = ANY (%(types)s::text[]))
  AND (%(categories)s::text[] IS NULL OR e.category = ANY (%(categories)s::text[]))
ORDER BY t.position
LIMIT %(limit)s

-- name: read_correlated
-- Events carrying a correlation id (from their metadata), in global order.
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.correlation_id = %(correlation_id)s
ORDER BY e.position
LIMIT %(limit)s

-- name: head_position
-- The newest position a global reader can see (0 if none).
SELECT coalesce(max(position), 0) FROM {schema}.events
WHERE namespace = %(namespace)s AND position < {schema}.kronika_horizon()

-- name: horizon
-- The visibility horizon now: global readers see exactly the positions below it.
SELECT {schema}.kronika_horizon()

-- name: pending_above_horizon
-- Whether committed events wait above the horizon (a global reader will see them soon),
-- and the horizon itself.
SELECT EXISTS (
           SELECT 1 FROM {schema}.events
           WHERE namespace = %(namespace)s AND position >= {schema}.kronika_horizon()
       ),
       {schema}.kronika_horizon()

-- ---------------------------------------------------------------------------------------
-- Snapshots

-- name: save_snapshot
-- Keep a stream's latest snapshot unless the stream is tombstoned, and return the stream's
-- state (no row: it does not exist). The stream row is locked FOR SHARE, so a concurrent
-- delete either waits for this write and then deletes the snapshot, or is seen by it.
WITH s AS (
    SELECT state FROM {schema}.streams
    WHERE namespace = %(namespace)s AND stream = %(stream)s
    FOR SHARE
), saved AS (
    INSERT INTO {schema}.snapshots AS n (namespace, stream, version, schema_version, state)
    SELECT %(namespace)s, %(stream)s, %(version)s, %(schema_version)s, %(state)s
    FROM s WHERE s.state <> 'tombstoned'
    ON CONFLICT (namespace, stream) DO UPDATE
    SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
        state = EXCLUDED.state, recorded_at = EXCLUDED.recorded_at
)
SELECT state FROM s

-- name: read_snapshot
SELECT version, schema_version, state FROM {schema}.snapshots
WHERE namespace = %(namespace)s AND stream = %(stream)s

-- name: delete_snapshot
-- Deleting a stream (soft or hard) deletes its snapshot, in the same transaction, after
-- the stream row was updated (which waits for a snapshot being written).
DELETE FROM {schema}.snapshots WHERE namespace = %(namespace)s AND stream = %(stream)s

-- ---------------------------------------------------------------------------------------
-- Processing transactions. Pooled connections are in autocommit mode; a processing
-- transaction opens one explicitly, because handlers run while it is open.

-- name: begin
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: save_checkpoint
-- Move a partition's checkpoint without checking its lease.
INSERT INTO {schema}.partitions AS p (namespace, processor, partition, position)
VALUES (%(namespace)s, %(processor)s, %(partition)s, %(position)s)
ON CONFLICT (namespace, processor, partition) DO UPDATE SET position = EXCLUDED.position

-- name: save_fenced_checkpoint
-- Move a partition's checkpoint only if the owner still holds its lease: no row updated
-- means the lease was lost (the caller rolls back). The row lock taken here makes a worker
-- claiming the partition wait for this transaction, and then read its checkpoint.
-- clock_timestamp(), not now(): the transaction may have started long ago.
UPDATE {schema}.partitions SET position = %(position)s
WHERE namespace = %(namespace)s AND processor = %(processor)s AND partition = %(partition)s
  AND owner = %(owner)s AND lease_expires_at > clock_timestamp()

-- name: save_failure
-- Park a key or update its failure record; an operator's request is left as stored.
INSERT INTO {schema}.failures AS f (
    namespace, processor, key, partition, position, event_id, event_type, attempts, error,
    stack, first_failed_at, last_failed_at, next_retry_at, state
)
VALUES (
    %(namespace)s, %(processor)s, %(key)s, %(partition)s, %(position)s, %(event_id)s,
    %(event_type)s, %(attempts)s, %(error)s, %(stack)s, %(first_failed_at)s,
    %(last_failed_at)s, %(next_retry_at)s, %(state)s
)
ON CONFLICT (namespace, processor, key) DO UPDATE
SET partition = EXCLUDED.partition, position = EXCLUDED.position,
    event_id = EXCLUDED.event_id, event_type = EXCLUDED.event_type,
    attempts = EXCLUDED.attempts, error = EXCLUDED.error, stack = EXCLUDED.stack,
    first_failed_at = EXCLUDED.first_failed_at, last_failed_at = EXCLUDED.last_failed_at,
    next_retry_at = EXCLUDED.next_retry_at, state = EXCLUDED.state

-- name: clear_request
-- An operator's request on a failed key was carried out.
UPDATE {schema}.failures SET requested = NULL
WHERE namespace = %(namespace)s AND processor = %(processor)s AND key = %(key)s

-- name: delete_failure
-- Un-park a key.
DELETE FROM {schema}.failures
WHERE namespace = %(namespace)s AND processor = %(processor)s AND key = %(key)s

-- name: get_document
SELECT data FROM {schema}.documents
WHERE namespace = %(namespace)s AND collection = %(collection)s AND key = %(key)s

-- name: put_document
INSERT INTO {schema}.documents AS d (namespace, collection, key, data)
VALUES (%(namespace)s, %(collection)s, %(key)s, %(data)s)
ON CONFLICT (namespace, collection, key) DO UPDATE SET data = EXCLUDED.data

-- name: delete_document
DELETE FROM {schema}.documents
WHERE namespace = %(namespace)s AND collection = %(collection)s AND key = %(key)s

-- name: clear_documents
DELETE FROM {schema}.documents
WHERE namespace = %(namespace)s AND collection = %(collection)s

-- ---------------------------------------------------------------------------------------
-- Dropping a processor's state, and jobs (replays); each statement its own transaction

-- name: drop_processor
-- Forget a processor's checkpoints, leases and failed keys, and its record unless kept.
WITH gone_partitions AS (
    DELETE FROM {schema}.partitions WHERE namespace = %(namespace)s AND processor = %(name)s
), gone_failures AS (
    DELETE FROM {schema}.failures WHERE namespace = %(namespace)s AND processor = %(name)s
)
DELETE FROM {schema}.processors
WHERE namespace = %(namespace)s AND name = %(name)s AND NOT %(keep_record)s

-- name: insert_job
-- A new job; the partial unique index jobs_active refuses a second active one per processor.
INSERT INTO {schema}.jobs (
    namespace, id, kind, processor, generation, state, step, target, error, created_at,
    updated_at
) VALUES (
    %(namespace)s, %(id)s, %(kind)s, %(processor)s, %(generation)s, %(state)s, %(step)s,
    %(target)s, %(error)s, %(created_at)s, %(updated_at)s
)
ON CONFLICT DO NOTHING

-- name: jobs
SELECT id, kind, processor, generation, state, step, target, error, created_at, updated_at
FROM {schema}.jobs
WHERE namespace = %(namespace)s
  AND (%(processor)s::text IS NULL OR processor = %(processor)s::text)
ORDER BY created_at, id

-- name: update_job
-- Move a job to a state only from one of the expected states.
UPDATE {schema}.jobs
SET state = %(state)s, error = %(error)s, updated_at = now(),
    step = CASE WHEN %(state)s = 'completed' THEN 'done' ELSE step END
WHERE namespace = %(namespace)s AND id = %(id)s AND state = ANY(%(expected)s::text[])

-- name: delete_job
DELETE FROM {schema}.jobs WHERE namespace = %(namespace)s AND id = %(id)s

-- name: activate_generation
-- Make a generation live; with a job id, only while that job is running, and complete it
-- in the same statement (so in the same transaction). No row: nothing changed.
WITH done AS (
    UPDATE {schema}.jobs
    SET state = 'completed', step = 'done', updated_at = now()
    WHERE namespace = %(namespace)s AND id = %(completing)s AND state = 'running'
    RETURNING id
)
UPDATE {schema}.processors
SET generation = %(generation)s
WHERE namespace = %(namespace)s AND name = %(name)s
  AND (%(completing)s::text IS NULL OR EXISTS (SELECT 1 FROM done))
RETURNING name

-- ---------------------------------------------------------------------------------------
-- Processors, failed keys, workers and leases (each statement its own transaction)

-- name: insert_processor
-- Record a processor the first time it runs (the caller then checks its partition count).
INSERT INTO {schema}.processors (namespace, name, partitions)
VALUES (%(namespace)s, %(name)s, %(partitions)s)
ON CONFLICT (namespace, name) DO NOTHING

-- name: processors
-- Processors (one, or every one when name is NULL, by name) with their checkpoints as two
-- parallel arrays (NULL when no partition has handled an event yet).
SELECT p.name, p.partitions, p.paused, p.generation,
       array_agg(c.partition ORDER BY c.partition) FILTER (WHERE c.position IS NOT NULL),
       array_agg(c.position ORDER BY c.partition) FILTER (WHERE c.position IS NOT NULL)
FROM {schema}.processors p
LEFT JOIN {schema}.partitions c ON c.namespace = p.namespace AND c.processor = p.name
WHERE p.namespace = %(namespace)s AND (%(name)s::text IS NULL OR p.name = %(name)s::text)
GROUP BY p.namespace, p.name
ORDER BY p.name

-- name: set_paused
UPDATE {schema}.processors SET paused = %(paused)s
WHERE namespace = %(namespace)s AND name = %(name)s

-- name: failures
-- Parked and quarantined keys (of one processor, or all when processor is NULL), oldest first.
SELECT processor, partition, key, position, event_id, event_type, attempts, error, stack,
       first_failed_at, last_failed_at, next_retry_at, state, requested
FROM {schema}.failures
WHERE namespace = %(namespace)s
  AND (%(processor)s::text IS NULL OR processor = %(processor)s::text)
ORDER BY first_failed_at, position

-- name: request
-- An operator asks for an action on a failed key (no row: the key is not failed).
UPDATE {schema}.failures SET requested = %(action)s
WHERE namespace = %(namespace)s AND processor = %(processor)s AND key = %(key)s

-- name: heartbeat
-- Keep a worker alive for ttl seconds (0: it leaves), forget workers whose heartbeat
-- lapsed, and list the live ones. The outer SELECT sees the table as it was before this
-- statement, so the worker's own row comes from the CTE.
WITH beat AS (
    INSERT INTO {schema}.workers AS w (namespace, owner, expires_at)
    VALUES (%(namespace)s, %(owner)s, now() + make_interval(secs => %(ttl)s))
    ON CONFLICT (namespace, owner) DO UPDATE SET expires_at = EXCLUDED.expires_at
    RETURNING w.owner, w.expires_at
), gone AS (
    DELETE FROM {schema}.workers
    WHERE namespace = %(namespace)s AND owner <> %(owner)s AND expires_at <= now()
)
SELECT owner FROM beat WHERE expires_at > now()
UNION
SELECT owner FROM {schema}.workers
WHERE namespace = %(namespace)s AND owner <> %(owner)s AND expires_at > now()
ORDER BY owner

-- name: acquire_leases
-- Claim or renew leases in one statement: a partition's row is created if new and claimed
-- if its lease is free, lapsed or the owner's own. Returns the partitions the owner holds.
-- Rows are locked in partition order (the caller sorts), so claims cannot deadlock.
INSERT INTO {schema}.partitions AS p (namespace, processor, partition, owner, lease_expires_at)
SELECT %(namespace)s, %(processor)s, w.partition, %(owner)s,
       now() + make_interval(secs => %(ttl)s)
FROM unnest(%(partitions)s::integer[]) WITH ORDINALITY AS w(partition, k)
ORDER BY w.k
ON CONFLICT (namespace, processor, partition) DO UPDATE
SET owner = EXCLUDED.owner, lease_expires_at = EXCLUDED.lease_expires_at
WHERE p.owner IS NULL OR p.owner = EXCLUDED.owner OR p.lease_expires_at <= now()
RETURNING p.partition

-- name: release_leases
-- Give up the owner's leases on a processor except those in keep; rows are locked in
-- partition order first, like acquire_leases.
WITH mine AS (
    SELECT partition FROM {schema}.partitions
    WHERE namespace = %(namespace)s AND processor = %(processor)s AND owner = %(owner)s
      AND partition <> ALL (%(keep)s::integer[])
    ORDER BY partition
    FOR UPDATE
)
UPDATE {schema}.partitions p SET owner = NULL, lease_expires_at = NULL
FROM mine
WHERE p.namespace = %(namespace)s AND p.processor = %(processor)s
  AND p.partition = mine.partition AND p.owner = %(owner)s

-- name: leases
-- Current leases on a processor (lapsed ones too, until claimed or released).
SELECT partition, owner, lease_expires_at FROM {schema}.partitions
WHERE namespace = %(namespace)s AND processor = %(processor)s AND owner IS NOT NULL
ORDER BY partition

-- API keys ---------------------------------------------------------------------------------
-- Times are given by the caller.

-- name: insert_api_key
-- Store a new key; a key with the same id is left alone (no row returned).
INSERT INTO {schema}.api_keys
    (namespace, id, name, secret_hash, roles, categories, created_at, expires_at)
VALUES (%(namespace)s, %(id)s, %(name)s, %(secret_hash)s, %(roles)s::text[],
        %(categories)s::text[], %(created_at)s, %(expires_at)s)
ON CONFLICT (namespace, id) DO NOTHING
RETURNING id

-- name: select_api_keys
-- One key (id), or every key when id is NULL, oldest first.
SELECT id, name, secret_hash, roles, categories, created_at, expires_at, revoked_at,
       last_used_at
FROM {schema}.api_keys
WHERE namespace = %(namespace)s AND (%(id)s::text IS NULL OR id = %(id)s::text)
ORDER BY created_at, id

-- name: revoke_api_key
-- A key revoked before keeps its first revocation time; returns the key afterwards.
UPDATE {schema}.api_keys SET revoked_at = coalesce(revoked_at, %(at)s)
WHERE namespace = %(namespace)s AND id = %(id)s
RETURNING id, name, secret_hash, roles, categories, created_at, expires_at, revoked_at,
          last_used_at

-- name: touch_api_key
-- Record a use at most once per period: skip when a use at or after stale_before is recorded.
UPDATE {schema}.api_keys SET last_used_at = %(at)s
WHERE namespace = %(namespace)s AND id = %(id)s
  AND (last_used_at IS NULL OR last_used_at < %(stale_before)s)

-- ---------------------------------------------------------------------------------------
-- Retention (kronika.store.retention). Retention changes events only through the truncate
-- path above; these find streams with limits and delete snapshots. recorded_before NULL
-- makes no snapshot old.

-- name: limited_streams
-- Active streams with a max_age or max_count, in name order after a cursor (one page).
SELECT stream, version, state, truncated_before, max_age, max_count, metadata
FROM {schema}.streams
WHERE namespace = %(namespace)s AND stream > %(after)s AND state = 'active'
  AND (max_age IS NOT NULL OR max_count IS NOT NULL)
ORDER BY stream
LIMIT %(limit)s

-- name: count_snapshots
-- Snapshots of streams that are not active (orphaned), or written before a time.
SELECT count(*)
FROM {schema}.snapshots n
WHERE n.namespace = %(namespace)s
  AND ((%(orphaned)s::boolean AND NOT EXISTS (
            SELECT 1 FROM {schema}.streams s
            WHERE s.namespace = n.namespace AND s.stream = n.stream AND s.state = 'active'))
       OR n.recorded_at < %(recorded_before)s::timestamptz)

-- name: delete_snapshots
-- Delete at most limit of the snapshots count_snapshots counts (rows another transaction
-- is writing are left for the next batch).
WITH doomed AS (
    SELECT n.namespace, n.stream
    FROM {schema}.snapshots n
    WHERE n.namespace = %(namespace)s
      AND ((%(orphaned)s::boolean AND NOT EXISTS (
                SELECT 1 FROM {schema}.streams s
                WHERE s.namespace = n.namespace AND s.stream = n.stream AND s.state = 'active'))
           OR n.recorded_at < %(recorded_before)s::timestamptz)
    ORDER BY n.stream
    LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
)
DELETE FROM {schema}.snapshots d
USING doomed
WHERE d.namespace = doomed.namespace AND d.stream = doomed.stream

-- ---------------------------------------------------------------------------------------
-- Hash chains (kronika.store.integrity, kronika verify). Raw reads of what is stored: no
-- stream limits, no states; scans stop below the visibility horizon.

-- name: chain_scan_limit
-- The newest position a scan may read: below the horizon (0 when nothing is readable).
SELECT coalesce(max(position), 0) FROM {schema}.events
WHERE namespace = %(namespace)s AND position < {schema}.kronika_horizon()

-- name: chain_scan
-- Events after a position up to a bound, in position order: the content as the JSON text of
-- [stream, id, type, data, metadata, tags] (one value to parse per event), and the hash.
SELECT e.position, e.stream, e.version,
       jsonb_build_array(e.stream, e.id, e.type, e.data, e.metadata, e.tags)::text, e.hash
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.position > %(after)s AND e.position <= %(upto)s
ORDER BY e.position
LIMIT %(limit)s

-- name: chain_priors
-- For each (stream, version): whether the stream has a row, its truncation mark and
-- anchor, and the position and hash of the event one version lower.
SELECT w.stream, s.stream IS NOT NULL, coalesce(s.truncated_before, 0), s.anchor,
       e.position, e.hash
FROM unnest(%(streams)s::text[], %(versions)s::bigint[]) AS w(stream, version)
LEFT JOIN {schema}.streams s ON s.namespace = %(namespace)s AND s.stream = w.stream
LEFT JOIN {schema}.events e
    ON e.namespace = %(namespace)s AND e.stream = w.stream AND e.version = w.version - 1

-- name: chain_tails
-- Stream rows after a name, in name order, each with its newest stored event.
SELECT s.stream, s.version, s.state, s.truncated_before, s.hash, e.version, e.hash, e.position
FROM {schema}.streams s
LEFT JOIN LATERAL (
    SELECT m.version, m.hash, m.position FROM {schema}.events m
    WHERE m.namespace = s.namespace AND m.stream = s.stream
    ORDER BY m.version DESC
    LIMIT 1
) e ON true
WHERE s.namespace = %(namespace)s AND s.stream > %(after)s
ORDER BY s.stream
LIMIT %(limit)s

-- name: chain_checkpoints
-- The global chain's checkpoints after a position up to a bound, oldest first.
SELECT position, events, hash, created_at FROM {schema}.chain_checkpoints
WHERE namespace = %(namespace)s AND position > %(after)s AND position <= %(upto)s
ORDER BY position

-- name: last_chain_checkpoint
SELECT position, events, hash, created_at FROM {schema}.chain_checkpoints
WHERE namespace = %(namespace)s
ORDER BY position DESC
LIMIT 1

-- name: chain_purge_count
-- How many purges the namespace has had (0 if none).
SELECT coalesce((SELECT purges FROM {schema}.chain_purges WHERE namespace = %(namespace)s), 0)

-- name: record_chain_checkpoint
-- Keep a checkpoint of the global chain unless the namespace's purge counter moved past
-- the value the verifier started with (a purge may have removed events it covers), and
-- return the counter. The upsert locks the counter row first (see count_purge).
WITH counter AS (
    INSERT INTO {schema}.chain_purges AS p (namespace, purges)
    VALUES (%(namespace)s, 0)
    ON CONFLICT (namespace) DO UPDATE SET purges = p.purges
    RETURNING p.purges
), saved AS (
    INSERT INTO {schema}.chain_checkpoints (namespace, position, events, hash)
    SELECT %(namespace)s, %(position)s, %(events)s, %(hash)s
    FROM counter WHERE counter.purges = %(purges)s
    ON CONFLICT (namespace, position) DO NOTHING
)
SELECT purges FROM counter
