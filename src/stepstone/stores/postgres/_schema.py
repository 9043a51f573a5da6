"""The PostgreSQL store's schema and its forward migrations, run under an advisory lock.

The layout mirrors the SQLite store's (same columns, JSON kept as text, times as epoch seconds), so
both share one row mapping (``stores/_rows.py``). Differences are PostgreSQL's: identity columns,
``BOOLEAN``, ``BYTEA`` for stream records keyed by ``(stream_id, seq)``, and the run-change feed's
``version``, which is derived from the writing transaction's id (see ``_store.py``), so no counter
row serialises writers.

The schema version lives in ``stepstone_meta``; :func:`migrate` takes a transaction-level advisory
lock first, so servers starting at once migrate once: the others wait for the lock, then find the
schema current.
"""

from __future__ import annotations

import hashlib

from ..._errors import SchemaError
from ._conn import Conn, quote_ident

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "lock_key", "migrate"]

_V1 = """
CREATE TABLE runs (
    pos BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_version TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    progress TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    idempotency_key TEXT,
    concurrency_key TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION,
    last_seq BIGINT NOT NULL DEFAULT -1,
    version BIGINT NOT NULL DEFAULT 0,
    parent_id TEXT,
    parent_step TEXT,
    wait TEXT,
    wake_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    awaited_by TEXT,
    awaiting INTEGER NOT NULL DEFAULT 0,
    last_write TEXT
);
CREATE UNIQUE INDEX runs_pos ON runs(pos);
CREATE UNIQUE INDEX runs_idempotency ON runs(job_name, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX runs_child ON runs(parent_id, parent_step) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_active ON runs(pos) WHERE status IN ('pending', 'running');
CREATE INDEX runs_wake ON runs(wake_at) WHERE status = 'suspended';
CREATE INDEX runs_concurrency ON runs(concurrency_key, pos)
    WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running', 'suspended');
CREATE INDEX runs_job ON runs(job_name, pos);
CREATE INDEX runs_status ON runs(status, pos);
CREATE INDEX runs_parent ON runs(parent_id, pos) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_awaited ON runs(awaited_by) WHERE awaited_by IS NOT NULL;
CREATE INDEX runs_owner ON runs(owner) WHERE status = 'running';
CREATE INDEX runs_expires ON runs(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX runs_version ON runs(version);
CREATE TABLE run_labels (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key)
);
CREATE INDEX run_labels_kv ON run_labels(key, value, run_id);
CREATE TABLE steps (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    completed_at DOUBLE PRECISION NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    run_attempt INTEGER NOT NULL DEFAULT 1,
    retry_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE run_tombstones (
    version BIGINT PRIMARY KEY, run_id TEXT NOT NULL, deleted_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX run_tombstones_deleted ON run_tombstones(deleted_at);
CREATE TABLE run_inbox (
    run_id TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX run_inbox_waiting ON run_inbox(run_id, name, seq) WHERE delivered_at IS NULL;
CREATE TABLE streams (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    tail_seq BIGINT NOT NULL,
    tail_pos BIGINT NOT NULL,
    closed BOOLEAN NOT NULL DEFAULT false,
    ttl BIGINT,
    expires_at TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    accessed_at DOUBLE PRECISION NOT NULL,
    fork_of BIGINT,
    fork_from TEXT,
    fork_seq BIGINT,
    fork_pos BIGINT,
    fork_sub_offset BIGINT NOT NULL DEFAULT 0,
    refcount INTEGER NOT NULL DEFAULT 0,
    deleted BOOLEAN NOT NULL DEFAULT false,
    closed_by TEXT,
    last_stream_seq TEXT,
    expires_ts DOUBLE PRECISION
);
CREATE INDEX streams_expiring ON streams(id) WHERE ttl IS NOT NULL OR expires_ts IS NOT NULL;
CREATE TABLE stream_records (
    stream_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (stream_id, seq)
);
CREATE TABLE stream_producers (
    stream_id BIGINT NOT NULL,
    producer_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
)
"""

#: Forward-only migrations; index i takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (a schema, a purpose, an owner)."""
    digest = hashlib.blake2b("\x00".join(("stepstone", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(conn: Conn, schema: str) -> int:
    """Create or migrate ``schema`` forward in one transaction, under an advisory lock; returns the
    version found before. ``conn`` is an autocommit ``psycopg.AsyncConnection``. Raises
    ``SchemaError`` for a schema newer than this stepstone."""
    q = quote_ident(schema)
    async with conn.transaction():
        # Taken before anything else: a second server blocks here until the first has committed,
        # then sees the schema current and changes nothing.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {q}.stepstone_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
        )
        cur = await conn.execute(f"SELECT value FROM {q}.stepstone_meta WHERE key = 'schema_version'")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaError(
                f"schema {schema!r} has stepstone schema version {current}, newer than this stepstone knows "
                f"({SCHEMA_VERSION}); upgrade stepstone to open it"
            )
        if current < SCHEMA_VERSION:
            await conn.execute(f"SET LOCAL search_path TO {q}")
            for script in MIGRATIONS[current:]:
                for statement in script.split(";"):
                    if statement.strip():
                        await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {q}.stepstone_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (SCHEMA_VERSION,),
            )
    return current
