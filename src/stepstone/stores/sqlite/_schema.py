"""The SQLite store's schema, its forward migrations and the row <-> Run mapping. Stdlib only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import Progress, Run
from ..._util import dumps, loads
from ._streams import SCHEMA_STREAMS

__all__ = ["MIGRATIONS", "RUN_COLUMNS", "SCHEMA_VERSION", "progress_json", "row_to_run"]

_SCHEMA_V1 = """
CREATE TABLE runs (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
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
    epoch INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    last_seq INTEGER NOT NULL DEFAULT -1,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX runs_idempotency ON runs(job_name, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_active ON runs(status, pos) WHERE status IN ('pending', 'running');
CREATE INDEX runs_concurrency ON runs(concurrency_key, pos)
    WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running');
CREATE INDEX runs_job ON runs(job_name, pos);
CREATE INDEX runs_status ON runs(status, pos);
CREATE INDEX runs_expires ON runs(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX runs_version ON runs(version);
CREATE TABLE run_labels (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE INDEX run_labels_kv ON run_labels(key, value, run_id);
CREATE TABLE steps (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    started_at REAL NOT NULL,
    completed_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE run_tombstones (version INTEGER PRIMARY KEY, run_id TEXT NOT NULL, deleted_at REAL NOT NULL);
INSERT INTO stepstone_meta (key, value) VALUES ('runs_version', 0);
"""

#: Forward-only migrations; index i takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1, SCHEMA_STREAMS)
SCHEMA_VERSION = len(MIGRATIONS)

RUN_COLUMNS = (
    "id, job_name, job_version, status, input, output, error, progress, labels, idempotency_key, "
    "concurrency_key, attempt, owner, epoch, lease_expires_at, created_at, updated_at, started_at, "
    "finished_at, expires_at, last_seq, version"
)


def row_to_run(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        job_name=row[1],
        job_version=row[2],
        status=row[3],
        input=loads(row[4]),
        output=loads(row[5]),
        error=row[6],
        progress=Progress.from_json(loads(row[7])),
        labels=loads(row[8]),
        idempotency_key=row[9],
        concurrency_key=row[10],
        attempt=row[11],
        owner=row[12],
        epoch=row[13],
        lease_expires_at=row[14],
        created_at=row[15],
        updated_at=row[16],
        started_at=row[17],
        finished_at=row[18],
        expires_at=row[19],
        last_seq=row[20],
        version=row[21],
    )


def progress_json(progress: Progress | None) -> str | None:
    return None if progress is None else dumps(progress.to_json())
