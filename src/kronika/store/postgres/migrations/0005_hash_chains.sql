-- Kronika PostgreSQL schema, version 5: hash chains over the event log (kronika verify).
--
-- Every event appended from now on records a SHA-256 chained to the previous event of its
-- stream (see kronika.store.integrity); events stored before keep NULL ("unchained").
-- kronika_append takes each event's content digest (computed by the client) and chains
-- them under the stream's lock. A stream row keeps its chain's head (hash) and the chain
-- hash just before its first stored event (anchor, set by the purge path).
--
-- Positions get an offset (kronika_position_offset, 0 here) that a restore can raise.
ALTER TABLE {schema}.events ADD COLUMN hash bytea;
ALTER TABLE {schema}.streams ADD COLUMN hash bytea;
ALTER TABLE {schema}.streams ADD COLUMN anchor bytea;

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

-- The global position offset: a multiple of 65,536 added to every position (and to the
-- horizon). 0 unless a restore of positions from another cluster raised it (kronika
-- restore re-creates this function), so that later appends sort after restored events.
CREATE FUNCTION {schema}.kronika_position_offset() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 0::bigint $$;

CREATE OR REPLACE FUNCTION {schema}.kronika_horizon() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
           + {schema}.kronika_position_offset()
$$;

DROP FUNCTION {schema}.kronika_append(
    text, text[], bigint[], integer[], bigint[], bigint[], uuid[], text[], jsonb[], jsonb[],
    text[], text[], jsonb, boolean
);

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
-- A written part takes one statement: advancing its stream row checks its expectation, and
-- its events are inserted only if that row moved. Only failures read rows to explain.
-- Before it, the part's chain hashes are computed from its stream row's chain head (read
-- under the stream's lock): each event's hash, and the row's new head.
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
            v_version := NULL;
            SELECT s.hash INTO v_head FROM {schema}.streams s
            WHERE s.namespace = p_namespace AND s.stream = p_streams[i];
            v_head := coalesce(v_head, decode(repeat('00', 32), 'hex'));
            FOR k IN 1 .. p_counts[i] LOOP  -- the chain: h = sha256(previous || digest)
                v_head := sha256(v_head || p_digests[v_first + k - 1]);
                v_hashes[k] := v_head;
            END LOOP;
            IF p_expected[i] = -2 THEN  -- no stream: most likely a new one
                WITH s AS (
                    INSERT INTO {schema}.streams AS s (namespace, stream, version, hash)
                    VALUES (p_namespace, p_streams[i], p_counts[i] - 1, v_hashes[p_counts[i]])
                    ON CONFLICT (namespace, stream) DO NOTHING
                    RETURNING s.version
                ), written AS (
                    INSERT INTO {schema}.events (position, version, id, namespace, stream, type,
                                                 correlation_id, tags, data, metadata, hash)
                    SELECT v_base | (v_first + u.k - 2), s.version - p_counts[i] + u.k, u.id,
                           p_namespace, p_streams[i], u.type, u.correlation,
                           coalesce(u.tags::text[], ARRAY[]::text[]), u.data, u.metadata,
                           v_hashes[u.k]
                    FROM s CROSS JOIN unnest(
                        p_ids[v_first:v_last], p_types[v_first:v_last],
                        p_data[v_first:v_last], p_metadata[v_first:v_last],
                        p_tags[v_first:v_last], p_correlations[v_first:v_last]
                    ) WITH ORDINALITY AS u(id, type, data, metadata, tags, correlation, k)
                )
                SELECT s.version INTO v_version FROM s;
            END IF;
            IF v_version IS NULL THEN  -- an existing stream
                WITH s AS (
                    UPDATE {schema}.streams AS s
                    SET version = coalesce(s.version, -1) + p_counts[i], state = 'active',
                        hash = v_hashes[p_counts[i]]
                    WHERE s.namespace = p_namespace AND s.stream = p_streams[i]
                      AND {schema}.kronika_expected(s.state, s.version, p_expected[i])
                    RETURNING s.version
                ), written AS (
                    INSERT INTO {schema}.events (position, version, id, namespace, stream, type,
                                                 correlation_id, tags, data, metadata, hash)
                    SELECT v_base | (v_first + u.k - 2), s.version - p_counts[i] + u.k, u.id,
                           p_namespace, p_streams[i], u.type, u.correlation,
                           coalesce(u.tags::text[], ARRAY[]::text[]), u.data, u.metadata,
                           v_hashes[u.k]
                    FROM s CROSS JOIN unnest(
                        p_ids[v_first:v_last], p_types[v_first:v_last],
                        p_data[v_first:v_last], p_metadata[v_first:v_last],
                        p_tags[v_first:v_last], p_correlations[v_first:v_last]
                    ) WITH ORDINALITY AS u(id, type, data, metadata, tags, correlation, k)
                )
                SELECT s.version INTO v_version FROM s;
            END IF;
            IF v_version IS NULL AND p_expected[i] = -1 THEN  -- any: perhaps a new one
                WITH s AS (
                    INSERT INTO {schema}.streams AS s (namespace, stream, version, hash)
                    VALUES (p_namespace, p_streams[i], p_counts[i] - 1, v_hashes[p_counts[i]])
                    ON CONFLICT (namespace, stream) DO NOTHING
                    RETURNING s.version
                ), written AS (
                    INSERT INTO {schema}.events (position, version, id, namespace, stream, type,
                                                 correlation_id, tags, data, metadata, hash)
                    SELECT v_base | (v_first + u.k - 2), s.version - p_counts[i] + u.k, u.id,
                           p_namespace, p_streams[i], u.type, u.correlation,
                           coalesce(u.tags::text[], ARRAY[]::text[]), u.data, u.metadata,
                           v_hashes[u.k]
                    FROM s CROSS JOIN unnest(
                        p_ids[v_first:v_last], p_types[v_first:v_last],
                        p_data[v_first:v_last], p_metadata[v_first:v_last],
                        p_tags[v_first:v_last], p_correlations[v_first:v_last]
                    ) WITH ORDINALITY AS u(id, type, data, metadata, tags, correlation, k)
                )
                SELECT s.version INTO v_version FROM s;
            END IF;
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
