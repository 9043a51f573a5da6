"""The engine's controls: retry, cancel (with the run's children), send an event, delete, sweep.
A mixin of :class:`~stepstone.Engine`. Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ._clock import Clock
from ._errors import InvalidInput, InvalidRunState, RunNotFound
from ._models import Event, Run, RunStatus
from ._util import json_copy, unencodable
from .stores._contract import NewEvent, RunFilter, Store

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._worker import Worker

__all__ = ["Control"]

log = logging.getLogger("stepstone")


class Control:
    """Mixed into Engine, which provides the attributes below."""

    _worker: Worker | None
    _runtime: Runtime
    sweep_interval: float | None

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

        @property
        def clock(self) -> Clock: ...

        @property
        def stale_threshold(self) -> float: ...

        def _require_started(self) -> None: ...

        def _dispatch(self, events: list[Event]) -> None: ...

        def _wake(self) -> None: ...

    async def retry(self, run_id: str) -> Run:
        """Put a failed or cancelled run back to pending; it resumes from its first unfinished step."""
        self._require_started()
        t = self.clock.now()
        run, events = await self.store.retry_run(run_id, t, NewEvent("run:retry", {}, t))
        self._dispatch(events)
        self._wake()
        return run

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run and, with it, its unfinished child runs.

        A pending run is ``cancelled`` at once. In a running or suspended run,
        :class:`~stepstone.RunCancelled` is raised inside the job at the step it awaits — by this
        engine at once, by another process's at its next heartbeat; a suspended run is woken for
        it — and the job may catch it to run cleanup steps; then the run ends ``cancelled``. When
        the run executes in this engine, this returns once its job has wound down (at most
        ``stale_threshold`` seconds); otherwise it returns the run as it is now, with
        ``cancel_requested`` set while its job winds down elsewhere.
        """
        self._require_started()
        t = self.clock.now()
        run, events = await self.store.cancel_run(run_id, t, NewEvent("run:cancel", {}, t))
        self._dispatch(events)
        self._wake()
        await self._cancel_children(run_id)
        if self._worker is not None and not run.is_terminal:
            task = self._worker.request_cancel(run_id)
            for _ in range(20):  # claimed here a moment ago: its execution is about to start
                if task is not None or run.owner != self._runtime.owner:
                    break
                await asyncio.sleep(0)
                task = self._worker.task_of(run_id)
            if task is not None:  # executing here: return once its job has wound down (bounded)
                await asyncio.wait({task}, timeout=self.stale_threshold)
                run = await self.store.get_run(run_id) or run
        return run

    async def _cancel_children(self, parent_id: str) -> None:
        active: tuple[RunStatus, ...] = ("pending", "running", "suspended")
        children, _ = await self.store.list_runs(RunFilter(statuses=active, limit=1_000_000, parent_id=parent_id))
        for child in children:
            if not child.cancel_requested:
                with contextlib.suppress(InvalidRunState, RunNotFound):  # it finished (or went) meanwhile
                    await self.cancel(child.id)

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None:
        """Send event ``name`` with ``data`` to a run: stored durably whether or not the run waits
        for it yet; the next ``step.wait_for_event(name)`` of that run takes the oldest one not yet
        taken, each exactly once. Raises RunNotFound, InvalidRunState for a finished run and
        InvalidInput for a bad name or data that is not JSON."""
        self._require_started()
        if not isinstance(run_id, str) or not run_id or unencodable(run_id) is not None:
            raise RunNotFound(f"no run with id {run_id!r}")
        if not isinstance(name, str) or not name or unencodable(name) is not None:
            raise InvalidInput(f"an event name must be a non-empty string of valid Unicode text, not {name!r}")
        try:
            value = json_copy(data)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the data of event {name!r} cannot be stored as JSON: {exc}") from exc
        await self.store.send_event(run_id, name, value, self.clock.now())
        self._wake()

    async def delete_run(self, run_id: str) -> None:
        """Delete a run with its steps and events (stopping it first if it is executing here)."""
        self._require_started()
        if self._worker is not None:
            self._worker.abort(run_id)
        if not await self.store.delete_run(run_id):
            raise RunNotFound(f"no run with id {run_id!r}")
        self._wake()

    async def sweep(self) -> int:
        """Delete every run whose retention has expired, with all it owns; returns how many."""
        self._require_started()
        return await self.store.sweep(self.clock.now())

    async def _sweep_loop(self) -> None:
        assert self.sweep_interval
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.store.sweep(self.clock.now())
            except Exception:
                log.exception("stepstone: sweep failed")
