-- Backups and restores of the PostgreSQL backend (see kronika/store/archive.py for the format).
--
-- export_<section> reads a table in the archive's value format (uuids and bytes as lowercase
-- hex, JSON as text, times as microseconds since the epoch); import_<section> is the COPY
-- that loads it (archive.py converts times and bytes). {schema} is the quoted schema name.

-- name: tables
-- The tables the schema has (an older schema may lack some).
SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %(schema)s

-- name: namespaces
-- Every namespace that holds data.
SELECT namespace FROM {schema}.streams
UNION SELECT namespace FROM {schema}.events
UNION SELECT namespace FROM {schema}.chain_checkpoints
UNION SELECT namespace FROM {schema}.snapshots
UNION SELECT namespace FROM {schema}.api_keys
UNION SELECT namespace FROM {schema}.processors
UNION SELECT namespace FROM {schema}.partitions
UNION SELECT namespace FROM {schema}.failures
UNION SELECT namespace FROM {schema}.documents
UNION SELECT namespace FROM {schema}.jobs
ORDER BY 1

-- name: heads
-- The highest event position of each namespace.
SELECT namespace, max(position) FROM {schema}.events GROUP BY namespace

-- name: restore_settings
-- A restore may take minutes: no statement timeout inside its transaction.
SELECT set_config('statement_timeout', '0', true)

-- name: lock_restore
-- One restore at a time per schema (released when the transaction ends).
SELECT pg_advisory_xact_lock(hashtextextended('kronika restore ' || %(schema)s, 0))

-- name: event_tags
-- The tag index of the restored events: every event of a restored namespace from the
-- lowest restored position on (a merge only adds events above a namespace's head).
INSERT INTO {schema}.event_tags (namespace, tag, position)
SELECT DISTINCT e.namespace, t.tag, e.position
FROM unnest(%(namespaces)s::text[], %(lows)s::bigint[]) AS r(namespace, low)
JOIN {schema}.events e ON e.namespace = r.namespace AND e.position >= r.low
CROSS JOIN LATERAL unnest(e.tags) AS t(tag)

-- name: shared_position
-- A position held by events of two namespaces within the restored range (a merge must not
-- create one: positions are unique across namespaces, as SQLite requires).
SELECT e.position
FROM {schema}.events e
WHERE e.position BETWEEN %(low)s AND %(high)s
GROUP BY e.position
HAVING count(*) > 1
LIMIT 1

-- name: position_base
-- This transaction's position base without the offset (it has a transaction id: it wrote).
SELECT pg_current_xact_id()::text::bigint << 16

-- name: position_offset
SELECT {schema}.kronika_position_offset()

-- name: set_position_offset
-- Keep new positions above the restored ones (see kronika_position_offset in schema.sql).
-- {offset} is an integer literal, a multiple of 65536.
CREATE OR REPLACE FUNCTION {schema}.kronika_position_offset() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT {offset}::bigint $$

-- Counts ---------------------------------------------------------------------------------

-- name: count_streams
SELECT count(*) FROM {schema}.streams

-- name: count_events
SELECT count(*) FROM {schema}.events

-- name: count_chain_checkpoints
SELECT count(*) FROM {schema}.chain_checkpoints

-- name: count_snapshots
SELECT count(*) FROM {schema}.snapshots

-- name: count_api_keys
SELECT count(*) FROM {schema}.api_keys

-- name: count_processors
SELECT count(*) FROM {schema}.processors

-- name: count_partitions
SELECT count(*) FROM {schema}.partitions

-- name: count_failures
SELECT count(*) FROM {schema}.failures

-- name: count_documents
SELECT count(*) FROM {schema}.documents

-- name: count_jobs
SELECT count(*) FROM {schema}.jobs

-- Export ---------------------------------------------------------------------------------

-- name: export_streams
SELECT namespace, stream, version, state, truncated_before, max_age, max_count,
       metadata::text, encode(hash, 'hex'), encode(anchor, 'hex')
FROM {schema}.streams ORDER BY namespace, stream

-- name: export_events
-- In primary-key order (namespace, position): an index scan, no sort.
SELECT namespace, position, stream, version, replace(id::text, '-', ''), type, data::text,
       metadata::text, tags, correlation_id,
       (extract(epoch FROM recorded_at) * 1000000)::bigint, encode(hash, 'hex')
FROM {schema}.events ORDER BY namespace, position

-- name: export_chain_checkpoints
SELECT namespace, position, events, encode(hash, 'hex'),
       (extract(epoch FROM created_at) * 1000000)::bigint
FROM {schema}.chain_checkpoints ORDER BY namespace, position

-- name: export_snapshots
SELECT namespace, stream, version, schema_version, state::text,
       (extract(epoch FROM recorded_at) * 1000000)::bigint
FROM {schema}.snapshots ORDER BY namespace, stream

-- name: export_api_keys
SELECT namespace, id, name, encode(secret_hash, 'hex'), roles, categories,
       (extract(epoch FROM created_at) * 1000000)::bigint,
       (extract(epoch FROM expires_at) * 1000000)::bigint,
       (extract(epoch FROM revoked_at) * 1000000)::bigint,
       (extract(epoch FROM last_used_at) * 1000000)::bigint
FROM {schema}.api_keys ORDER BY namespace, id

-- name: export_processors
SELECT namespace, name, partitions, paused, generation
FROM {schema}.processors ORDER BY namespace, name

-- name: export_partitions
SELECT namespace, processor, partition, position
FROM {schema}.partitions ORDER BY namespace, processor, partition

-- name: export_failures
SELECT namespace, processor, key, partition, position, replace(event_id::text, '-', ''),
       event_type, attempts, error, stack,
       (extract(epoch FROM first_failed_at) * 1000000)::bigint,
       (extract(epoch FROM last_failed_at) * 1000000)::bigint,
       (extract(epoch FROM next_retry_at) * 1000000)::bigint,
       state, requested
FROM {schema}.failures ORDER BY namespace, processor, key

-- name: export_documents
SELECT namespace, collection, key, data::text
FROM {schema}.documents ORDER BY namespace, collection, key

-- name: export_jobs
SELECT namespace, id, kind, processor, generation, state, step, target, error,
       (extract(epoch FROM created_at) * 1000000)::bigint,
       (extract(epoch FROM updated_at) * 1000000)::bigint
FROM {schema}.jobs ORDER BY namespace, id

-- Import ---------------------------------------------------------------------------------

-- name: import_streams
COPY {schema}.streams (namespace, stream, version, state, truncated_before, max_age,
                       max_count, metadata, hash, anchor) FROM STDIN

-- name: import_events
-- category is generated from the stream; event_tags is filled afterwards (see event_tags).
COPY {schema}.events (namespace, position, stream, version, id, type, data, metadata, tags,
                      correlation_id, recorded_at, hash) FROM STDIN

-- name: import_chain_checkpoints
COPY {schema}.chain_checkpoints (namespace, position, events, hash, created_at) FROM STDIN

-- name: import_snapshots
COPY {schema}.snapshots (namespace, stream, version, schema_version, state, recorded_at)
FROM STDIN

-- name: import_api_keys
COPY {schema}.api_keys (namespace, id, name, secret_hash, roles, categories, created_at,
                        expires_at, revoked_at, last_used_at) FROM STDIN

-- name: import_processors
COPY {schema}.processors (namespace, name, partitions, paused, generation) FROM STDIN

-- name: import_partitions
-- Without leases: the workers that held them belong to the source.
COPY {schema}.partitions (namespace, processor, partition, position) FROM STDIN

-- name: import_failures
COPY {schema}.failures (namespace, processor, key, partition, position, event_id, event_type,
                        attempts, error, stack, first_failed_at, last_failed_at,
                        next_retry_at, state, requested) FROM STDIN

-- name: import_documents
COPY {schema}.documents (namespace, collection, key, data) FROM STDIN

-- name: import_jobs
COPY {schema}.jobs (namespace, id, kind, processor, generation, state, step, target, error,
                    created_at, updated_at) FROM STDIN

-- The backups catalog (migration 0006) -------------------------------------------------

-- name: insert_backup
INSERT INTO {schema}.backups (id, path, started_at, finished_at, events, last_position,
                              bytes, sha256, engine, verified_at)
VALUES (%(id)s, %(path)s, %(started_at)s, %(finished_at)s, %(events)s, %(last_position)s,
        %(bytes)s, %(sha256)s, %(engine)s, %(verified_at)s)

-- name: mark_verified
-- An archive (known by its file's SHA-256) was read back and found intact.
UPDATE {schema}.backups SET verified_at = %(verified_at)s WHERE sha256 = %(sha256)s

-- name: select_backups
-- Newest first; :limit NULL for all.
SELECT id, path, started_at, finished_at, events, last_position, bytes, sha256, engine,
       verified_at
FROM {schema}.backups ORDER BY finished_at DESC, id LIMIT %(limit)s
