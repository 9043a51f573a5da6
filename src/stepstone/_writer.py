"""Group commit for one execution's events. Stdlib + asyncio only.

``step.progress`` and ``step.log`` are synchronous, so their events are buffered here and written
with the next step commit, or after ``linger`` seconds, whichever comes first: a fast step costs one
transaction, a slow one shows its ``step:start`` within the linger. Every write carries the lease
epoch; a refused write means the run was taken over or cancelled, and ``on_fenced`` is called.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ._errors import StaleLeaseError
from ._models import Event, Progress, Run, RunStatus, StepRecord, Wait
from ._util import now as system_now
from .stores._contract import NewEvent, Store

__all__ = ["RunWriter"]

log = logging.getLogger("stepstone")


class RunWriter:
    def __init__(
        self,
        store: Store,
        run_id: str,
        epoch: int,
        dispatch: Callable[[list[Event]], None],
        on_fenced: Callable[[BaseException], None],
        linger: float,
        now: Callable[[], float] = system_now,
    ) -> None:
        self._store = store
        self._now = now
        self.run_id = run_id
        self.epoch = epoch
        self._dispatch = dispatch
        self._on_fenced = on_fenced
        self._linger = linger
        self._pending: list[NewEvent] = []
        self._progress: Progress | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def emit(self, type: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        if self.closed:
            return
        self._pending.append(NewEvent(type, data, self._now()))
        if progress is not None:
            self._progress = progress
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._background_flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _background_flush(self) -> None:
        try:
            await self.flush()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._on_fenced(exc)

    def _take(self, *extra: NewEvent) -> tuple[list[NewEvent], Progress | None]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        events, self._pending = [*self._pending, *extra], []
        progress, self._progress = self._progress, None
        return events, progress

    async def flush(self) -> None:
        async with self._lock:
            if self.closed:
                return
            events, progress = self._take()
            if not events and progress is None:
                return
            self._dispatch(await self._store.append_events(self.run_id, self.epoch, events, progress))

    async def commit_step(self, record: StepRecord, event: NewEvent) -> None:
        async with self._lock:
            if self.closed:
                raise StaleLeaseError(f"run {self.run_id!r} is no longer held by this worker")
            events, progress = self._take(event)
            self._dispatch(await self._store.commit_step(self.run_id, self.epoch, record, events, progress))

    async def finish(
        self, status: RunStatus, output: Any, error: str | None, expires_at: float | None, event: NewEvent
    ) -> Run:
        async with self._lock:
            if self.closed:
                raise StaleLeaseError(f"run {self.run_id!r} is no longer held by this worker")
            events, progress = self._take(event)
            run, written = await self._store.finish_run(
                self.run_id, self.epoch, status, output, error, event.at, expires_at, events, progress
            )
            self.closed = True
            self._dispatch(written)
            return run

    def discard(self) -> None:
        """Drop what is buffered and not written (it could not be stored); keep writing after."""
        self._take()

    async def suspend(
        self, wait: Wait, event: NewEvent, attempt: int | None = None, error: str | None = None
    ) -> Run:
        """Park the run (with everything buffered); the writer is done after."""
        async with self._lock:
            if self.closed:
                raise StaleLeaseError(f"run {self.run_id!r} is no longer held by this worker")
            events, progress = self._take(event)
            run, written = await self._store.suspend_run(
                self.run_id, self.epoch, wait, event.at, events, progress, attempt, error
            )
            self.closed = True
            self._dispatch(written)
            return run

    async def take_event(self, name: str, step: StepRecord, event: NewEvent) -> tuple[bool, Any]:
        """Take the oldest queued event ``name``, recording ``step`` with ``event`` and the events
        buffered so far; when none is queued nothing is written and the buffer stays as it is."""
        async with self._lock:
            if self.closed:
                raise StaleLeaseError(f"run {self.run_id!r} is no longer held by this worker")
            count = len(self._pending)
            found, data, written = await self._store.take_event(
                self.run_id, self.epoch, name, step, [*self._pending[:count], event]
            )
            if not found:
                return False, None
            del self._pending[:count]  # written; anything emitted meanwhile stays buffered
            if not self._pending and self._progress is None and self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._dispatch(written)
            return True, data

    def close(self) -> None:
        """Drop anything unwritten; used once the run is lost to this worker."""
        self.closed = True
        self._take()
        for task in list(self._flushing):
            task.cancel()
