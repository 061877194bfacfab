-- Migration 0005: hash chains over the event log (kronika verify).
--
-- Every event appended from now on records a SHA-256 chained to the previous event of its
-- stream (see kronika.store.integrity); events stored before stay NULL ("unchained"). A
-- stream row keeps its chain's head (hash) and the chain hash just before its first stored
-- event (anchor), which truncation and deletion set before they remove events. Times are
-- microseconds since the Unix epoch (UTC).
ALTER TABLE events ADD COLUMN hash BLOB;

ALTER TABLE streams ADD COLUMN hash BLOB;

ALTER TABLE streams ADD COLUMN anchor BLOB;

-- Recorded values of the global chain (G = sha256(G + event hash), in position order over
-- the namespace's chained events): position of the last event covered, how many chained
-- events it covers, G. kronika verify records them; purges delete those at or after the
-- lowest position they remove.
CREATE TABLE chain_checkpoints (
    namespace  TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    hash       BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, position)
) STRICT, WITHOUT ROWID;

-- How many purges (truncations, deletions) each namespace has had: a verifier records a
-- checkpoint only if none happened while it read the events the checkpoint covers.
CREATE TABLE chain_purges (
    namespace TEXT    NOT NULL,
    purges    INTEGER NOT NULL,
    purged_at INTEGER NOT NULL,
    PRIMARY KEY (namespace)
) STRICT, WITHOUT ROWID;
