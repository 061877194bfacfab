-- Backups and restores of the SQLite backend (see kronika/store/archive.py for the format).
--
-- export_<section> reads a table in the archive's value format (uuids and bytes as lowercase
-- hex, JSON as text, times as microseconds); import_<section> writes one row of it
-- (positional parameters in the section's column order, converted by archive.py).

-- name: tables
-- The tables the database has (an older schema may lack some).
SELECT name FROM sqlite_master WHERE type = 'table'

-- name: namespaces
-- Every namespace that holds data.
SELECT namespace FROM streams
UNION SELECT namespace FROM events
UNION SELECT namespace FROM chain_checkpoints
UNION SELECT namespace FROM snapshots
UNION SELECT namespace FROM api_keys
UNION SELECT namespace FROM processors
UNION SELECT namespace FROM partitions
UNION SELECT namespace FROM failures
UNION SELECT namespace FROM documents
UNION SELECT namespace FROM jobs
ORDER BY 1

-- name: high_water
-- The highest position ever assigned, including events deleted since (0 if none).
SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)

-- name: heads
-- The highest event position of each namespace.
SELECT namespace, max(position) FROM events GROUP BY namespace

-- name: raise_high_water
-- Make new positions start above a restored archive's (AUTOINCREMENT reads this).
UPDATE sqlite_sequence SET seq = max(seq, :floor) WHERE name = 'events'

-- name: insert_high_water
INSERT INTO sqlite_sequence (name, seq) VALUES ('events', :floor)

-- name: bulk_journal_off
-- Building a new file that is thrown away when anything fails: no journal needed.
PRAGMA journal_mode = OFF

-- name: bulk_synchronous_off
PRAGMA synchronous = OFF

-- name: bulk_cache_size
-- 64 MiB of page cache for index maintenance while loading (a fixed amount).
PRAGMA cache_size = -65536

-- name: journal_wal
PRAGMA journal_mode = WAL

-- name: checkpoint_truncate
-- Write the WAL back into the database file and empty it.
PRAGMA wal_checkpoint(TRUNCATE)

-- Counts ---------------------------------------------------------------------------------

-- name: count_streams
SELECT count(*) FROM streams

-- name: count_events
SELECT count(*) FROM events

-- name: count_chain_checkpoints
SELECT count(*) FROM chain_checkpoints

-- name: count_snapshots
SELECT count(*) FROM snapshots

-- name: count_api_keys
SELECT count(*) FROM api_keys

-- name: count_processors
SELECT count(*) FROM processors

-- name: count_partitions
SELECT count(*) FROM partitions

-- name: count_failures
SELECT count(*) FROM failures

-- name: count_documents
SELECT count(*) FROM documents

-- name: count_jobs
SELECT count(*) FROM jobs

-- Export ---------------------------------------------------------------------------------

-- name: export_streams
SELECT namespace, stream, version, state, truncated_before, max_age, max_count,
       CAST(metadata AS TEXT), lower(hex(hash)), lower(hex(anchor))
FROM streams ORDER BY namespace, stream

-- name: export_events
-- In position order (the rowid): the cheapest scan, and the best order to insert again.
SELECT namespace, position, stream, version, lower(hex(id)), type, CAST(data AS TEXT),
       CAST(metadata AS TEXT), coalesce(tags, '[]'), correlation_id, recorded_at,
       lower(hex(hash))
FROM events ORDER BY position

-- name: export_chain_checkpoints
SELECT namespace, position, events, lower(hex(hash)), created_at
FROM chain_checkpoints ORDER BY namespace, position

-- name: export_snapshots
SELECT namespace, stream, version, schema_version, CAST(state AS TEXT), recorded_at
FROM snapshots ORDER BY namespace, stream

-- name: export_api_keys
SELECT namespace, id, name, lower(hex(secret_hash)), roles, categories, created_at,
       expires_at, revoked_at, last_used_at
FROM api_keys ORDER BY namespace, id

-- name: export_processors
SELECT namespace, name, partitions, paused, generation
FROM processors ORDER BY namespace, name

-- name: export_partitions
SELECT namespace, processor, partition, position
FROM partitions ORDER BY namespace, processor, partition

-- name: export_failures
SELECT namespace, processor, key, partition, position, lower(hex(event_id)), event_type,
       attempts, error, stack, first_failed_at, last_failed_at, next_retry_at, state, requested
FROM failures ORDER BY namespace, processor, key

-- name: export_documents
SELECT namespace, collection, key, data
FROM documents ORDER BY namespace, collection, key

-- name: export_jobs
SELECT namespace, id, kind, processor, generation, state, step, target, error, created_at,
       updated_at
FROM jobs ORDER BY namespace, id

-- Import ---------------------------------------------------------------------------------

-- name: import_streams
INSERT INTO streams (namespace, stream, version, state, truncated_before, max_age,
                     max_count, metadata, hash, anchor)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: import_events
-- Positional: position, namespace, stream, category, version, id, type, data, metadata,
-- tags, correlation_id, recorded_at, hash.
INSERT INTO events (
    position, namespace, stream, category, version, id, type, data, metadata, tags,
    correlation_id, recorded_at, hash
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: import_event_tags
INSERT INTO event_tags (namespace, tag, position) VALUES (?, ?, ?)

-- name: import_chain_checkpoints
INSERT INTO chain_checkpoints (namespace, position, events, hash, created_at)
VALUES (?, ?, ?, ?, ?)

-- name: import_snapshots
INSERT INTO snapshots (namespace, stream, version, schema_version, state, recorded_at)
VALUES (?, ?, ?, ?, ?, ?)

-- name: import_api_keys
INSERT INTO api_keys (namespace, id, name, secret_hash, roles, categories, created_at,
                      expires_at, revoked_at, last_used_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: import_processors
INSERT INTO processors (namespace, name, partitions, paused, generation)
VALUES (?, ?, ?, ?, ?)

-- name: import_partitions
-- Without leases: the workers that held them belong to the source.
INSERT INTO partitions (namespace, processor, partition, position) VALUES (?, ?, ?, ?)

-- name: import_failures
INSERT INTO failures (namespace, processor, key, partition, position, event_id, event_type,
                      attempts, error, stack, first_failed_at, last_failed_at, next_retry_at,
                      state, requested)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: import_documents
INSERT INTO documents (namespace, collection, key, data) VALUES (?, ?, ?, ?)

-- name: import_jobs
INSERT INTO jobs (namespace, id, kind, processor, generation, state, step, target, error,
                  created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- The backups catalog (migration 0006) -------------------------------------------------

-- name: insert_backup
INSERT INTO backups (id, path, started_at, finished_at, events, last_position, bytes,
                     sha256, engine, verified_at)
VALUES (:id, :path, :started_at, :finished_at, :events, :last_position, :bytes, :sha256,
        :engine, :verified_at)

-- name: mark_verified
-- An archive (known by its file's SHA-256) was read back and found intact.
UPDATE backups SET verified_at = :verified_at WHERE sha256 = :sha256

-- name: select_backups
-- Newest first; :limit -1 for all.
SELECT id, path, started_at, finished_at, events, last_position, bytes, sha256, engine,
       verified_at
FROM backups ORDER BY finished_at DESC, id LIMIT :limit
