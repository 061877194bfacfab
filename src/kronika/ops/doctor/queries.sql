-- Read-only queries of `kronika doctor` (see kronika.ops.doctor.database).
--
-- PostgreSQL queries take %(name)s parameters; {schema} is replaced by a quoted identifier
-- with psycopg.sql.Identifier. SQLite queries take :name parameters. None of them writes.

-- name: pg_role
-- The connected role: superuser, and what it may do to Kronika's schema.
SELECT r.rolname,
       r.rolsuper,
       COALESCE(pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE'), false) AS owns_schema,
       COALESCE(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false) AS may_create
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = %(schema)s
WHERE r.rolname = current_user

-- name: pg_event_tables
-- Per event table: whether the connected role owns it, and the writes it may do.
SELECT c.relname,
       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') AS owns,
       pg_catalog.has_table_privilege(c.oid, 'UPDATE') AS may_update,
       pg_catalog.has_table_privilege(c.oid, 'DELETE') AS may_delete,
       pg_catalog.has_table_privilege(c.oid, 'TRUNCATE') AS may_truncate
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname IN ('events', 'event_tags')
ORDER BY c.relname

-- name: pg_connections
-- The server's connection limits, and the connected role's own limit (-1: none).
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT rolconnlimit FROM pg_catalog.pg_roles WHERE rolname = current_user)

-- name: pg_long_streams
-- Per category: streams that load more than %(threshold)s events (no snapshot, or one far
-- behind), and the most any of them loads.
SELECT split_part(s.stream, '-', 1) AS category,
       count(*) AS streams,
       max(s.version - COALESCE(n.version, s.truncated_before - 1)) AS longest
FROM {schema}.streams s
LEFT JOIN {schema}.snapshots n ON n.namespace = s.namespace AND n.stream = s.stream
WHERE s.namespace = %(namespace)s
  AND s.state = 'active'
  AND s.version IS NOT NULL
  AND s.version - COALESCE(n.version, s.truncated_before - 1) > %(threshold)s
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT 20

-- name: sqlite_long_streams
-- Per category: streams that load more than :threshold events (no snapshot, or one far
-- behind), and the most any of them loads.
SELECT substr(s.stream, 1, instr(s.stream || '-', '-') - 1) AS category,
       count(*) AS streams,
       max(s.version - COALESCE(n.version, s.truncated_before - 1)) AS longest
FROM streams s
LEFT JOIN snapshots n ON n.namespace = s.namespace AND n.stream = s.stream
WHERE s.namespace = :namespace
  AND s.state = 'active'
  AND s.version IS NOT NULL
  AND s.version - COALESCE(n.version, s.truncated_before - 1) > :threshold
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT 20
