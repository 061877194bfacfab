-- Migration 0004: jobs (replays of projections), tracked in the database.
--
-- A replay builds a new generation of a projection's read model beside the live one; its
-- job records progress and state so that any worker can carry it on, and an operator can
-- stop, resume or delete it. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE jobs (
    namespace  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    processor  TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('running', 'stopped', 'completed')),
    step       TEXT    NOT NULL,
    target     INTEGER NOT NULL,
    error      TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) STRICT;

-- At most one job under way per processor.
CREATE UNIQUE INDEX jobs_active ON jobs (namespace, processor)
WHERE state IN ('running', 'stopped');
