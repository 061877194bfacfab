-- Inline projections (see kronika.store.inline and kronika.store.sqlite.inline).
-- Times are microseconds since the Unix epoch; types is a JSON array of type names.

-- name: inline_records
-- Every inline projection recorded in a namespace, by name.
SELECT name, types, registered_at, registered_position, needs_rebuild, rebuilt_at,
       rebuilt_position
FROM inline_projections
WHERE namespace = :namespace
ORDER BY name

-- name: inline_record
SELECT name, types, registered_at, registered_position, needs_rebuild, rebuilt_at,
       rebuilt_position
FROM inline_projections
WHERE namespace = :namespace AND name = :name

-- name: insert_inline_record
INSERT INTO inline_projections (
    namespace, name, types, registered_at, registered_position, needs_rebuild
) VALUES (:namespace, :name, :types, :now, :position, :needs_rebuild)

-- name: update_inline_types
-- The projection now handles other types; needs_rebuild only ever turns on here.
UPDATE inline_projections
SET types = :types, needs_rebuild = max(needs_rebuild, :needs_rebuild)
WHERE namespace = :namespace AND name = :name

-- name: record_inline_rebuild
UPDATE inline_projections
SET needs_rebuild = 0, rebuilt_at = :now, rebuilt_position = :position
WHERE namespace = :namespace AND name = :name

-- name: delete_inline_record
DELETE FROM inline_projections WHERE namespace = :namespace AND name = :name

-- name: events_exist
-- Whether the namespace holds an event whose type is (:inside = 1) or is not (:inside = 0)
-- one of :types (NULL: any event).
SELECT EXISTS (
    SELECT 1 FROM events
    WHERE namespace = :namespace
      AND (:types IS NULL OR (type IN (SELECT value FROM json_each(:types))) = :inside)
)

-- name: rebuild_events
-- One batch of a rebuild: events of the types (NULL: all) from a position, in order.
SELECT position, id, stream, version, type, data, metadata, tags, recorded_at
FROM events
WHERE namespace = :namespace AND position >= :from_position
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY position
LIMIT :limit

-- name: clear_inline_collection
DELETE FROM documents WHERE namespace = :namespace AND collection = :collection
