"""``list_runs`` for the IndexedDB store: pick the indexes that cover the filter, count with them,
and walk them newest first with cursors, reading only the page asked for.

A program for :func:`stepstone.browser._idb.run_transaction` (see there).

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from typing import Any

from ...browser._idb import Program
from ...browser._values import is_nil, py_value
from .._contract import RunFilter
from ._schema import prefix_range

__all__ = ["list_runs_program"]


def _keep(rec: dict[str, Any], f: RunFilter) -> bool:
    if f.job_name is not None and rec["job_name"] != f.job_name:
        return False
    if f.statuses is not None and rec["status"] not in f.statuses:
        return False
    if f.parent_id is not None and rec.get("parent_id") != f.parent_id:
        return False
    labels = set(rec["label_index"])
    return all(f"{k}\u0000{v}" in labels for k, v in (f.labels or {}).items())


def _ranges(runs: Any, f: RunFilter) -> list[tuple[Any, Any]]:
    """Disjoint (index, key range) pairs whose union is exactly the runs matching ``f``."""
    prefix = prefix_range
    statuses = None if f.statuses is None else list(dict.fromkeys(f.statuses))
    if f.job_name is not None and statuses is not None:
        return [(runs.index("job_status"), prefix(f.job_name, s)) for s in statuses]
    if f.job_name is not None:
        return [(runs.index("job"), prefix(f.job_name))]
    if statuses is not None:
        return [(runs.index("status"), prefix(s)) for s in statuses]
    return [(runs.index("pos"), None)]


def _filtered(runs: Any, f: RunFilter) -> Program[tuple[list[dict[str, Any]], int]]:
    """A parent's children, or the runs with one of the labels, filtered here (few of them)."""
    if f.parent_id is not None:
        recs = py_value((yield runs.index("parent").getAll(prefix_range(f.parent_id)))) or []
    else:
        key, value = next(iter((f.labels or {}).items()))
        recs = py_value((yield runs.index("labels").getAll(f"{key}\u0000{value}"))) or []
    matching = sorted((r for r in recs if _keep(r, f)), key=lambda r: -r["pos"])
    return matching[f.offset : f.offset + f.limit], len(matching)


def list_runs_program(runs: Any, f: RunFilter) -> Program[tuple[list[dict[str, Any]], int]]:
    """Runs matching ``f`` newest first (by creation position), and how many match in all."""
    if f.labels or f.parent_id is not None:
        return (yield from _filtered(runs, f))
    ranges = _ranges(runs, f)
    if not ranges:
        return [], 0
    counts = yield [index.count(bounds) for index, bounds in ranges]
    total = sum(int(c) for c in counts)
    if f.limit <= 0 or f.offset >= total:
        return [], total
    single = len(ranges) == 1
    # With one range the cursor skips the offset; with several each must yield offset + limit.
    take = f.limit if single else f.offset + f.limit
    found: list[dict[str, Any]] = []
    for index, bounds in ranges:
        request = index.openCursor(bounds, "prev")
        cursor = yield request
        if single and f.offset and not is_nil(cursor):
            cursor.advance(f.offset)
            cursor = yield request
        taken = 0
        while not is_nil(cursor) and taken < take:
            found.append(py_value(cursor.value))
            taken += 1
            if taken < take:
                cursor.continue_()
                cursor = yield request
    if single:
        return found, total
    found.sort(key=lambda r: -r["pos"])
    return found[f.offset : f.offset + f.limit], total
