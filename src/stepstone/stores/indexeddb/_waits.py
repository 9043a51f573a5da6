"""Suspension in the IndexedDB store: claiming (suspended runs wake by ``wake_at``), parking a run
with what it waits for, the per-run inbox of sent events, and child runs waking their parent. A
mixin of :class:`~stepstone.stores.indexeddb.IndexedDBStore`, and the claim program it runs.

A suspended run is claimable once ``wake_at <= now``; everything here only ever moves ``wake_at``
(to the sleep's end, or to ``now`` when an awaited event or child arrives), so one range of the
sparse ``wake`` index finds every run to wake. A parent waiting for children counts them: each
awaited child carries ``awaited_by``, the parent ``awaiting``; a child's end decrements the count
and wakes the parent at zero, or at once when the child did not complete (``_tx.child_ended``).

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..._errors import InvalidRunState, RunNotFound, StaleLeaseError
from ..._models import ACTIVE_STATUSES, TERMINAL_STATUSES, Event, Progress, Run, StepRecord, Wait
from ..._util import dumps, loads
from ...browser._idb import Program, key_range
from ...browser._values import is_nil, py_value
from .._contract import JobKeys, NewEvent, job_matches
from ._schema import inbox_record, prefix_range, record_run, run_range, step_record
from ._tx import Tx, append, fence

if TYPE_CHECKING:
    from ._locks import RunLocks

__all__ = ["WaitsMixin", "claim_program", "claimed_run"]

_ClaimResult = tuple[dict[str, Any], Any] | None


def claim_program(
    t: Tx, owner: str, jobs: JobKeys, now: float, lease_until: float, skip: Collection[str], busy: Collection[str]
) -> Program[_ClaimResult]:
    """The oldest runnable run of ``jobs`` taken ``running`` by ``owner``, with the (JSON) wait it
    woke from; None when there is none. ``busy``: running runs another live tab executes.

    Candidates come from two sparse indexes: ``active`` (pending and running runs, by position)
    and ``wake`` (suspended runs whose time has come). Of the unfinished runs sharing a
    concurrency key only the oldest may run; the pending and running ones are all in ``active``,
    and the oldest suspended one of a key is the first entry of ``skey`` for that key."""
    runs = t.store("runs")
    found = yield [runs.index("active").getAll(), runs.index("wake").getAll(key_range(upper=now)), t.counters_request()]
    t.set_counters(found[2])
    active: list[dict[str, Any]] = py_value(found[0]) or []
    oldest: dict[str, int] = {}  # concurrency key -> position of its oldest unfinished run
    for rec in active:  # by position: the first of a key is its oldest pending/running run
        key = rec["concurrency_key"]
        if key is not None and key not in oldest:
            oldest[key] = rec["pos"]

    def runnable(rec: dict[str, Any]) -> bool:
        if rec["id"] in skip or not job_matches(jobs, rec["job_name"], rec["job_version"]):
            return False
        if rec["status"] != "running":
            return True
        expired = rec["lease_expires_at"] is None or rec["lease_expires_at"] < now
        return expired and rec["id"] not in busy  # else a live lease, or a live tab still executing it

    candidates = sorted((r for r in [*active, *(py_value(found[1]) or [])] if runnable(r)), key=lambda r: r["pos"])
    if not candidates:
        return None
    yield from _oldest_suspended(runs, candidates, oldest)
    for rec in candidates:
        key = rec["concurrency_key"]
        if key is not None and oldest.get(key, rec["pos"]) < rec["pos"]:
            continue  # an older run with its key is unfinished
        woke_from = rec.get("wait") if rec["status"] == "suspended" else None
        if rec["status"] == "suspended":  # it no longer awaits its children
            for child in py_value((yield runs.index("awaited_by").getAll(rec["id"]))) or []:
                child["awaited_by"] = None
                t.put_run(child)
        rec.update(
            status="running", owner=owner, epoch=rec["epoch"] + 1, lease_expires_at=lease_until, updated_at=now,
            wait=None, wake_at=None, awaiting=0, version=t.next_version(),
        )  # fmt: skip
        if rec["started_at"] is None:
            rec["started_at"] = now
        t.put_run(rec)
        t.save_counters()
        return rec, woke_from
    return None


def _oldest_suspended(runs: Any, candidates: list[dict[str, Any]], oldest: dict[str, int]) -> Program[None]:
    """Lower ``oldest[key]`` to the oldest suspended run of each key among ``candidates``."""
    keys = list(dict.fromkeys(r["concurrency_key"] for r in candidates if r["concurrency_key"] is not None))
    if not keys:
        return
    sleeping = yield [runs.index("skey").get(prefix_range(key)) for key in keys]
    for key, value in zip(keys, sleeping, strict=True):
        rec = py_value(value)
        if rec is not None:
            oldest[key] = min(oldest.get(key, rec["pos"]), rec["pos"])


def claimed_run(result: _ClaimResult) -> Run | None:
    """The Run a claim returns: as stored, but with the wait it woke from."""
    if result is None:
        return None
    rec, woke_from = result
    return replace(record_run(rec), wait=Wait.from_json(loads(woke_from)))


class WaitsMixin:
    """Mixed into IndexedDBStore, which provides the attributes below."""

    if TYPE_CHECKING:
        _locks: RunLocks

        async def _run(self, program: Any, stores: Sequence[str], mode: str = "readwrite") -> Any: ...

        def _published(self, run_id: str | None, runs_changed: bool) -> None: ...

    async def suspend_run(
        self,
        run_id: str,
        epoch: int,
        wait: Wait,
        now: float,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
        attempt: int | None = None,
        error: str | None = None,
    ) -> tuple[Run, list[Event]]:
        def program(t: Tx) -> Program[tuple[dict[str, Any], list[Event]]]:
            runs = t.store("runs")
            found = yield [runs.get(run_id), t.counters_request()]
            rec = fence(py_value(found[0]), run_id, epoch)
            t.set_counters(found[1])
            wake_at = wait.until
            if rec.get("cancel_requested"):
                wake_at = now
            elif wait.events:
                waiting = t.store("inbox").index("waiting")
                queued = yield [waiting.count(prefix_range(run_id, name)) for name in wait.events]
                if any(int(n) for n in queued):
                    wake_at = now
            awaiting = 0
            if wait.children:
                ids = list(dict.fromkeys(wait.children))
                found = yield [runs.get(c) for c in ids]
                children = [py_value(c) for c in found]
                unfinished = [c for c in children if c is not None and c["status"] in ACTIVE_STATUSES]
                # a deleted child counts as one that did not complete
                badly = any(c is None or c["status"] in TERMINAL_STATUSES - {"completed"} for c in children)
                if not unfinished or badly:
                    wake_at = now
                else:
                    marked = {c["id"] for c in unfinished}
                    for old in py_value((yield runs.index("awaited_by").getAll(run_id))) or []:
                        if old["id"] not in marked:
                            old["awaited_by"] = None
                            t.put_run(old)
                    for child in unfinished:
                        child["awaited_by"] = run_id
                        t.put_run(child)
                    awaiting = len(unfinished)
            rec.update(
                status="suspended", owner=None, lease_expires_at=None, wait=dumps(wait.to_json()), wake_at=wake_at,
                awaiting=awaiting, updated_at=now, version=t.next_version(),
            )  # fmt: skip
            if progress is not None:
                rec["progress"] = dumps(progress.to_json())
            if attempt is not None:
                rec["attempt"] = attempt
            if error is not None:
                rec["error"] = error
            out = append(t, rec, events)
            t.put_run(rec)
            t.save_counters()
            return rec, out

        try:
            rec, out = await self._run(program, ["runs", "events", "inbox", "meta"])
        finally:
            self._locks.ended(run_id, epoch)  # this page no longer executes it, whoever wakes it
        self._published(run_id, True)
        return record_run(rec), out

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        def program(t: Tx) -> Program[bool]:
            inbox = t.store("inbox")
            found = yield [t.store("runs").get(run_id), inbox.openKeyCursor(run_range(run_id), "prev")]
            rec = py_value(found[0])
            if rec is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if rec["status"] in TERMINAL_STATUSES:
                raise InvalidRunState(f"run {run_id!r} is already {rec['status']}; it takes no more events")
            last = found[1]
            seq = 0 if is_nil(last) else int(py_value(last.key)[1]) + 1
            t.put("inbox", inbox_record(run_id, seq, name, data, now))
            wait = Wait.from_json(loads(rec.get("wait")))
            if rec["status"] != "suspended" or wait is None or name not in wait.events:
                return False
            t.set_counters((yield t.counters_request()))
            rec.update(wake_at=now, version=t.next_version())
            t.put_run(rec)
            t.save_counters()
            return True

        woken: bool = await self._run(program, ["runs", "inbox", "meta"])
        # A woken run is claimable now: other tabs' workers find it at their next poll; the
        # publish wakes anything waiting on the run (or on the list of runs) in any tab.
        self._published(run_id, woken)

    async def take_event(
        self, run_id: str, epoch: int, name: str, step: StepRecord, events: Sequence[NewEvent]
    ) -> tuple[bool, Any, list[Event]]:
        def program(t: Tx) -> Program[tuple[bool, Any, list[Event]]]:
            waiting = t.store("inbox").index("waiting")
            found = yield [t.store("runs").get(run_id), waiting.get(prefix_range(run_id, name))]
            rec = fence(py_value(found[0]), run_id, epoch)
            queued = py_value(found[1])
            if queued is None:
                return False, None, []
            queued.update(delivered_at=step.completed_at, waiting=None)
            t.put("inbox", queued)
            data = loads(queued["data"])
            t.put("steps", step_record(replace(step, status="completed", output={"event": name, "data": data})))
            out = append(t, rec, events)
            if out:
                t.put_run(rec)
            return True, data, out

        try:
            result: tuple[bool, Any, list[Event]] = await self._run(program, ["runs", "steps", "events", "inbox"])
        except StaleLeaseError:
            self._locks.ended(run_id, epoch)
            raise
        if result[0]:
            self._published(run_id, False)
        return result

    async def next_wake(self, now: float) -> float | None:
        def program(t: Tx) -> Program[float | None]:
            cursor = yield t.store("runs").index("wake").openKeyCursor()
            return None if is_nil(cursor) else float(cursor.key)

        earliest: float | None = await self._run(program, ["runs"], "readonly")
        return earliest
