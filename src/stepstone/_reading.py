"""The engine's reads: runs, pages of runs, steps, waiting for a run, and following a run's log
and the store-wide run-change feed. A mixin of :class:`~stepstone.Engine`. Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import RunNotFound, WaitTimeout
from ._models import Event, Run, RunChange, RunList, RunStatus, StepRecord, page_filter
from .stores._contract import RunFilter, Store

__all__ = ["Reading", "Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """A run as a streaming consumer sees it: the run, every ``stream`` value so far, and where the
    log ends (``next_seq``); ``run.is_terminal`` is the terminal marker."""

    run: Run
    items: list[Any]
    next_seq: int




class Reading:
    """Mixed into Engine, which provides the attributes below."""

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

        @property
        def polling_interval(self) -> float: ...

        def _require_started(self) -> None: ...

    async def get_run(self, run_id: str) -> Run | None:
        self._require_started()
        return await self.store.get_run(run_id)

    async def _existing(self, run_id: str) -> Run:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run

    async def get_runs(
        self,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
    ) -> RunList:
        """A page of runs, newest first; ``.total`` counts every match. ``parent_id`` lists the
        child runs of one run (``step.invoke``)."""
        self._require_started()
        statuses = page_filter(status, limit, offset)
        version = await self.store.runs_version()  # before the page: a change after it is in the feed
        runs, total = await self.store.list_runs(RunFilter(job_name, statuses, labels, limit, offset, parent_id))
        return RunList(runs, total=total, limit=limit, offset=offset, version=version)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        await self._existing(run_id)
        return await self.store.get_steps(run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is completed, failed or cancelled; raises WaitTimeout after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            run = await self._existing(run_id)
            if run.is_terminal:
                return run
            left = self.polling_interval if deadline is None else min(self.polling_interval, deadline - loop.time())
            if left <= 0:
                raise WaitTimeout(f"run {run_id!r} is still {run.status} after {timeout} s")
            await self.store.wait_events(run_id, run.last_seq, left)

    async def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """Every event of the run from ``from_seq`` on: the stored ones, then live ones as they are
        written, ending after the terminal event. No gap, no duplicate, whenever you join."""
        await self._existing(run_id)
        next_seq = max(from_seq, 0)
        while True:
            batch = await self.store.read_events(run_id, next_seq, 500)
            for event in batch:
                yield event
            if batch:
                next_seq = batch[-1].seq + 1
                if not batch[-1].is_terminal:
                    continue
            run = await self.store.get_run(run_id)
            if run is None:
                return
            if run.is_terminal and run.last_seq < next_seq:
                return
            if not batch:
                await self.store.wait_events(run_id, next_seq - 1, self.polling_interval)

    async def subscribe_runs(
        self, from_version: int | None = None, job_name: str | None = None
    ) -> AsyncIterator[RunChange]:
        """Tail run-level changes (created, status, progress, deleted) across all runs, forever.

        Each change has a store-wide increasing ``version``; pass the last one seen as
        ``from_version`` to resume with no gap. ``None`` starts with the changes after now. A run
        changed several times while you were away shows up once, with its latest state.
        """
        self._require_started()
        version = await self.store.runs_version() if from_version is None else from_version
        while True:
            batch = await self.store.run_changes(version, 500)
            for change in batch:
                version = change.version
                if (
                    job_name is None
                    or (change.run is not None and change.run.job_name == job_name)
                    or (change.run is None)
                ):
                    yield change
            if not batch:
                await self.store.wait_run_changes(version, self.polling_interval)

    async def snapshot(self, run_id: str) -> Snapshot:
        """The run and every value a streaming job has yielded so far."""
        run = await self._existing(run_id)
        items: list[Any] = []
        seq = 0
        while True:
            batch = await self.store.read_events(run_id, seq, 1000)
            items.extend(e.data.get("value") for e in batch if e.type == "stream")
            if len(batch) < 1000:
                break
            seq = batch[-1].seq + 1
        return Snapshot(run, items, seq if not batch else batch[-1].seq + 1)
