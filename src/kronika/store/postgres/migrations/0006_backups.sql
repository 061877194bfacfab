-- Migration 0006: the backups catalog (kronika backup).
--
-- One row per finished backup of this schema, written by kronika backup once its archive is
-- complete, read back and renamed into place. An archive holds every namespace, so this
-- table describes the whole schema and has no namespace column. verified_at is NULL for an
-- archive never read back.
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
