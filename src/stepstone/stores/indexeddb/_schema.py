"""The IndexedDB layout of :class:`~stepstone.stores.indexeddb.IndexedDBStore`: object stores, indexes,
forward-only migrations, and the conversions between stored records and stepstone's models.

Records are plain JSON objects. User payloads (input, output, step results, event data, progress,
labels) are kept as JSON *strings* inside them, so every value round-trips exactly as it does in
SQLite (a JS number would round integers past 2**53). Index fields that must not be indexed for a
record are ``null``: IndexedDB leaves a record out of an index whose key is not a valid key, which
makes ``active``, ``idem``, ``expires_at``, ``wake``, ``skey``, ``awaited_by`` and a top-level run's
``[parent_id, parent_step]`` sparse indexes. The derived index fields of a run (``active``,
``wake``, ``skey``) are recomputed from its status by :func:`index_fields` whenever it is written.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..._models import Event, Progress, Run, StepRecord, Wait
from ..._util import dumps, loads
from ...browser._idb import key_range
from ...browser._values import js_value
from .._contract import NewEvent

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STORES",
    "event_record",
    "inbox_record",
    "index_fields",
    "prefix_range",
    "record_event",
    "record_run",
    "record_step",
    "run_range",
    "run_record",
    "step_record",
]

#: Every object store a stepstone database has.
STORES = ("runs", "steps", "events", "tombstones", "meta", "inbox")

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

#: Suspension (schema 2): child runs, suspended runs' wake-up times and concurrency keys, and the
#: children a suspended parent still awaits. Every one is sparse and none is set on a record written
#: by schema 1 (which had no child and no suspended run), so no record needs rewriting.
_RUN_INDEXES_V2: dict[str, tuple[Any, bool, bool]] = {
    "child": (["parent_id", "parent_step"], True, False),  # one child run per parent step
    "parent": (["parent_id", "pos"], False, False),  # list_runs(parent_id=…)
    "wake": ("wake", False, False),  # wake_at of suspended runs: claim_next, next_wake
    "skey": ("skey", False, False),  # [concurrency_key, pos] of suspended runs: they hold their key
    "awaited_by": ("awaited_by", False, False),  # children a suspended parent counts (``awaiting``)
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
        # Only in a new database: a later upgrade must never reset the counters (pos and version
        # are unique indexes). A missing counters record reads as zeros anyway.
        tx.objectStore("meta").put(js_value({"key": "counters", "pos": 0, "version": 0}))


def _schema_v2(db: Any, tx: Any) -> None:
    """Suspension: the run indexes above and each run's inbox of sent events (``[run_id, seq]``;
    ``waiting`` is ``[run_id, name, seq]`` until the event is delivered, then ``null``)."""
    runs = tx.objectStore("runs")
    for index, (key_path, unique, multi) in _RUN_INDEXES_V2.items():
        if not runs.indexNames.contains(index):
            runs.createIndex(index, js_value(key_path), js_value({"unique": unique, "multiEntry": multi}))
    if not db.objectStoreNames.contains("inbox"):
        db.createObjectStore("inbox", js_value({"keyPath": ["run_id", "seq"]}))
    inbox = tx.objectStore("inbox")
    if not inbox.indexNames.contains("waiting"):
        inbox.createIndex("waiting", "waiting", js_value({"unique": True}))


#: Forward-only migrations; index i takes the schema from version i to i + 1. Each is idempotent
#: (creates only what is missing), so a half-made database heals by running them all again.
MIGRATIONS: tuple[Callable[[Any, Any], None], ...] = (_schema_v1, _schema_v2)
SCHEMA_VERSION = len(MIGRATIONS)


def prefix_range(*parts: Any) -> Any:
    """Key range of every array key that starts with ``parts``: ``[*parts]`` sorts before all of
    them and ``[*parts, []]`` after (arrays sort after numbers and strings)."""
    return key_range(list(parts), [*parts, []])


def run_range(run_id: str) -> Any:
    """Key range of every ``[run_id, …]`` key (steps, events, inbox)."""
    return prefix_range(run_id)


# -- runs --------------------------------------------------------------------------------------
def index_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """Recompute a run record's derived index fields from its status (done on every write)."""
    status = rec["status"]
    suspended = status == "suspended"
    rec["active"] = rec["pos"] if status in ("pending", "running") else None
    rec["wake"] = rec.get("wake_at") if suspended else None
    key = rec.get("concurrency_key")
    rec["skey"] = [key, rec["pos"]] if suspended and key is not None else None
    return rec


def run_record(run: Run, pos: int) -> dict[str, Any]:
    rec: dict[str, Any] = {
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
        "parent_id": run.parent_id,
        "parent_step": run.parent_step,
        "wait": None if run.wait is None else dumps(run.wait.to_json()),
        "wake_at": run.wake_at,
        "cancel_requested": run.cancel_requested,
        "awaited_by": None,  # the suspended parent counting this run among the children it awaits
        "awaiting": 0,  # while suspended: how many awaited children are unfinished
    }
    return index_fields(rec)


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
        # Records written by schema 1 have none of these: their defaults.
        parent_id=rec.get("parent_id"),
        parent_step=rec.get("parent_step"),
        wait=Wait.from_json(loads(rec.get("wait"))),
        wake_at=rec.get("wake_at"),
        cancel_requested=bool(rec.get("cancel_requested", False)),
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
        "attempt": step.attempt,
        "run_attempt": step.run_attempt,
        "retry_at": step.retry_at,
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
        int(rec.get("attempt", 1)),
        int(rec.get("run_attempt", 1)),
        rec.get("retry_at"),
    )


def event_record(run_id: str, seq: int, event: NewEvent) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "type": event.type, "data": dumps(dict(event.data)), "at": event.at}


def inbox_record(run_id: str, seq: int, name: str, data: Any, sent_at: float) -> dict[str, Any]:
    """An event sent to a run (``send_event``), queued until a ``take_event`` delivers it."""
    return {
        "run_id": run_id,
        "seq": seq,
        "name": name,
        "data": dumps(data),
        "sent_at": sent_at,
        "delivered_at": None,
        "waiting": [run_id, name, seq],
    }


def record_event(rec: dict[str, Any]) -> Event:
    return Event(rec["run_id"], int(rec["seq"]), rec["type"], loads(rec["data"]), rec["at"])


def events_out(run_id: str, last_seq: int, events: Sequence[NewEvent]) -> list[tuple[Event, dict[str, Any]]]:
    """The events as they will be stored after ``last_seq``: (model, record) pairs."""
    out = []
    for i, event in enumerate(events):
        seq = last_seq + 1 + i
        out.append((Event(run_id, seq, event.type, event.data, event.at), event_record(run_id, seq, event)))
    return out
