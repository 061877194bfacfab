-- Migration 0006: the backups catalog (kronika backup).
--
-- One row per finished backup of this database, written by kronika backup once its archive
-- is complete, read back and renamed into place. An archive holds every namespace, so this
-- table describes the whole database and has no namespace column. Times are microseconds
-- since the Unix epoch (UTC); verified_at is NULL for an archive never read back.
CREATE TABLE backups (
    id            TEXT    NOT NULL PRIMARY KEY,
    path          TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    last_position INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    engine        TEXT    NOT NULL,
    verified_at   INTEGER
) STRICT;

CREATE INDEX backups_finished ON backups (finished_at);
