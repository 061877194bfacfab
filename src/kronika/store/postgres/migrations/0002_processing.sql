-- Kronika PostgreSQL schema, version 2: snapshots, and the processing runtime's state.
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
