-- Inline projections (see kronika.store.inline and kronika.store.postgres.inline).

-- name: append_inline
-- The append (see the append query) inside a transaction that then runs the inline
-- projections' writes; now() is the events' recorded_at (the transaction's start time).
SELECT o_versions, o_positions, o_stored, now() FROM {schema}.kronika_append(
    %(namespace)s, %(streams)b, %(expected)b, %(counts)b, %(keys)b, %(exclusive)b,
    %(ids)b, %(types)b, %(data)b, %(metadata)b, %(tags)b, %(correlations)b, %(digests)b,
    %(condition)s, %(lookup)s
)

-- name: inline_records
-- Every inline projection recorded in a namespace, by name.
SELECT name, types, registered_at, registered_position, needs_rebuild, rebuilt_at,
       rebuilt_position
FROM {schema}.inline_projections
WHERE namespace = %(namespace)s
ORDER BY name

-- name: inline_record
SELECT name, types, registered_at, registered_position, needs_rebuild, rebuilt_at,
       rebuilt_position
FROM {schema}.inline_projections
WHERE namespace = %(namespace)s AND name = %(name)s
FOR UPDATE

-- name: insert_inline_record
-- Another process may register the same projection at the same time: the first one wins.
INSERT INTO {schema}.inline_projections (
    namespace, name, types, registered_position, needs_rebuild
) VALUES (%(namespace)s, %(name)s, %(types)s::text[], %(position)s, %(needs_rebuild)s)
ON CONFLICT (namespace, name) DO NOTHING

-- name: update_inline_types
-- The projection now handles other types; needs_rebuild only ever turns on here.
UPDATE {schema}.inline_projections
SET types = %(types)s::text[], needs_rebuild = needs_rebuild OR %(needs_rebuild)s
WHERE namespace = %(namespace)s AND name = %(name)s

-- name: record_inline_rebuild
UPDATE {schema}.inline_projections
SET needs_rebuild = false, rebuilt_at = now(), rebuilt_position = %(position)s
WHERE namespace = %(namespace)s AND name = %(name)s

-- name: delete_inline_record
DELETE FROM {schema}.inline_projections WHERE namespace = %(namespace)s AND name = %(name)s

-- name: events_exist
-- Whether the namespace holds an event whose type is (inside) or is not (not inside) one of
-- the types (NULL: any event).
SELECT EXISTS (
    SELECT 1 FROM {schema}.events
    WHERE namespace = %(namespace)s
      AND (%(types)s::text[] IS NULL OR (type = ANY (%(types)s::text[])) = %(inside)s)
)

-- name: stored_head
-- The newest stored position, committed or not yet below the horizon (rebuilds hold the
-- appends' lock, so nothing is in flight).
SELECT coalesce(max(position), 0) FROM {schema}.events WHERE namespace = %(namespace)s

-- name: lock_appends
-- A rebuild's lock: every append that writes events inserts or updates a streams row,
-- which SHARE mode makes wait until the rebuild commits; reads are not blocked.
LOCK TABLE {schema}.streams IN SHARE MODE

-- name: rebuild_events
-- One batch of a rebuild: events of the types (NULL: all) from a position, in order.
SELECT e.id, e.stream, e.version, e.position, e.type, e.data, e.metadata, e.tags, e.recorded_at
FROM {schema}.events e
WHERE e.namespace = %(namespace)s AND e.position >= %(from_position)s
  AND (%(types)s::text[] IS NULL OR e.type = ANY (%(types)s::text[]))
ORDER BY e.position
LIMIT %(limit)s

-- name: lock_registration
-- Serialises registrations (and rebuilds) of a namespace's inline projections, so two
-- processes opening at once do not race on CREATE TABLE IF NOT EXISTS.
SELECT pg_advisory_xact_lock(%(key)s)

-- name: table_exists
-- Whether a projection's table exists (found on the search path: the store's schema
-- first). CREATE TABLE IF NOT EXISTS needs the CREATE privilege even when it does, which
-- the runtime role usually lacks: the owner creates the tables, the application uses them.
SELECT to_regclass(%(table)s) IS NOT NULL
