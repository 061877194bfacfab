-- The canonical Kronika PostgreSQL schema: what applying every migration in migrations/
-- produces (tests/integration/test_postgres_store.py proves it). Read this file to learn the
-- schema; change it only together with a new migration.
--
-- Every object lives in the store's schema ({schema} is replaced by the quoted schema name),
-- and every table carries the namespace (tenant) as the first key column. Names compare
-- byte-wise (COLLATE "C"): cheaper index maintenance, and equality is all Kronika needs.
--
-- The migration runner also creates {schema}.schema_migrations (see queries.sql).

-- Streams: one row per stream that ever had events, metadata or a tombstone.
CREATE TABLE {schema}.streams (
    namespace text COLLATE "C" NOT NULL,
    stream text COLLATE "C" NOT NULL,
    version bigint,                                   -- last event's version; NULL: never had one
    state text NOT NULL DEFAULT 'active',             -- active, deleted or tombstoned
    truncated_before bigint NOT NULL DEFAULT 0,       -- lower versions were removed
    max_age double precision,                         -- seconds; enforced on stream reads
    max_count integer,                                -- newest N; enforced on stream reads
    metadata jsonb NOT NULL DEFAULT jsonb_build_object(),
    hash bytea,                                       -- the chain's head (0005)
    anchor bytea,                                     -- chain hash before the first stored event
    PRIMARY KEY (namespace, stream)
);

-- Events: the log. position = ((transaction id << 16) + kronika_position_offset())
-- | index within the transaction.
CREATE TABLE {schema}.events (
    position bigint NOT NULL,
    version bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    id uuid NOT NULL,
    namespace text COLLATE "C" NOT NULL,
    stream text COLLATE "C" NOT NULL,
    category text COLLATE "C" NOT NULL
        GENERATED ALWAYS AS (split_part(stream, '-', 1)) STORED,
    type text COLLATE "C" NOT NULL,
    correlation_id text COLLATE "C",
    tags text[] NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    hash bytea,                                       -- chain hash (0005); NULL: stored before
    PRIMARY KEY (namespace, position)
);
CREATE UNIQUE INDEX events_id_key ON {schema}.events (namespace, id);
CREATE UNIQUE INDEX events_stream_version_key ON {schema}.events (namespace, stream, version);
CREATE INDEX events_type_idx ON {schema}.events (namespace, type, position);
CREATE INDEX events_category_idx ON {schema}.events (namespace, category, position);
CREATE INDEX events_correlation_idx ON {schema}.events (namespace, correlation_id, position)
    WHERE correlation_id IS NOT NULL;

-- Tags, one row per (event, distinct tag): drives tag reads and append-condition checks.
CREATE TABLE {schema}.event_tags (
    namespace text COLLATE "C" NOT NULL,
    tag text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (namespace, tag, position)
);

-- The global position offset: a multiple of 65,536 added to every position (and to the
-- horizon). 0 unless a restore of positions from another cluster raised it (kronika
-- restore re-creates this function), so that later appends sort after restored events.
CREATE FUNCTION {schema}.kronika_position_offset() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 0::bigint $$;

-- The visibility horizon: every transaction with a lower id has finished, so a reader that
-- stops below it never skips an event that commits later. Inlined by the planner. The
-- position offset (migration 0005) is added to positions and to the horizon alike.
CREATE FUNCTION {schema}.kronika_horizon() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
           + {schema}.kronika_position_offset()
$$;

-- Events are immutable. Only the store's delete/truncate path may remove rows, by setting
-- kronika.purge = 'on' for its own transaction (SET LOCAL / set_config(..., true)).
CREATE FUNCTION {schema}.kronika_guard_events() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('kronika.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'kronika: % on %.% is not allowed: events are immutable',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'KRIMM',
              HINT = 'delete or truncate streams through the Kronika store';
END
$$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.kronika_guard_events();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.kronika_guard_events();
CREATE TRIGGER event_tags_immutable BEFORE UPDATE OR DELETE ON {schema}.event_tags
    FOR EACH ROW EXECUTE FUNCTION {schema}.kronika_guard_events();
CREATE TRIGGER event_tags_no_truncate BEFORE TRUNCATE ON {schema}.event_tags
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.kronika_guard_events();

-- The ids of an append request that are already stored (the idempotency lookup), leaving
-- out the rows the calling transaction wrote itself (positions from p_base).
CREATE FUNCTION {schema}.kronika_stored(p_namespace text, p_ids uuid[], p_base bigint)
RETURNS uuid[]
LANGUAGE sql STABLE
AS $$
    SELECT ARRAY(
        SELECT e.id FROM {schema}.events e
        WHERE e.namespace = p_namespace AND e.id = ANY (p_ids)
          AND (e.position >> 16) IS DISTINCT FROM (p_base >> 16)
    )
$$;

-- The first event after p_after that matches an append condition, if any. Ignores the
-- horizon on purpose: the caller holds the condition's exclusive locks.
CREATE FUNCTION {schema}.kronika_condition_hit(
    p_namespace text, p_types text[], p_tags text[], p_after bigint
)
RETURNS TABLE (o_position bigint, o_id uuid, o_type text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF cardinality(p_tags) > 0 THEN
        RETURN QUERY
        SELECT e.position, e.id, e.type
        FROM {schema}.event_tags t
        JOIN {schema}.events e ON e.namespace = t.namespace AND e.position = t.position
        WHERE t.namespace = p_namespace AND t.tag = p_tags[1] AND t.position > p_after
          AND e.tags @> p_tags
          AND (cardinality(p_types) = 0 OR e.type = ANY (p_types))
        ORDER BY t.position
        LIMIT 1;
    ELSE
        RETURN QUERY
        SELECT h.position, h.id, h.type
        FROM unnest(p_types) AS c(type)
        CROSS JOIN LATERAL (
            SELECT e.position, e.id, e.type
            FROM {schema}.events e
            WHERE e.namespace = p_namespace AND e.type = c.type AND e.position > p_after
            ORDER BY e.position
            LIMIT 1
        ) h
        ORDER BY h.position
        LIMIT 1;
    END IF;
END
$$;

-- Whether a stream row in state p_state at p_version meets the expectation p_expected
-- (>= 0 exact version, -1 any, -2 no stream, -3 stream exists). A soft-deleted stream counts
-- as absent; a tombstoned one meets nothing. (An absent row meets only -1 and -2.)
CREATE FUNCTION {schema}.kronika_expected(p_state text, p_version bigint, p_expected bigint)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_state <> 'tombstoned' AND CASE p_expected
        WHEN -1 THEN true
        WHEN -2 THEN NOT (p_state = 'active' AND p_version IS NOT NULL)
        ELSE p_state = 'active' AND p_version IS NOT NULL
             AND (p_expected = -3 OR p_version = p_expected)
    END
$$;

-- Fail because a stream does not meet its expectation: SQLSTATE KRCON, DETAIL = the stream,
-- HINT = 'state:version' of its row ('' for each when it has none).
CREATE FUNCTION {schema}.kronika_refuse(p_namespace text, p_stream text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_version bigint;
    v_state text;
BEGIN
    SELECT s.version, s.state INTO v_version, v_state
    FROM {schema}.streams s
    WHERE s.namespace = p_namespace AND s.stream = p_stream;
    RAISE EXCEPTION 'kronika: stream % is not at the expected version', p_stream
        USING ERRCODE = 'KRCON', DETAIL = p_stream,
              HINT = coalesce(v_state, '') || ':' || coalesce(v_version::text, '');
END
$$;

-- What a part that only checks its stream reports: the version (-1 unless the stream is
-- active with events), or NULL when the stream does not meet the expectation.
CREATE FUNCTION {schema}.kronika_check(p_namespace text, p_stream text, p_expected bigint)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN s.stream IS NULL THEN CASE WHEN p_expected IN (-1, -2) THEN -1 END
        WHEN {schema}.kronika_expected(s.state, s.version, p_expected)
            THEN CASE WHEN s.state = 'active' THEN coalesce(s.version, -1) ELSE -1 END
    END
    FROM (SELECT 1) AS one
    LEFT JOIN {schema}.streams s ON s.namespace = p_namespace AND s.stream = p_stream
$$;

-- Append events to one or more streams ("parts") atomically, in one round trip.
--
--   p_streams, p_expected, p_counts   per part: the stream, its expectation (>= 0 exact
--               version, -1 any, -2 no stream, -3 stream exists) and its number of events
--   p_keys      advisory lock keys in locking order: the streams' keys (sorted), then the
--               type, tag and bulk keys (sorted); no two appends can deadlock on them
--   p_exclusive the keys of p_keys to lock exclusively (the others are shared)
--   p_ids, p_types, p_data, p_metadata, p_tags, p_correlations, p_digests
--               per event, parts in order (p_counts says which belong to which part): its
--               id, type, payload, metadata, tags (an array literal, NULL if none; p_tags
--               is NULL when no event has tags), correlation id and content digest (see
--               kronika.store.integrity)
--   p_condition object with types, tags and after (a position), or NULL
--   p_lookup    look up stored ids first (a retry after a unique violation)
--
-- Returns, per part, the stream's version and last position; or, when any of the event
-- ids is already stored, only those ids in o_stored (the caller resolves the retry).
-- Fails with SQLSTATE KRCON (see kronika_refuse) or KRCND (the condition matched; DETAIL =
-- position, HINT = 'id:type'). Expectations are reported before the condition.
--
-- A written part usually takes one statement: advancing its stream row checks its
-- expectation, and its events are inserted only if that row moved. With no stream the row
-- is inserted instead, first (the stream is most likely new); the other statement follows
-- only when the first wrote nothing and any (a new stream) or no stream (a deleted one,
-- revived) allows it. Only failures read rows to explain. The chain hashes (each event's,
-- and the row's new head) continue from the row's chain head, under the stream's lock: the
-- statement chains one event itself; for more, a SELECT reads the head first (0008).
CREATE FUNCTION {schema}.kronika_append(
    p_namespace text, p_streams text[], p_expected bigint[], p_counts integer[],
    p_keys bigint[], p_exclusive bigint[],
    p_ids uuid[], p_types text[], p_data jsonb[], p_metadata jsonb[],
    p_tags text[], p_correlations text[], p_digests bytea[], p_condition jsonb,
    p_lookup boolean,
    OUT o_versions bigint[], OUT o_positions bigint[], OUT o_stored uuid[]
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_parts integer := cardinality(p_streams);
    v_key bigint;
    v_hit record;
    v_version bigint;
    v_base bigint;
    v_first integer := 1;
    v_last integer;
    v_head bytea;
    v_hashes bytea[];
    v_update boolean;
BEGIN
    IF p_lookup THEN
        o_stored := {schema}.kronika_stored(p_namespace, p_ids, v_base);
        IF cardinality(o_stored) > 0 THEN RETURN; END IF;
    END IF;

    FOREACH v_key IN ARRAY p_keys LOOP
        IF v_key = ANY (p_exclusive) THEN
            PERFORM pg_advisory_xact_lock(v_key);
        ELSE
            PERFORM pg_advisory_xact_lock_shared(v_key);
        END IF;
    END LOOP;

    IF p_condition IS NOT NULL THEN
        SELECT * INTO v_hit FROM {schema}.kronika_condition_hit(
            p_namespace,
            ARRAY(SELECT jsonb_array_elements_text(p_condition -> 'types')),
            ARRAY(SELECT jsonb_array_elements_text(p_condition -> 'tags')),
            (p_condition ->> 'after')::bigint);
        IF FOUND THEN
            o_stored := {schema}.kronika_stored(p_namespace, p_ids, v_base);
            IF cardinality(o_stored) > 0 THEN RETURN; END IF;
            FOR i IN 1 .. v_parts LOOP
                IF {schema}.kronika_check(p_namespace, p_streams[i], p_expected[i]) IS NULL THEN
                    PERFORM {schema}.kronika_refuse(p_namespace, p_streams[i]);
                END IF;
            END LOOP;
            RAISE EXCEPTION 'kronika: the append condition matched the event at position %',
                v_hit.o_position
                USING ERRCODE = 'KRCND', DETAIL = v_hit.o_position::text,
                      HINT = v_hit.o_id::text || ':' || v_hit.o_type;
        END IF;
    END IF;

    IF cardinality(p_ids) > 0 THEN
        -- Taken after every lock wait: from here on this transaction holds back global
        -- readers until it ends.
        v_base := (pg_current_xact_id()::text::bigint << 16)
                  + {schema}.kronika_position_offset();
    END IF;

    FOR i IN 1 .. v_parts LOOP
        IF p_counts[i] = 0 THEN
            o_versions[i] := {schema}.kronika_check(p_namespace, p_streams[i], p_expected[i]);
            o_positions[i] := coalesce((SELECT e.position FROM {schema}.events e
                                        WHERE e.namespace = p_namespace
                                          AND e.stream = p_streams[i]
                                        ORDER BY e.version DESC LIMIT 1), 0);
            IF o_versions[i] IS NOT NULL THEN CONTINUE; END IF;
        ELSE
            v_last := v_first + p_counts[i] - 1;
            -- Advance the stream row, or insert it (no stream: most likely a new one, so
            -- insert first). Twice at most: the other statement follows only when the first
            -- wrote nothing and any (a new stream after all) or no stream (a deleted one,
            -- revived) allows it.
            v_update := p_expected[i] <> -2;
            LOOP
                IF p_counts[i] = 1 THEN  -- one event, chained by the statement writing its row
                    IF v_update THEN
                        WITH s AS (
                            UPDATE {schema}.streams AS s
                            SET version = coalesce(s.version, -1) + 1, state = 'active',
                                hash = sha256(coalesce(s.hash, decode(repeat('00', 32), 'hex'))
                                              || p_digests[v_first])
                            WHERE s.namespace = p_namespace AND s.stream = p_streams[i]
                              AND {schema}.kronika_expected(s.state, s.version, p_expected[i])
                            RETURNING s.version, s.hash
                        ), written AS (
                            INSERT INTO {schema}.events (position, version, id, namespace,
                                                         stream, type, correlation_id, tags,
                                                         data, metadata, hash)
                            SELECT v_base | (v_first - 1), s.version, p_ids[v_first],
                                   p_namespace, p_streams[i], p_types[v_first],
                                   p_correlations[v_first],
                                   coalesce(p_tags[v_first]::text[], ARRAY[]::text[]),
                                   p_data[v_first], p_metadata[v_first], s.hash
                            FROM s
                        )
                        SELECT s.version INTO v_version FROM s;
                    ELSE
                        WITH s AS (
                            INSERT INTO {schema}.streams AS s (namespace, stream, version, hash)
                            VALUES (p_namespace, p_streams[i], 0,
                                    sha256(decode(repeat('00', 32), 'hex') || p_digests[v_first]))
                            ON CONFLICT (namespace, stream) DO NOTHING
                            RETURNING s.version, s.hash
                        ), written AS (
                            INSERT INTO {schema}.events (position, version, id, namespace,
                                                         stream, type, correlation_id, tags,
                                                         data, metadata, hash)
                            SELECT v_base | (v_first - 1), s.version, p_ids[v_first],
                                   p_namespace, p_streams[i], p_types[v_first],
                                   p_correlations[v_first],
                                   coalesce(p_tags[v_first]::text[], ARRAY[]::text[]),
                                   p_data[v_first], p_metadata[v_first], s.hash
                            FROM s
                        )
                        SELECT s.version INTO v_version FROM s;
                    END IF;
                ELSE  -- more: chained first, from the row's head, h = sha256(previous || digest)
                    v_head := NULL;
                    IF v_update THEN
                        SELECT s.hash INTO v_head FROM {schema}.streams s
                        WHERE s.namespace = p_namespace AND s.stream = p_streams[i];
                    END IF;
                    v_head := coalesce(v_head, decode(repeat('00', 32), 'hex'));
                    v_hashes := NULL;  -- with subscripts v_first .. v_last, as the events have
                    FOR k IN v_first .. v_last LOOP
                        v_head := sha256(v_head || p_digests[k]);
                        v_hashes[k] := v_head;
                    END LOOP;
                    IF v_update THEN
                        WITH s AS (
                            UPDATE {schema}.streams AS s
                            SET version = coalesce(s.version, -1) + p_counts[i],
                                state = 'active', hash = v_head
                            WHERE s.namespace = p_namespace AND s.stream = p_streams[i]
                              AND {schema}.kronika_expected(s.state, s.version, p_expected[i])
                            RETURNING s.version
                        ), written AS (  -- one row per event, e its subscript
                            INSERT INTO {schema}.events (position, version, id, namespace,
                                                         stream, type, correlation_id, tags,
                                                         data, metadata, hash)
                            SELECT v_base | (e - 1), s.version - v_last + e, p_ids[e],
                                   p_namespace, p_streams[i], p_types[e], p_correlations[e],
                                   coalesce(p_tags[e]::text[], ARRAY[]::text[]), p_data[e],
                                   p_metadata[e], v_hashes[e]
                            FROM (SELECT s.version, generate_subscripts(v_hashes, 1) AS e
                                  FROM s) s
                        )
                        SELECT s.version INTO v_version FROM s;
                    ELSE
                        WITH s AS (
                            INSERT INTO {schema}.streams AS s (namespace, stream, version, hash)
                            VALUES (p_namespace, p_streams[i], p_counts[i] - 1, v_head)
                            ON CONFLICT (namespace, stream) DO NOTHING
                            RETURNING s.version
                        ), written AS (  -- one row per event, e its subscript
                            INSERT INTO {schema}.events (position, version, id, namespace,
                                                         stream, type, correlation_id, tags,
                                                         data, metadata, hash)
                            SELECT v_base | (e - 1), s.version - v_last + e, p_ids[e],
                                   p_namespace, p_streams[i], p_types[e], p_correlations[e],
                                   coalesce(p_tags[e]::text[], ARRAY[]::text[]), p_data[e],
                                   p_metadata[e], v_hashes[e]
                            FROM (SELECT s.version, generate_subscripts(v_hashes, 1) AS e
                                  FROM s) s
                        )
                        SELECT s.version INTO v_version FROM s;
                    END IF;
                END IF;
                EXIT WHEN v_version IS NOT NULL
                       OR p_expected[i] <> CASE WHEN v_update THEN -1 ELSE -2 END;
                v_update := NOT v_update;
            END LOOP;
            IF v_version IS NOT NULL THEN
                o_versions[i] := v_version;
                o_positions[i] := v_base | (v_last - 1);
                v_first := v_last + 1;
                CONTINUE;
            END IF;
        END IF;
        o_stored := {schema}.kronika_stored(p_namespace, p_ids, v_base);
        IF cardinality(o_stored) > 0 THEN RETURN; END IF;
        PERFORM {schema}.kronika_refuse(p_namespace, p_streams[i]);
    END LOOP;

    IF p_tags IS NOT NULL THEN
        INSERT INTO {schema}.event_tags (namespace, tag, position)
        SELECT DISTINCT p_namespace, t.tag, v_base | (u.k - 1)
        FROM unnest(p_tags) WITH ORDINALITY AS u(tags, k)
        CROSS JOIN LATERAL unnest(u.tags::text[]) AS t(tag);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Snapshots and the processing runtime's state (migration 0002).
--
-- Operational tables: unlike events, the runtime role updates and deletes their rows (see
-- the grants in docs/guides/postgresql.md). Every table is keyed by namespace first. Lease
-- times come from the database clock only (now(), clock_timestamp()), never a client's.

-- The latest snapshot of a stream. Deleting the stream (soft or hard) deletes it.
CREATE TABLE {schema}.snapshots (
    namespace text COLLATE "C" NOT NULL,
    stream text COLLATE "C" NOT NULL,
    version bigint NOT NULL,                          -- last event folded into state
    schema_version integer NOT NULL,                  -- the shape of state
    state jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, stream)
);

-- One row per processor (projection, reactor) that has run.
CREATE TABLE {schema}.processors (
    namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    partitions integer NOT NULL CHECK (partitions >= 1),  -- fixed once it has run
    paused boolean NOT NULL DEFAULT false,
    generation integer NOT NULL DEFAULT 1,            -- the live read-model generation
    PRIMARY KEY (namespace, name)
);

-- One row per partition of a processor: its checkpoint and its lease together, so that a
-- checkpoint is fenced by the lease in one UPDATE. position is NULL until the partition
-- handled an event; owner and lease_expires_at are NULL while nobody holds the lease.
-- Both change often: the fill factor leaves room for HOT updates (no index covers them).
CREATE TABLE {schema}.partitions (
    namespace text COLLATE "C" NOT NULL,
    processor text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    position bigint,                                  -- global position of the last event handled
    owner text COLLATE "C",                           -- the worker holding the lease
    lease_expires_at timestamptz,                     -- database clock
    PRIMARY KEY (namespace, processor, partition),
    CHECK ((owner IS NULL) = (lease_expires_at IS NULL))
) WITH (fillfactor = 50);

-- Keys parked (retrying) or quarantined by a processor, one row per key.
CREATE TABLE {schema}.failures (
    namespace text COLLATE "C" NOT NULL,
    processor text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    partition integer NOT NULL,
    position bigint NOT NULL,                         -- the failing event: the key resumes here
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    stack text NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at timestamptz NOT NULL,
    next_retry_at timestamptz,                        -- NULL once quarantined
    state text NOT NULL CHECK (state IN ('retrying', 'quarantined')),
    requested text CHECK (requested IN ('retry', 'skip')),  -- an operator's pending request
    PRIMARY KEY (namespace, processor, key)
);

-- Read-model documents, written in processing transactions.
CREATE TABLE {schema}.documents (
    namespace text COLLATE "C" NOT NULL,
    collection text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (namespace, collection, key)
);

-- Live workers: each heartbeat pushes expires_at forward (database clock).
CREATE TABLE {schema}.workers (
    namespace text COLLATE "C" NOT NULL,
    owner text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, owner)
) WITH (fillfactor = 50);

-- API keys for the server (migration 0003). Only a hash of each secret is stored; times
-- are given by the caller (the server's clock).
CREATE TABLE {schema}.api_keys (
    namespace text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,                     -- public lookup handle: kr_<id>_<secret>
    name text NOT NULL,
    secret_hash bytea NOT NULL,                       -- SHA-256 of the secret
    roles text[] NOT NULL,
    categories text[],                                -- NULL: every category
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,                         -- updated at most once a minute
    PRIMARY KEY (namespace, id)
);

-- Jobs: replays of projections (migration 0004). At most one under way per processor.
CREATE TABLE {schema}.jobs (
    namespace text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    kind text NOT NULL,                               -- replay
    processor text COLLATE "C" NOT NULL,
    generation integer NOT NULL,                      -- the generation it builds
    state text NOT NULL CHECK (state IN ('running', 'stopped', 'completed')),
    step text NOT NULL,
    target bigint NOT NULL,                           -- head position when it started
    error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, id)
);

CREATE UNIQUE INDEX jobs_active ON {schema}.jobs (namespace, processor)
WHERE state IN ('running', 'stopped');

-- Hash chains (migration 0005, see kronika.store.integrity): events.hash, streams.hash and
-- streams.anchor above, kronika_position_offset, and these tables.

-- Recorded values of the global chain G = sha256(G || event hash), over a namespace's
-- chained events in position order: the position of the last event covered, how many
-- chained events it covers, and G. kronika verify records them; the purge path deletes
-- those at or after the lowest position it removes.
CREATE TABLE {schema}.chain_checkpoints (
    namespace text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    events bigint NOT NULL,
    hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, position)
);

-- How many purges (truncations, deletions) each namespace has had. The purge path bumps it
-- before it deletes checkpoints; a verifier records a checkpoint only if it has not moved
-- since it started reading (both lock this row, so neither misses the other).
CREATE TABLE {schema}.chain_purges (
    namespace text COLLATE "C" NOT NULL,
    purges bigint NOT NULL,
    purged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace)
);

-- The backups catalog (migration 0006): one row per finished kronika backup of this schema.
-- An archive holds every namespace, so the table describes the whole schema and has no
-- namespace column. verified_at is NULL for an archive never read back.
CREATE TABLE {schema}.backups (
    id text COLLATE "C" PRIMARY KEY,
    path text NOT NULL,                               -- the archive, when it was written
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    events bigint NOT NULL,
    last_position bigint NOT NULL,                    -- the highest event position in it
    bytes bigint NOT NULL,                            -- the archive's size
    sha256 text NOT NULL,                             -- of the archive file
    engine text NOT NULL,
    verified_at timestamptz
);

CREATE INDEX backups_finished_idx ON {schema}.backups (finished_at);

-- Inline projections (migration 0007, see kronika.store.inline): one row per projection a
-- store of the namespace has registered. types holds the event types it handled when last
-- registered (NULL: every type); needs_rebuild is true while its read model misses events
-- stored before it handled them.
CREATE TABLE {schema}.inline_projections (
    namespace text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    types text[],
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_position bigint NOT NULL,              -- the head when first registered
    needs_rebuild boolean NOT NULL,
    rebuilt_at timestamptz,
    rebuilt_position bigint,                          -- the head when last rebuilt
    PRIMARY KEY (namespace, name)
);
