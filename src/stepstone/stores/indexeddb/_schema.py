"""The IndexedDB layout of :class:`~stepstone.stores.indexeddb.IndexedDBStore`: object stores, indexes,
forward-only migrations, and the conversions between stored records and stepstone's models.

Records are plain JSON objects. User payloads (input, output, step results, event data, progress,
labels) are kept as JSON *strings* inside them, so every value round-trips exactly as it does in
SQLite (a JS number would round integers past 2**53). Index fields that must not be indexed for a
record are ``null``: IndexedDB leaves a record out of an index whose key is not a valid key, which
makes ``active``, ``idem`` and ``expires_at`` sparse indexes.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..._models import ACTIVE_STATUSES, Event, Progress, Run, StepRecord
from ..._util import dumps, loads
from ...browser._idb import key_range
from ...browser._values import js_value
from .._contract import NewEvent

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STORES",
    "event_record",
    "record_event",
    "record_run",
    "record_step",
    "run_range",
    "run_record",
    "step_record",
]

#: Every object store a stepstone database has.
STORES = ("runs", "steps", "events", "tombstones", "meta")

# name -> (keyPath, unique, multiEntry)
_RUN_INDEXES: dict[str, tuple[Any, bool, bool]] = {
    "pos": ("pos", True, False),  # creation order: list_runs newest first
    "active": ("active", False, False),  # pos of pending/running runs only: claim_next scans this
    "idem": ("idem", True, False),  # [job_name, idempotency_key] when a key was given
    "job": (["job_name", "pos"], False, False),
    "status": (["status", "pos"], False, False),
    "job_status": (["job_name", "status", "pos"], False, False),
    "labels": ("label_index", False, True),  # "key\u0000value" per label
    "version": ("version", True, False),  # the run-change feed
    "expires": ("expires_at", False, False),  # retention sweep
}


def _schema_v1(db: Any, tx: Any) -> None:
    """Idempotent: creates whatever of version 1 is missing (a half-created database heals)."""
    names = db.objectStoreNames
    if names.contains("runs"):
        runs = tx.objectStore("runs")
    else:
        runs = db.createObjectStore("runs", js_value({"keyPath": "id"}))
    for index, (key_path, unique, multi) in _RUN_INDEXES.items():
        if not runs.indexNames.contains(index):
            runs.createIndex(index, js_value(key_path), js_value({"unique": unique, "multiEntry": multi}))
    if not names.contains("steps"):
        db.createObjectStore("steps", js_value({"keyPath": ["run_id", "name"]}))
    if not names.contains("events"):
        db.createObjectStore("events", js_value({"keyPath": ["run_id", "seq"]}))
    if not names.contains("tombstones"):
        tombstones = db.createObjectStore("tombstones", js_value({"keyPath": "version"}))
        tombstones.createIndex("deleted_at", "deleted_at", js_value({"unique": False}))
    if not names.contains("meta"):
        db.createObjectStore("meta", js_value({"keyPath": "key"}))
    tx.objectStore("meta").put(js_value({"key": "counters", "pos": 0, "version": 0}))


#: Forward-only migrations; index i takes the schema from version i to i + 1.
MIGRATIONS: tuple[Callable[[Any, Any], None], ...] = (_schema_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


def run_range(run_id: str) -> Any:
    """Key range of every ``[run_id, …]`` key (steps, events): ``[id]`` sorts before all of them
    and ``[id, []]`` after (arrays sort after numbers and strings)."""
    return key_range([run_id], [run_id, []])


# -- runs --------------------------------------------------------------------------------------
def run_record(run: Run, pos: int) -> dict[str, Any]:
    return {
        "id": run.id,
        "pos": pos,
        "job_name": run.job_name,
        "job_version": run.job_version,
        "status": run.status,
        "input": dumps(run.input),
        "output": dumps(run.output),
        "error": run.error,
        "progress": None if run.progress is None else dumps(run.progress.to_json()),
        "labels": dumps(dict(run.labels)),
        "label_index": [f"{k}\u0000{v}" for k, v in run.labels.items()],
        "idempotency_key": run.idempotency_key,
        "idem": None if run.idempotency_key is None else [run.job_name, run.idempotency_key],
        "concurrency_key": run.concurrency_key,
        "attempt": run.attempt,
        "owner": run.owner,
        "epoch": run.epoch,
        "lease_expires_at": run.lease_expires_at,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "expires_at": run.expires_at,
        "last_seq": run.last_seq,
        "version": run.version,
        "active": pos if run.status in ACTIVE_STATUSES else None,
    }


def record_run(rec: dict[str, Any]) -> Run:
    return Run(
        id=rec["id"],
        job_name=rec["job_name"],
        job_version=rec["job_version"],
        status=rec["status"],
        input=loads(rec["input"]),
        output=loads(rec["output"]),
        error=rec["error"],
        progress=Progress.from_json(loads(rec["progress"])),
        labels=loads(rec["labels"]),
        idempotency_key=rec["idempotency_key"],
        concurrency_key=rec["concurrency_key"],
        attempt=int(rec["attempt"]),
        owner=rec["owner"],
        epoch=int(rec["epoch"]),
        lease_expires_at=rec["lease_expires_at"],
        created_at=rec["created_at"],
        updated_at=rec["updated_at"],
        started_at=rec["started_at"],
        finished_at=rec["finished_at"],
        expires_at=rec["expires_at"],
        last_seq=int(rec["last_seq"]),
        version=int(rec["version"]),
    )


# -- steps and events --------------------------------------------------------------------------
def step_record(step: StepRecord) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "name": step.name,
        "idx": step.index,
        "status": step.status,
        "output": dumps(step.output),
        "error": step.error,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
    }


def record_step(rec: dict[str, Any]) -> StepRecord:
    return StepRecord(
        rec["run_id"],
        rec["name"],
        int(rec["idx"]),
        rec["status"],
        loads(rec["output"]),
        rec["error"],
        rec["started_at"],
        rec["completed_at"],
    )


def event_record(run_id: str, seq: int, event: NewEvent) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "type": event.type, "data": dumps(dict(event.data)), "at": event.at}


def record_event(rec: dict[str, Any]) -> Event:
    return Event(rec["run_id"], int(rec["seq"]), rec["type"], loads(rec["data"]), rec["at"])


def events_out(run_id: str, last_seq: int, events: Sequence[NewEvent]) -> list[tuple[Event, dict[str, Any]]]:
    """The events as they will be stored after ``last_seq``: (model, record) pairs."""
    out = []
    for i, event in enumerate(events):
        seq = last_seq + 1 + i
        out.append((Event(run_id, seq, event.type, event.data, event.at), event_record(run_id, seq, event)))
    return out
