-- Kronika PostgreSQL schema, version 4: jobs (replays of projections).
--
-- A replay builds a new generation of a projection's read model beside the live one; its
-- job records progress and state so that any worker can carry it on, and an operator can
-- stop, resume or delete it.
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

-- At most one job under way per processor.
CREATE UNIQUE INDEX jobs_active ON {schema}.jobs (namespace, processor)
WHERE state IN ('running', 'stopped');
