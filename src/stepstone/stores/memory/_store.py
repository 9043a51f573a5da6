"""``memory:`` — the in-process store. Stdlib only; importable in Pyodide.

Every method runs without an ``await`` between its reads and writes, so each one is atomic with
respect to the event loop: that is this store's transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from ..._errors import InvalidRunState
from ..._models import Event, Progress, Run, RunChange, RunStatus, StepRecord, Wait
from ..._notify import RUNS_KEY, Hub
from .. import _transitions as transitions
from .._contract import JobKeys, NewEvent, NewRun, RunFilter, fenced
from .._transitions import claimable
from ._streams import MemoryStreamsMixin

__all__ = ["MemoryStore"]


class MemoryStore(MemoryStreamsMixin):
    """Keeps everything in dicts; lost when the process ends. For tests, demos and the browser."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._pos: dict[str, int] = {}
        self._active: set[str] = set()
        self._idem: dict[tuple[str, str], str] = {}
        self._children: dict[tuple[str, str], str] = {}  # (parent, step) -> child
        self._suspended: dict[str, float | None] = {}  # run -> wake_at
        self._by_key: dict[str, set[str]] = {}  # concurrency key -> unfinished runs
        self._inbox: dict[str, list[list[Any]]] = {}  # run -> [name, data, delivered]
        self._awaited: dict[str, str] = {}  # child -> the suspended parent waiting for it
        self._awaiting: dict[str, int] = {}  # parent -> how many awaited children are unfinished
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._events: dict[str, list[Event]] = {}
        self._changes: dict[str, int] = {}
        self._counter = 0
        self._version = 0
        self._hub = Hub()
        self._init_streams()

    async def init(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _bump(self, run: Run) -> Run:
        self._version += 1
        run = replace(run, version=self._version)
        self._runs[run.id] = run
        self._changes[run.id] = self._version
        if run.status in ("pending", "running"):
            self._active.add(run.id)
        else:
            self._active.discard(run.id)
        if run.status == "suspended":
            self._suspended[run.id] = run.wake_at
        else:
            self._suspended.pop(run.id, None)
        if run.concurrency_key is not None:
            keyed = self._by_key.setdefault(run.concurrency_key, set())
            if run.is_terminal:
                keyed.discard(run.id)
            else:
                keyed.add(run.id)
        if run.is_terminal:
            self._ended(run)
        self._hub.publish(RUNS_KEY)
        return run

    def _ended(self, run: Run) -> None:
        """A child that its suspended parent awaits has finished: wake the parent when it was the
        last one awaited, or did not complete."""
        parent_id = self._awaited.pop(run.id, None)
        if parent_id is None:
            return
        left = self._awaiting.get(parent_id, 0) - 1
        self._awaiting[parent_id] = left
        parent = self._runs.get(parent_id)
        if parent is not None and parent.status == "suspended" and (left <= 0 or run.status != "completed"):
            self._bump(replace(parent, wake_at=run.finished_at or run.updated_at))

    def _forget_awaited(self, parent_id: str) -> None:
        self._awaiting.pop(parent_id, None)
        for child, parent in list(self._awaited.items()):
            if parent == parent_id:
                del self._awaited[child]

    def _get(self, run_id: str) -> Run:
        return fenced(self._runs.get(run_id), run_id, None)

    def _fenced(self, run_id: str, epoch: int | None) -> Run:
        return fenced(self._runs.get(run_id), run_id, epoch)

    def _append(self, run: Run, events: Sequence[NewEvent]) -> tuple[Run, list[Event]]:
        log = self._events.setdefault(run.id, [])
        out = [Event(run.id, len(log) + i, e.type, e.data, e.at) for i, e in enumerate(events)]
        log.extend(out)
        if out:
            run = replace(run, last_seq=out[-1].seq, updated_at=out[-1].at)
            self._runs[run.id] = run
            self._hub.publish(run.id)
        return run, out

    # -- runs ----------------------------------------------------------------------------------
    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        if run.parent_id is not None and run.parent_step is not None:
            existing = self._children.get((run.parent_id, run.parent_step))
            if existing is not None:
                return self._runs[existing], False
        if run.idempotency_key is not None:
            existing = self._idem.get((run.job_name, run.idempotency_key))
            if existing is not None:
                return self._runs[existing], False
            self._idem[(run.job_name, run.idempotency_key)] = run.id
        if run.parent_id is not None and run.parent_step is not None:
            self._children[(run.parent_id, run.parent_step)] = run.id
        self._counter += 1
        self._pos[run.id] = self._counter
        new = Run(
            id=run.id,
            job_name=run.job_name,
            job_version=run.job_version,
            status="pending",
            input=copy.deepcopy(run.input),
            labels=dict(run.labels),
            idempotency_key=run.idempotency_key,
            concurrency_key=run.concurrency_key,
            created_at=run.created_at,
            updated_at=run.created_at,
            parent_id=run.parent_id,
            parent_step=run.parent_step,
        )
        new = self._bump(new)
        new, _ = self._append(new, [event])
        return new, True

    async def get_run(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
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

        matching = sorted((r for r in self._runs.values() if keep(r)), key=lambda r: -self._pos[r.id])
        return matching[filter.offset : filter.offset + filter.limit], len(matching)

    async def claim_next(
        self,
        owner: str,
        jobs: JobKeys,
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        run = claimable(self._runs, self._pos, self._active, self._suspended, self._by_key, jobs, now, exclude)
        if run is None:
            return None
        if run.status == "suspended":
            self._forget_awaited(run.id)
        claimed = self._bump(transitions.claimed(run, owner, now, lease_until))
        return replace(claimed, wait=run.wait if run.status == "suspended" else None)

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        run = self._runs.get(run_id)
        if run is None or run.epoch != epoch or run.status != "running":
            return None
        run = self._runs[run_id] = replace(run, lease_expires_at=lease_until)
        return run

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.epoch != epoch or run.status != "running":
            return False
        self._bump(transitions.released(run, now))
        return True

    async def expire_leases(self, owner: str, now: float) -> int:
        n = 0
        for run in list(self._runs.values()):
            if run.owner == owner and run.status == "running":
                self._runs[run.id] = replace(run, lease_expires_at=now - 1)
                n += 1
        return n

    async def lease_owners(self, now: float) -> set[str]:
        return {
            r.owner
            for r in self._runs.values()
            if r.status == "running" and r.owner and (r.lease_expires_at or 0) >= now
        }

    # -- events and steps ----------------------------------------------------------------------
    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        run = self._fenced(run_id, epoch)
        if progress is not None:
            run = self._bump(replace(run, progress=progress))
        return self._append(run, events)[1]

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        run = self._fenced(run_id, epoch)
        self._steps.setdefault(run_id, {})[step.name] = replace(step, output=copy.deepcopy(step.output))
        if progress is not None:
            run = self._bump(replace(run, progress=progress))
        return self._append(run, events)[1]

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
        run = self._fenced(run_id, epoch)
        wake_at, awaited = transitions.suspension(run, wait, now, self._inbox.get(run_id, ()), self._runs)
        if awaited:
            self._forget_awaited(run_id)
            self._awaiting[run_id] = len(awaited)
            self._awaited.update(dict.fromkeys(awaited, run_id))
        run = transitions.suspended(run, wait, wake_at, now, progress, attempt, error)
        return self._append(self._bump(run), events)

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        run = self._get(run_id)
        if run.is_terminal:
            raise InvalidRunState(f"run {run_id!r} is already {run.status}; it takes no more events")
        self._inbox.setdefault(run_id, []).append([name, copy.deepcopy(data), False])
        if run.status == "suspended" and run.wait is not None and name in run.wait.events:
            self._bump(replace(run, wake_at=now))

    async def take_event(
        self, run_id: str, epoch: int, name: str, step: StepRecord, events: Sequence[NewEvent]
    ) -> tuple[bool, Any, list[Event]]:
        run = self._fenced(run_id, epoch)
        for queued in self._inbox.get(run_id, ()):
            if queued[0] == name and not queued[2]:
                queued[2] = True
                data = copy.deepcopy(queued[1])
                output = {"event": name, "data": data}
                self._steps.setdefault(run_id, {})[step.name] = replace(step, status="completed", output=output)
                return True, data, self._append(run, events)[1]
        return False, None, []

    async def next_wake(self, now: float) -> float | None:
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
        run = self._fenced(run_id, epoch)
        run = transitions.finished(run, status, output, error, now, expires_at, progress)
        return self._append(self._bump(run), events)

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        run = self._get(run_id)
        requested = transitions.cancel_now(run, now)
        if requested is not None:
            return self._bump(requested), []
        return self._append(self._bump(transitions.cancelled(run, now)), [event])

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        run = transitions.retried(self._get(run_id), now)
        return self._append(self._bump(run), [event])

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        run = self._get(run_id)
        self._runs[run_id] = replace(run, expires_at=expires_at)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return sorted(self._steps.get(run_id, {}).values(), key=lambda s: s.index)

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]:
        return self._events.get(run_id, [])[max(from_seq, 0) : max(from_seq, 0) + limit]

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        run = self._runs.get(run_id)
        if run is None or run.last_seq > after_seq:
            return
        await self._hub.wait(run_id, timeout)

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        newer = sorted((v, rid) for rid, v in self._changes.items() if v > after_version)[:limit]
        return [RunChange(v, rid, self._runs.get(rid)) for v, rid in newer]

    async def runs_version(self) -> int:
        return self._version

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        if self._version > after_version:
            return
        await self._hub.wait(RUNS_KEY, timeout)

    # -- deletion ------------------------------------------------------------------------------
    def _delete(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        if run is None:
            return False
        self._ended(replace(run, status="cancelled"))  # an awaiting parent counts a deleted child as failed
        del self._runs[run_id]
        self._pos.pop(run_id, None)
        self._active.discard(run_id)
        self._suspended.pop(run_id, None)
        self._inbox.pop(run_id, None)
        self._awaited.pop(run_id, None)
        self._forget_awaited(run_id)
        if run.concurrency_key is not None:
            self._by_key.get(run.concurrency_key, set()).discard(run_id)
        if run.parent_id is not None and run.parent_step is not None:
            self._children.pop((run.parent_id, run.parent_step), None)
        self._steps.pop(run_id, None)
        self._events.pop(run_id, None)
        if run.idempotency_key is not None:
            self._idem.pop((run.job_name, run.idempotency_key), None)
        self._version += 1
        self._changes[run_id] = self._version
        self._hub.publish(RUNS_KEY)
        self._hub.publish(run_id)
        return True

    async def delete_run(self, run_id: str) -> bool:
        return self._delete(run_id)

    async def sweep(self, now: float) -> int:
        expired = [r.id for r in self._runs.values() if r.expires_at is not None and r.expires_at <= now]
        for run_id in expired:
            self._delete(run_id)
        return len(expired)
