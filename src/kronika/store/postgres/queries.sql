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
-- Every pooled connection reports times in UTC.
SELECT set_config('TimeZone', 'UTC', false)

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
    %(ids)b, %(types)b, %(data)b, %(metadata)b, %(tags)b, %(correlations)b,
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

-- name: purge_events
-- Physically remove a stream's events below a version, with their tag rows.
WITH gone AS (
    DELETE FROM {schema}.events
    WHERE namespace = %(namespace)s AND stream = %(stream)s AND version < %(before)s
    RETURNING position, tags
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
