"""The SQLite store's schema and its forward migrations; the row <-> Run mapping is shared with the
PostgreSQL store (``stores/_rows.py``) and re-exported here. Stdlib only."""

from __future__ import annotations

from .._rows import RUN_COLUMNS, STEP_COLUMNS, progress_json, row_to_run, row_to_step, step_params
from ._streams import SCHEMA_STREAMS

__all__ = [
    "INSERT_STEP",
    "MIGRATIONS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "STEP_COLUMNS",
    "progress_json",
    "row_to_run",
    "row_to_step",
    "step_params",
]

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

#: Suspension (v3): what a suspended run waits for and when it wakes, child runs (one per parent
#: step; ``awaited_by``/``awaiting`` count the children a suspended parent still waits for), cancel
#: requests, step attempts, and each run's inbox of events sent to it.
_SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN parent_id TEXT;
ALTER TABLE runs ADD COLUMN parent_step TEXT;
ALTER TABLE runs ADD COLUMN wait TEXT;
ALTER TABLE runs ADD COLUMN wake_at REAL;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN awaited_by TEXT;
ALTER TABLE runs ADD COLUMN awaiting INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX runs_child ON runs(parent_id, parent_step) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_parent ON runs(parent_id, pos) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_awaited ON runs(awaited_by) WHERE awaited_by IS NOT NULL;
CREATE INDEX runs_wake ON runs(wake_at) WHERE status = 'suspended';
DROP INDEX runs_concurrency;
CREATE INDEX runs_concurrency ON runs(concurrency_key, pos)
    WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running', 'suspended');
ALTER TABLE steps ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE steps ADD COLUMN run_attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE steps ADD COLUMN retry_at REAL;
CREATE TABLE run_inbox (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    sent_at REAL NOT NULL,
    delivered_at REAL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX run_inbox_waiting ON run_inbox(run_id, name, seq) WHERE delivered_at IS NULL
"""

#: Forward-only migrations; index i takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1, SCHEMA_STREAMS, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)

INSERT_STEP = f"INSERT OR REPLACE INTO steps (run_id, {STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

