"""The OPFS store's logic: the Store contract's methods on :class:`~._state.LogState` (rows in
memory, made durable as a log of row changes). Each method checks and changes the rows with no
``await`` in between, then commits what it changed as one frame. Stdlib + asyncio only."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from ..._errors import InvalidRunState
from ..._models import Event, Progress, Run, RunChange, RunStatus, StepRecord, Wait
from ..._notify import RUNS_KEY
from ..._util import now as system_now
from .. import _transitions as transitions
from .._contract import JobKeys, NewEvent, NewRun, RunFilter
from .._transitions import claimable
from ._rows import LogDir, LogFile, step_row
from ._state import _TOMBSTONE_TTL, COMPACT_AT, LogState

__all__ = ["COMPACT_AT", "LogDir", "LogFile", "LogStore"]


class LogStore(LogState):
    """The Store contract in memory, made durable by appending row changes to a :class:`LogDir`.
    ``durability``: ``"relaxed"`` (a returned write survives the tab and the browser: it is in the
    file) or ``"strict"`` (also an OS crash: ``flush()`` before returning)."""

    engine_defaults: ClassVar[dict[str, float]] = {
        "polling_interval": 0.25,
        "heartbeat_interval": 0.5,
        "stale_threshold": 3.0,
    }

    # -- runs ------------------------------------------------------------------------------------
    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        self._check()
        if run.parent_id is not None and run.parent_step is not None:
            existing = self._children.get((run.parent_id, run.parent_step))
            if existing is not None:
                return self._runs[existing], False
        if run.idempotency_key is not None:
            existing = self._idem.get((run.job_name, run.idempotency_key))
            if existing is not None:
                return self._runs[existing], False
        ops: list[Any] = []
        self._counter += 1
        self._pos[run.id] = self._counter
        new = Run(
            id=run.id, job_name=run.job_name, job_version=run.job_version, status="pending",
            input=copy.deepcopy(run.input), labels=dict(run.labels), idempotency_key=run.idempotency_key,
            concurrency_key=run.concurrency_key, created_at=run.created_at, updated_at=run.created_at,
            parent_id=run.parent_id, parent_step=run.parent_step,
        )  # fmt: skip
        new = self._put(ops, new)
        new, _ = self._append(ops, new, [event])
        await self._commit(ops, (RUNS_KEY, run.id))
        return new, True

    async def get_run(self, run_id: str) -> Run | None:
        self._check()
        return self._runs.get(run_id)

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        self._check()

        def keep(r: Run) -> bool:
            if filter.job_name is not None and r.job_name != filter.job_name:
                return False
            if filter.statuses is not None and r.status not in filter.statuses:
                return False
            if filter.parent_id is not None and r.parent_id != filter.parent_id:
                return False
            if filter.labels:
                return all(r.labels.get(k) == v for k, v in filter.labels.items())
            return True

        matching = [r for r in reversed(self._runs.values()) if keep(r)]
        return matching[filter.offset : filter.offset + filter.limit], len(matching)

    async def claim_next(
        self,
        owner: str,
        jobs: JobKeys,
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        self._check()
        run = claimable(self._runs, self._pos, self._active, self._suspended, self._by_key, jobs, now, exclude)
        if run is None:
            return None
        ops: list[Any] = []
        if run.status == "suspended":
            self._forget_awaited(ops, run.id)
        claimed = self._put(ops, transitions.claimed(run, owner, now, lease_until))
        await self._commit(ops, (RUNS_KEY,))
        return replace(claimed, wait=run.wait if run.status == "suspended" else None)

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        self._check()
        run = self._runs.get(run_id)
        if run is None or run.epoch != epoch or run.status != "running":
            return None
        # not logged: leases matter only while this process lives (at open, every lease is over)
        run = self._runs[run_id] = replace(run, lease_expires_at=lease_until)
        return run

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        self._check()
        run = self._runs.get(run_id)
        if run is None or run.epoch != epoch or run.status != "running":
            return False
        ops: list[Any] = []
        self._put(ops, transitions.released(run, now))
        await self._commit(ops, (RUNS_KEY,))
        return True

    async def expire_leases(self, owner: str, now: float) -> int:
        self._check()
        n = 0
        for run in list(self._runs.values()):
            if run.owner == owner and run.status == "running":
                self._runs[run.id] = replace(run, lease_expires_at=now - 1)  # not logged, as renew_lease
                n += 1
        return n

    async def lease_owners(self, now: float) -> set[str]:
        self._check()
        return {
            r.owner
            for r in (self._runs[rid] for rid in self._active)
            if r.status == "running" and r.owner and (r.lease_expires_at or 0) >= now
        }

    # -- events and steps ------------------------------------------------------------------------
    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        self._check()
        run = self._fenced(run_id, epoch)
        ops: list[Any] = []
        keys = [run_id]
        if progress is not None:
            run = self._put(ops, replace(run, progress=progress))
            keys.append(RUNS_KEY)
        _, out = self._append(ops, run, events)
        await self._commit(ops, keys)
        return out

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        self._check()
        run = self._fenced(run_id, epoch)
        ops: list[Any] = []
        keys = [run_id]
        recorded = replace(step, output=copy.deepcopy(step.output))
        self._steps.setdefault(run_id, {})[step.name] = recorded
        ops.append(["S", run_id, step_row(recorded)])
        if progress is not None:
            run = self._put(ops, replace(run, progress=progress))
            keys.append(RUNS_KEY)
        _, out = self._append(ops, run, events)
        await self._commit(ops, keys)
        return out

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
        self._check()
        run = self._fenced(run_id, epoch)
        ops: list[Any] = []
        wake_at, awaited = transitions.suspension(run, wait, now, self._inbox.get(run_id, ()), self._runs)
        if awaited:
            self._forget_awaited(ops, run_id)
            for child in dict.fromkeys(awaited):
                self._set_awaited(ops, child, run_id)
        run = transitions.suspended(run, wait, wake_at, now, progress, attempt, error)
        run = self._put(ops, run)
        run, out = self._append(ops, run, events)
        await self._commit(ops, (RUNS_KEY, run_id))
        return run, out

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        self._check()
        run = self._get(run_id)
        if run.is_terminal:
            raise InvalidRunState(f"run {run_id!r} is already {run.status}; it takes no more events")
        ops: list[Any] = [["I", run_id, name, copy.deepcopy(data)]]
        self._apply(ops[0])
        keys = [run_id]
        if run.status == "suspended" and run.wait is not None and name in run.wait.events:
            self._put(ops, replace(run, wake_at=now))
            keys.append(RUNS_KEY)
        await self._commit(ops, keys)

    async def take_event(
        self, run_id: str, epoch: int, name: str, step: StepRecord, events: Sequence[NewEvent]
    ) -> tuple[bool, Any, list[Event]]:
        self._check()
        run = self._fenced(run_id, epoch)
        for index, queued in enumerate(self._inbox.get(run_id, ())):
            if queued[0] == name and not queued[2]:
                ops: list[Any] = [["D", run_id, index]]
                self._apply(ops[0])
                data = copy.deepcopy(queued[1])
                recorded = replace(step, status="completed", output={"event": name, "data": data})
                self._steps.setdefault(run_id, {})[step.name] = recorded
                ops.append(["S", run_id, step_row(recorded)])
                _, out = self._append(ops, run, events)
                await self._commit(ops, (run_id,))
                return True, data, out
        return False, None, []

    async def next_wake(self, now: float) -> float | None:
        self._check()
        times = [t for t in self._suspended.values() if t is not None]
        return min(times) if times else None

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
        self._check()
        run = self._fenced(run_id, epoch)
        ops: list[Any] = []
        run = transitions.finished(run, status, output, error, now, expires_at, progress)
        run = self._put(ops, run)
        self._ended(ops, run, status, run.finished_at or now)
        run, out = self._append(ops, run, events)
        await self._commit(ops, (RUNS_KEY, run_id))
        return run, out

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        self._check()
        run = self._get(run_id)
        requested = transitions.cancel_now(run, now)
        ops: list[Any] = []
        out: list[Event] = []
        if requested is not None:
            run = self._put(ops, requested)
        else:
            run = self._put(ops, transitions.cancelled(run, now))
            self._ended(ops, run, "cancelled", now)
            run, out = self._append(ops, run, [event])
        await self._commit(ops, (RUNS_KEY, run_id))
        return run, out

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        self._check()
        run = transitions.retried(self._get(run_id), now)
        ops: list[Any] = []
        run = self._put(ops, run)
        run, out = self._append(ops, run, [event])
        await self._commit(ops, (RUNS_KEY, run_id))
        return run, out

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        self._check()
        run = self._get(run_id)
        ops: list[Any] = []
        self._put(ops, replace(run, expires_at=expires_at), bump=False)
        await self._commit(ops, ())

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        self._check()
        return sorted(self._steps.get(run_id, {}).values(), key=lambda s: s.index)

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]:
        self._check()
        start = max(from_seq, 0)
        return self._events.get(run_id, [])[start : start + max(limit, 0)]

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        self._check()
        run = self._runs.get(run_id)
        if run is None or run.last_seq > after_seq:
            return
        await self._hub.wait(run_id, timeout)

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        self._check()
        start = bisect.bisect_right(self._versions, after_version)
        changes = []
        for version in self._versions[start : start + max(limit, 0)]:
            run_id = self._at_version[version]
            changes.append(RunChange(version, run_id, self._runs.get(run_id)))
        return changes

    async def runs_version(self) -> int:
        self._check()
        return self._version

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        self._check()
        if self._version > after_version:
            return
        await self._hub.wait(RUNS_KEY, timeout)

    # -- deletion --------------------------------------------------------------------------------
    def _delete(self, ops: list[Any], run_id: str, at: float) -> None:
        run = self._runs[run_id]
        self._ended(ops, run, "deleted", at)  # an awaiting parent counts a deleted child as failed
        self._version += 1
        op = ["X", run_id, self._version, at]
        self._apply(op)
        ops.append(op)

    async def delete_run(self, run_id: str) -> bool:
        self._check()
        if run_id not in self._runs:
            return False
        ops: list[Any] = []
        self._delete(ops, run_id, system_now())
        await self._commit(ops, (RUNS_KEY, run_id))
        return True

    async def sweep(self, now: float) -> int:
        self._check()
        expired = [r.id for r in self._runs.values() if r.expires_at is not None and r.expires_at <= now]
        ops: list[Any] = []
        for run_id in expired:
            if run_id in self._runs:
                self._delete(ops, run_id, now)
        for run_id, (_, at) in list(self._tombs.items()):
            if at < now - _TOMBSTONE_TTL:  # tombstones only serve list watchers catching up
                op = ["T", run_id]
                self._apply(op)
                ops.append(op)
        await self._commit(ops, (RUNS_KEY, *expired))
        return len(expired)
