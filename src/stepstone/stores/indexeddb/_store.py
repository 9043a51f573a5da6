"""``indexeddb://NAME`` — the browser store: one IndexedDB database per name, shared by every tab
of the origin. Only importable inside Pyodide.

Each store method is one IndexedDB transaction, written as a program (see :mod:`stepstone.browser._idb`)
so that reads and writes of one operation are atomic: the atomic claim with lease and epoch, the
fence check of every worker write, the seq numbering of events. Step writes (``commit_step``,
``append_events``) queued in one event-loop turn share one transaction, each fenced on its own
(:mod:`._group`). A method returns once the transaction's ``complete`` event fired. Readwrite
transactions of one database are serialised by the browser across tabs, which is what makes two
tabs' claims exclusive.

Cross-tab: every write is announced on a BroadcastChannel so other tabs' ``wait_events`` and
``wait_run_changes`` wake at once; Web Locks prove a tab alive or gone (see :mod:`._locks`).
Suspension (claiming woken runs, the inbox of sent events, child runs) is in :mod:`._waits`.
Timing defaults (``engine_defaults``) are short, so a reopened tab resumes a closed tab's run within
about a second of its own start.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, ClassVar

from ..._errors import InvalidRunState, RunNotFound, StaleLeaseError, StoreError
from ..._liveness import Liveness
from ..._models import TERMINAL_STATUSES, Event, Progress, Run, RunChange, RunStatus, StepRecord
from ..._notify import RUNS_KEY
from ..._util import dumps, now
from ...browser._broadcast import BroadcastNotifier
from ...browser._idb import Program, key_range
from ...browser._locks import has_web_locks
from ...browser._values import js_value, py_value
from .._contract import JobKeys, NewEvent, NewRun, RunFilter
from ._connection import Connection
from ._group import StepGroups
from ._locks import RunLocks, WebLockLiveness
from ._schema import record_event, record_run, record_step, run_range, run_record
from ._tx import Tx, append, child_ended, delete, fence
from ._waits import WaitsMixin, claim_program, claimed_run

__all__ = ["IndexedDBStore"]

_TOMBSTONE_TTL = 86400.0
_DELETE_STORES = ("runs", "steps", "events", "inbox", "tombstones", "meta")


class IndexedDBStore(WaitsMixin):
    """A store in the IndexedDB database ``name`` of this origin (survives reloads, tab closes and
    browser restarts). ``durability`` is IndexedDB's commit mode: ``"relaxed"`` (the default; a
    commit survives the tab and the browser) or ``"strict"`` (also an OS crash; slower)."""

    #: Suggested engine timing: a closed tab's lease lapses in 3 s, and a tab proven gone by its
    #: Web Lock is resumed at the next poll (0.25 s).
    engine_defaults: ClassVar[dict[str, float]] = {
        "polling_interval": 0.25,
        "heartbeat_interval": 0.5,
        "stale_threshold": 3.0,
    }

    def __init__(self, name: str, *, durability: str = "relaxed", open_timeout: float = 15.0) -> None:
        if not isinstance(name, str) or not name:
            raise StoreError(f"an IndexedDB database name must be a non-empty string, not {name!r}")
        if durability not in ("relaxed", "strict", "default"):
            raise StoreError(f"unknown durability {durability!r}; use relaxed or strict")
        self.name = name
        self.durability = durability
        self.open_timeout = open_timeout
        self._conn = Connection(name, durability, open_timeout)
        self._attached = False
        self._seen: dict[str, tuple[int, int]] = {}
        prefix = f"stepstone:{name}:"
        self._notifier = BroadcastNotifier.shared(f"stepstone-idb:{name}")
        self._locks = RunLocks.shared(prefix)
        self._lock_prefix = prefix
        self._groups = StepGroups(self._run, lambda keys: self._notifier.publish(*keys))

    # -- connection ----------------------------------------------------------------------------
    async def init(self) -> None:
        if self._conn.db is not None:
            return
        await self._conn.open()
        if not self._attached:
            self._notifier.attach()
            self._attached = True

    async def close(self) -> None:
        self._conn.close()
        if self._attached:
            self._notifier.detach()
            self._attached = False

    def liveness(self) -> Liveness | None:
        """Web Locks prove whether a lease owner's tab is still open."""
        return WebLockLiveness(self._lock_prefix) if has_web_locks() else None

    # -- plumbing ------------------------------------------------------------------------------
    async def _run(self, program: Any, stores: Sequence[str], mode: str = "readwrite") -> Any:
        return await self._conn.run(program, stores, mode)

    def _published(self, run_id: str | None, runs_changed: bool) -> None:
        keys = [run_id] if run_id else []
        if runs_changed:
            keys.append(RUNS_KEY)
        self._notifier.publish(*keys)

    # -- runs ----------------------------------------------------------------------------------
    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        def program(t: Tx) -> Program[tuple[dict[str, Any], bool]]:
            runs = t.store("runs")
            requests = [t.counters_request()]
            if run.parent_id is not None and run.parent_step is not None:  # one child per parent step
                requests.append(runs.index("child").get(js_value([run.parent_id, run.parent_step])))
            if run.idempotency_key is not None:
                requests.append(runs.index("idem").get(js_value([run.job_name, run.idempotency_key])))
            found = yield requests
            t.set_counters(found[0])
            for value in found[1:]:
                existing = py_value(value)
                if existing is not None:
                    return existing, False
            model = Run(
                id=run.id, job_name=run.job_name, job_version=run.job_version, status="pending", input=run.input,
                labels=dict(run.labels), idempotency_key=run.idempotency_key, concurrency_key=run.concurrency_key,
                created_at=run.created_at, updated_at=run.created_at, parent_id=run.parent_id,
                parent_step=run.parent_step,
            )  # fmt: skip
            rec = run_record(model, t.next_pos())
            rec["version"] = t.next_version()
            append(t, rec, [event])
            t.put_run(rec)
            t.save_counters()
            return rec, True

        rec, created = await self._run(program, ["runs", "events", "meta"])
        if created:
            self._published(run.id, True)
        return record_run(rec), created

    async def get_run(self, run_id: str) -> Run | None:
        rec = await self._get_run_record(run_id)
        return None if rec is None else record_run(rec)

    async def _get_run_record(self, run_id: str) -> dict[str, Any] | None:
        def program(t: Tx) -> Program[Any]:
            return py_value((yield t.store("runs").get(run_id)))

        generation = self._notifier.generation(run_id)
        result: dict[str, Any] | None
        result = await self._run(program, ["runs"], "readonly")
        if result is not None:
            # What the log looked like as of this generation: wait_events may trust it until the
            # next publish (every write, in any tab, publishes).
            self._seen[run_id] = (generation, int(result["last_seq"]))
        else:
            self._seen.pop(run_id, None)
        return result

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        from ._query import list_runs_program

        def program(t: Tx) -> Program[tuple[list[dict[str, Any]], int]]:
            return (yield from list_runs_program(t.store("runs"), filter))

        recs, total = await self._run(program, ["runs"], "readonly")
        return [record_run(r) for r in recs], total

    async def claim_next(
        self,
        owner: str,
        jobs: JobKeys,
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        if not jobs:
            return None
        skip = set(exclude)
        busy = await self._locks.held_elsewhere()

        def program(t: Tx) -> Program[Any]:
            return (yield from claim_program(t, owner, jobs, now, lease_until, skip, busy))

        run = claimed_run(await self._run(program, ["runs", "meta"]))
        if run is None:
            return None
        await self._locks.claimed(run.id, run.epoch)
        self._published(run.id, True)
        return run

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        def program(t: Tx) -> Program[dict[str, Any] | None]:
            rec: dict[str, Any] | None = py_value((yield t.store("runs").get(run_id)))
            if rec is None or rec["epoch"] != epoch or rec["status"] != "running":
                return None
            rec["lease_expires_at"] = lease_until
            t.put_run(rec)
            return rec

        held: dict[str, Any] | None = await self._run(program, ["runs"])
        if held is None:
            self._locks.ended(run_id, epoch)
            return None
        return record_run(held)

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        def program(t: Tx) -> Program[bool]:
            found = yield [t.store("runs").get(run_id), t.counters_request()]
            rec = py_value(found[0])
            if rec is None or rec["epoch"] != epoch or rec["status"] != "running":
                return False
            t.set_counters(found[1])
            rec.update(status="pending", owner=None, lease_expires_at=None, updated_at=now, version=t.next_version())
            t.put_run(rec)
            t.save_counters()
            return True

        released: bool = await self._run(program, ["runs", "meta"])
        self._locks.ended(run_id, epoch)
        if released:
            self._published(run_id, True)
        return released

    async def expire_leases(self, owner: str, now: float) -> int:
        def program(t: Tx) -> Program[int]:
            count = 0
            for rec in py_value((yield t.store("runs").index("active").getAll())) or []:
                if rec["owner"] == owner and rec["status"] == "running":
                    rec["lease_expires_at"] = now - 1
                    t.put_run(rec)
                    count += 1
            return count

        count: int = await self._run(program, ["runs"])
        return count

    async def lease_owners(self, now: float) -> set[str]:
        def program(t: Tx) -> Program[set[str]]:
            active = py_value((yield t.store("runs").index("active").getAll())) or []
            return {
                r["owner"]
                for r in active
                if r["status"] == "running" and r["owner"] and (r["lease_expires_at"] or 0) >= now
            }

        owners: set[str] = await self._run(program, ["runs"], "readonly")
        return owners

    # -- events and steps ----------------------------------------------------------------------
    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        return await self._write_step(run_id, epoch, None, events, progress)

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        return await self._write_step(run_id, epoch, step, events, progress)

    async def _write_step(
        self,
        run_id: str,
        epoch: int | None,
        step: StepRecord | None,
        events: Sequence[NewEvent],
        progress: Progress | None,
    ) -> list[Event]:
        try:  # with the step writes of other runs queued in this turn: one transaction (_group.py)
            out = await self._groups.write(run_id, epoch, step, events, progress)  # publishes
        except StaleLeaseError:
            if epoch is not None:
                self._locks.ended(run_id, epoch)
            raise
        return out

    async def finish_run(
        self,
        run_id: str,
        epoch: int,
        status: RunStatus,
        output: Any,
        error: str | None,
        now: float,
        expires_at: float | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> tuple[Run, list[Event]]:
        def program(t: Tx) -> Program[tuple[dict[str, Any], list[Event]]]:
            found = yield [t.store("runs").get(run_id), t.counters_request()]
            rec = fence(py_value(found[0]), run_id, epoch)
            t.set_counters(found[1])
            if progress is not None:
                rec["progress"] = dumps(progress.to_json())
            rec.update(
                status=status, output=dumps(output), error=error, finished_at=now, updated_at=now,
                expires_at=expires_at, owner=None, lease_expires_at=None, wait=None, wake_at=None,
                version=t.next_version(),
            )  # fmt: skip
            out = append(t, rec, events)
            yield from child_ended(t, rec, status, now)
            t.put_run(rec)
            t.save_counters()
            return rec, out

        try:
            rec, out = await self._run(program, ["runs", "events", "meta"])
        finally:
            self._locks.ended(run_id, epoch)
        self._published(run_id, True)
        return record_run(rec), out

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        def program(t: Tx) -> Program[tuple[dict[str, Any], list[Event]]]:
            found = yield [t.store("runs").get(run_id), t.counters_request()]
            rec = py_value(found[0])
            if rec is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if rec["status"] in TERMINAL_STATUSES:
                raise InvalidRunState(
                    f"run {run_id!r} is already {rec['status']}; only unfinished runs can be cancelled"
                )
            t.set_counters(found[1])
            out: list[Event] = []
            if rec["status"] in ("running", "suspended"):  # its execution raises RunCancelled in the job
                rec.update(cancel_requested=True, updated_at=now, version=t.next_version())
                if rec["status"] == "suspended":
                    rec["wake_at"] = now
            else:
                rec.update(
                    status="cancelled", epoch=rec["epoch"] + 1, owner=None, lease_expires_at=None, finished_at=now,
                    updated_at=now, version=t.next_version(),
                )  # fmt: skip
                out = append(t, rec, [event])
                yield from child_ended(t, rec, "cancelled", now)
            t.put_run(rec)
            t.save_counters()
            return rec, out

        rec, out = await self._run(program, ["runs", "events", "meta"])
        if rec["status"] in TERMINAL_STATUSES:
            self._locks.ended(run_id)
        self._published(run_id, True)
        return record_run(rec), out

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        def program(t: Tx) -> Program[tuple[dict[str, Any], list[Event]]]:
            found = yield [t.store("runs").get(run_id), t.counters_request()]
            rec = py_value(found[0])
            if rec is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if rec["status"] not in ("failed", "cancelled"):
                raise InvalidRunState(
                    f"run {run_id!r} is {rec['status']}; only failed or cancelled runs can be retried"
                )
            t.set_counters(found[1])
            rec.update(
                status="pending", attempt=rec["attempt"] + 1, epoch=rec["epoch"] + 1, error=None,
                output=dumps(None), finished_at=None, expires_at=None, updated_at=now, cancel_requested=False,
                wait=None, wake_at=None, awaiting=0, version=t.next_version(),
            )  # fmt: skip
            out = append(t, rec, [event])
            t.put_run(rec)
            t.save_counters()
            return rec, out

        rec, out = await self._run(program, ["runs", "events", "meta"])
        self._published(run_id, True)
        return record_run(rec), out

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        def program(t: Tx) -> Program[None]:
            rec = py_value((yield t.store("runs").get(run_id)))
            if rec is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            rec["expires_at"] = expires_at
            t.put_run(rec)

        await self._run(program, ["runs"])

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        def program(t: Tx) -> Program[list[dict[str, Any]]]:
            return py_value((yield t.store("steps").getAll(run_range(run_id)))) or []

        recs: list[dict[str, Any]] = await self._run(program, ["steps"], "readonly")
        return sorted((record_step(r) for r in recs), key=lambda s: s.index)

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]:
        if limit <= 0:
            return []

        def program(t: Tx) -> Program[list[dict[str, Any]]]:
            bounds = key_range([run_id, max(from_seq, 0)], [run_id, []])
            return py_value((yield t.store("events").getAll(bounds, limit))) or []

        recs: list[dict[str, Any]] = await self._run(program, ["events"], "readonly")
        return [record_event(r) for r in recs]

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        generation = self._notifier.generation(run_id)
        seen = self._seen.get(run_id)
        if seen is not None and seen[0] == generation and seen[1] <= after_seq:
            await self._notifier.hub.wait(run_id, timeout)  # nothing written since we last looked
            return
        rec = await self._get_run_record(run_id)
        if rec is None or rec["last_seq"] > after_seq or self._notifier.generation(run_id) != generation:
            return
        await self._notifier.hub.wait(run_id, timeout)

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        def program(t: Tx) -> Program[list[RunChange]]:
            after = key_range(after_version, lower_open=True)
            found = yield [
                t.store("runs").index("version").getAll(after, limit),
                t.store("tombstones").getAll(after, limit),
            ]
            changes = [RunChange(r["version"], r["id"], record_run(r)) for r in py_value(found[0]) or []]
            changes.extend(RunChange(r["version"], r["run_id"], None) for r in py_value(found[1]) or [])
            changes.sort(key=lambda c: c.version)
            return changes[:limit]

        changes: list[RunChange] = await self._run(program, ["runs", "tombstones"], "readonly")
        return changes

    async def runs_version(self) -> int:
        def program(t: Tx) -> Program[int]:
            rec = py_value((yield t.counters_request()))
            return int(rec["version"]) if rec else 0

        latest: int = await self._run(program, ["meta"], "readonly")
        return latest

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        generation = self._notifier.generation(RUNS_KEY)
        latest = await self.runs_version()
        if latest > after_version or self._notifier.generation(RUNS_KEY) != generation:
            return
        await self._notifier.hub.wait(RUNS_KEY, timeout)

    # -- deletion ------------------------------------------------------------------------------
    async def delete_run(self, run_id: str) -> bool:
        def program(t: Tx) -> Program[bool]:
            found = yield [t.store("runs").get(run_id), t.counters_request()]
            rec = py_value(found[0])
            if rec is None:
                return False
            t.set_counters(found[1])
            yield from delete(t, rec, now())
            t.save_counters()
            return True

        deleted: bool = await self._run(program, _DELETE_STORES)
        if deleted:
            self._locks.ended(run_id)
            self._published(run_id, True)
        return deleted

    async def sweep(self, now: float) -> int:
        def program(t: Tx) -> Program[list[str]]:
            old_tombstones = key_range(upper=now - _TOMBSTONE_TTL, upper_open=True)
            found = yield [
                t.store("runs").index("expires").getAll(key_range(upper=now)),
                t.counters_request(),
                t.store("tombstones").index("deleted_at").getAllKeys(old_tombstones),
            ]
            t.set_counters(found[1])
            expired: list[dict[str, Any]] = py_value(found[0]) or []
            ids = [rec["id"] for rec in expired]
            for rec in expired:
                yield from delete(t, rec, now)
            # Tombstones only serve list watchers catching up; a day is plenty.
            for version in py_value(found[2]) or []:
                t.store("tombstones").delete(version)
            t.save_counters()
            return ids

        ids: list[str] = await self._run(program, _DELETE_STORES)
        for run_id in ids:
            self._locks.ended(run_id)
            self._published(run_id, False)
        if ids:
            self._published(None, True)
        return len(ids)
