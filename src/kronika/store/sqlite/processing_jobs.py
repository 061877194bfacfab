"""Jobs (replays) and the pruning of a processor's state, as functions of a connection.

Writes run on the store's writer thread (each call is one transaction of the writer's
group), reads on a reader thread, like :mod:`.processing_state`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from kronika.errors import NotFound
from kronika.store.processing import Job, JobState, job_from_row
from kronika.store.sqlite.processing_rows import micros, moment, now_micros
from kronika.store.sqlite.sql import QUERIES

__all__ = [
    "activate_generation",
    "clear_documents",
    "create_job",
    "delete_job",
    "drop_processor",
    "jobs",
    "update_job",
]


def clear_documents(conn: sqlite3.Connection, namespace: str, collection: str) -> None:
    """Delete every document of a collection."""
    conn.execute(QUERIES["clear_documents"], {"namespace": namespace, "collection": collection})


def drop_processor(conn: sqlite3.Connection, namespace: str, name: str, keep_record: bool) -> None:
    """Forget a processor's checkpoints, leases and failures (and record, unless kept)."""
    params = {"namespace": namespace, "name": name}
    conn.execute(QUERIES["drop_partitions"], params)
    conn.execute(QUERIES["drop_failures"], params)
    if not keep_record:
        conn.execute(QUERIES["drop_processor"], params)


def create_job(conn: sqlite3.Connection, namespace: str, job: Job) -> bool:
    """Insert a job; False when its processor already has one under way."""
    params: dict[str, Any] = {
        "namespace": namespace,
        "id": job.id,
        "kind": job.kind,
        "processor": job.processor,
        "generation": job.generation,
        "state": job.state.value,
        "step": job.step,
        "target": job.target,
        "error": job.error,
        "created_at": micros(job.created_at),
        "updated_at": micros(job.updated_at),
    }
    return conn.execute(QUERIES["insert_job"], params).rowcount > 0


def jobs(conn: sqlite3.Connection, namespace: str, processor: str | None) -> list[Job]:
    """Jobs of one processor (or all), oldest first."""
    rows = conn.execute(QUERIES["select_jobs"], {"namespace": namespace, "processor": processor})
    return [job_from_row(row, moment) for row in rows]


def update_job(
    conn: sqlite3.Connection,
    namespace: str,
    job_id: str,
    *,
    state: JobState,
    expected: Sequence[JobState],
    error: str | None,
) -> bool:
    """Move a job to ``state`` from one of the ``expected`` states; False if it was not."""
    params = {
        "namespace": namespace,
        "id": job_id,
        "state": state.value,
        "expected": orjson.dumps([s.value for s in expected]).decode(),
        "error": error,
        "now": now_micros(),
    }
    return conn.execute(QUERIES["update_job"], params).rowcount > 0


def delete_job(conn: sqlite3.Connection, namespace: str, job_id: str) -> bool:
    """Remove a job's record; False if there was none."""
    return conn.execute(QUERIES["delete_job"], {"namespace": namespace, "id": job_id}).rowcount > 0


def activate_generation(
    conn: sqlite3.Connection, namespace: str, name: str, generation: int, completing: str | None
) -> bool:
    """Make ``generation`` live, completing the job ``completing`` in the same transaction."""
    if completing is not None and not update_job(
        conn,
        namespace,
        completing,
        state=JobState.COMPLETED,
        expected=[JobState.RUNNING],
        error=None,
    ):
        return False
    params = {"namespace": namespace, "name": name, "generation": generation}
    if conn.execute(QUERIES["set_generation"], params).rowcount == 0:
        raise NotFound(f"processor {name!r} has never run")
    return True
