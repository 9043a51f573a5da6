"""Inside one IndexedDB transaction of the store: the view a program gets (object stores, JSON
records in and out, the store-wide counters), and the record edits several operations share.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._errors import RunNotFound, StaleLeaseError
from ..._models import Event
from ...browser._idb import Program
from ...browser._values import js_value, py_value
from .._contract import NewEvent
from ._schema import events_out, index_fields, run_range

__all__ = ["Tx", "append", "child_ended", "delete", "fence"]


class Tx:
    """What a program sees of its transaction: object stores, and JSON records in and out."""

    def __init__(self, tx: Any) -> None:
        self.js = tx
        self._counters: dict[str, Any] | None = None
        self._counters_dirty = False

    def store(self, name: str) -> Any:
        return self.js.objectStore(name)

    def put(self, name: str, record: dict[str, Any]) -> None:
        self.store(name).put(js_value(record))

    def put_run(self, record: dict[str, Any]) -> None:
        """Write a run record, with its derived index fields brought up to date."""
        self.put("runs", index_fields(record))

    def counters_request(self) -> Any:
        return self.store("meta").get("counters")

    def set_counters(self, value: Any) -> None:
        self._counters = py_value(value) or {"key": "counters", "pos": 0, "version": 0}

    def next_version(self) -> int:
        assert self._counters is not None, "read the counters first"
        self._counters["version"] += 1
        self._counters_dirty = True
        return int(self._counters["version"])

    def next_pos(self) -> int:
        assert self._counters is not None, "read the counters first"
        self._counters["pos"] += 1
        self._counters_dirty = True
        return int(self._counters["pos"])

    def save_counters(self) -> None:
        if self._counters_dirty and self._counters is not None:
            self.put("meta", self._counters)
            self._counters_dirty = False


def fence(rec: dict[str, Any] | None, run_id: str, epoch: int | None) -> dict[str, Any]:
    if epoch is None:
        if rec is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return rec
    if rec is None or rec["epoch"] != epoch or rec["status"] != "running":
        raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
    return rec


def append(t: Tx, rec: dict[str, Any], events: Sequence[NewEvent]) -> list[Event]:
    """Write ``events`` after the run's last seq and move ``last_seq``; the caller puts ``rec``."""
    pairs = events_out(rec["id"], int(rec["last_seq"]), events)
    if not pairs:
        return []
    store = t.store("events")
    for _, record in pairs:
        store.put(js_value(record))
    rec["last_seq"] = pairs[-1][0].seq
    rec["updated_at"] = pairs[-1][0].at
    return [event for event, _ in pairs]


def child_ended(t: Tx, rec: dict[str, Any], status: str, now: float) -> Program[None]:
    """The run ``rec`` finished with ``status`` (or was deleted): if a suspended parent awaits it,
    count it off and wake the parent when it was the last one awaited or did not complete. Clears
    the mark on ``rec``; the caller writes ``rec`` afterwards (or deletes it). Counters read."""
    parent_id = rec.get("awaited_by")
    if parent_id is None:
        return
    rec["awaited_by"] = None
    parent = py_value((yield t.store("runs").get(parent_id)))
    if parent is None or parent["status"] != "suspended":
        return
    parent["awaiting"] = int(parent.get("awaiting") or 0) - 1
    if parent["awaiting"] <= 0 or status != "completed":
        parent["wake_at"] = now
        parent["version"] = t.next_version()
    t.put_run(parent)


def delete(t: Tx, rec: dict[str, Any], at: float) -> Program[None]:
    """Delete the run ``rec`` with its steps, events and inbox, leaving a tombstone; a parent
    awaiting it wakes (a deleted child did not complete). Counters read."""
    run_id = rec["id"]
    yield from child_ended(t, rec, "deleted", at)
    t.store("inbox").delete(run_range(run_id))
    t.store("events").delete(run_range(run_id))
    t.store("steps").delete(run_range(run_id))
    t.store("runs").delete(run_id)
    t.put("tombstones", {"version": t.next_version(), "run_id": run_id, "deleted_at": at})
