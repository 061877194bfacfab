"""The gateway to ``queries.sql``: named queries with the schema composed in, rendered once.

Identifiers are composed only with :class:`psycopg.sql.Identifier`; values are always bound
by the driver. Each query is rendered to bytes once per schema, so executing it costs no
composition and psycopg can keep it prepared on every connection.
"""

from __future__ import annotations

import dataclasses
import functools

from psycopg import sql

from kronika.store.sqlfiles import load_queries

__all__ = ["Queries", "queries_for", "render"]


def render(text: str, schema: str, channel: str = "") -> bytes:
    """``text`` with ``{schema}`` and ``{channel}`` replaced by quoted identifiers."""
    # ``text`` comes from the packaged .sql files, never from user input.
    composed = sql.SQL(text).format(
        schema=sql.Identifier(schema), channel=sql.Identifier(channel or "kronika")
    )
    return composed.as_bytes(None)


@dataclasses.dataclass(frozen=True, slots=True)
class Queries:
    """Every named query of ``queries.sql``, rendered for one schema (see that file)."""

    migrations_table_exists: bytes
    create_migrations_table: bytes
    applied_migrations: bytes
    record_migration: bytes
    lock_migrations: bytes
    unlock_migrations: bytes
    configure_session: bytes
    set_statement_timeout: bytes
    relax_commit: bytes
    listen: bytes
    notify: bytes
    append: bytes
    events_by_ids: bytes
    lock_stream: bytes
    stream_row: bytes
    stream_tail: bytes
    enable_purge: bytes
    count_purge: bytes
    purge_events: bytes
    insert_tombstone: bytes
    mark_removed: bytes
    set_stream_metadata: bytes
    stream_info: bytes
    list_streams: bytes
    read_stream_forward: bytes
    read_stream_backward: bytes
    read_all: bytes
    read_all_type: bytes
    read_all_types: bytes
    read_all_category: bytes
    read_all_categories: bytes
    read_all_tags: bytes
    read_correlated: bytes
    head_position: bytes
    horizon: bytes
    pending_above_horizon: bytes
    save_snapshot: bytes
    read_snapshot: bytes
    delete_snapshot: bytes
    limited_streams: bytes
    count_snapshots: bytes
    delete_snapshots: bytes
    begin: bytes
    commit: bytes
    rollback: bytes
    save_checkpoint: bytes
    save_fenced_checkpoint: bytes
    save_failure: bytes
    clear_request: bytes
    delete_failure: bytes
    get_document: bytes
    put_document: bytes
    delete_document: bytes
    clear_documents: bytes
    drop_processor: bytes
    insert_job: bytes
    jobs: bytes
    update_job: bytes
    delete_job: bytes
    activate_generation: bytes
    insert_processor: bytes
    processors: bytes
    set_paused: bytes
    failures: bytes
    request: bytes
    heartbeat: bytes
    acquire_leases: bytes
    release_leases: bytes
    leases: bytes
    insert_api_key: bytes
    select_api_keys: bytes
    revoke_api_key: bytes
    touch_api_key: bytes
    chain_scan_limit: bytes
    chain_scan: bytes
    chain_priors: bytes
    chain_tails: bytes
    chain_checkpoints: bytes
    last_chain_checkpoint: bytes
    chain_purge_count: bytes
    record_chain_checkpoint: bytes


@functools.cache
def queries_for(schema: str, channel: str = "") -> Queries:
    """The queries rendered for ``schema`` (and the notification ``channel``)."""
    texts = load_queries(__package__ or "kronika.store.postgres", "queries.sql")
    expected = {f.name for f in dataclasses.fields(Queries)}
    if set(texts) != expected:
        raise RuntimeError(f"queries.sql and Queries disagree: {sorted(set(texts) ^ expected)}")
    return Queries(**{name: render(text, schema, channel) for name, text in texts.items()})
