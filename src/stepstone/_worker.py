"""The worker: claims runnable runs, executes up to ``concurrency`` at once, heartbeats leases,
reclaims runs whose owner died, and wakes suspended runs on time. Stdlib + asyncio only; all I/O
goes through the store.

A suspended run is claimable once its ``wake_at`` has passed. The worker keeps one timer, for the
earliest wake-up it knows of (a run it suspended itself, or ``store.next_wake`` read when it runs
out of work), so a sleep ends on time in-process instead of at the next poll; runs woken by an
event or a child in this process are claimed at once (the engine wakes the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ._clock import TimerHandle
from ._execution import Execution
from ._liveness import Liveness
from ._models import Run
from ._runtime import Runtime

__all__ = ["Worker"]

log = logging.getLogger("stepstone")


class Worker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.executions: dict[str, Execution] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._liveness: Liveness | None = None
        self._last_reap = 0.0
        self._stopping = False
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        #: Runs cancelled while not executing here: one claimed a moment ago starts cancelled.
        self._cancel_pending: dict[str, float] = {}
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        liveness = getattr(self.runtime.store, "liveness", None)
        self._liveness = liveness() if callable(liveness) else None
        if self._liveness is not None:
            await self._liveness.hold(self.runtime.owner)
        # A store that hears other processes' writes says when a run may have become claimable.
        subscribe = getattr(self.runtime.store, "subscribe_claimable", None)
        self._unsubscribe = subscribe(self.wake) if callable(subscribe) else None
        self._tasks = [
            asyncio.create_task(self._loop(), name="stepstone-worker"),
            asyncio.create_task(self._heartbeat(), name="stepstone-heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, when: float | None) -> None:
        """Make sure the worker looks for runs to claim at ``when`` (a suspended run's wake time)."""
        if when is None or self._stopping:
            return
        if self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.runtime.clock.call_at(when, self._ring)

    def _ring(self) -> None:
        self._timer = self._timer_at = None
        self.wake()

    async def _loop(self) -> None:
        rt = self.runtime
        while not self._stopping:
            self._wake.clear()
            try:
                await self._reap_dead_owners()
                if await self._fill():
                    now = rt.clock.now()
                    upcoming = await rt.store.next_wake(now)
                    if upcoming is not None and upcoming > now:
                        self.wake_at(upcoming)
            except Exception:  # the store hiccuped (locked, network): try again next tick
                log.exception("stepstone: claiming runs failed")
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: see _notify.py
                async with asyncio.timeout(rt.polling_interval):
                    await self._wake.wait()

    async def _fill(self) -> bool:
        """Claim runs while there is room; True when nothing was left to claim."""
        rt = self.runtime
        while not self._stopping and len(self.executions) < rt.concurrency:
            t = rt.clock.now()
            run = await rt.store.claim_next(
                rt.owner, rt.job_keys(), t, t + rt.stale_threshold, exclude=tuple(self.executions)
            )
            if run is None:
                return True
            self._start(run)
        return False

    def _start(self, run: Run) -> None:
        job = self.runtime.job_for(run)
        assert job is not None, "claim_next returns only runs of registered (name, version) pairs"
        execution = Execution(self.runtime, run, job)
        task = asyncio.create_task(execution.execute(), name=f"stepstone-run-{run.id}")
        execution.task = task
        self.executions[run.id] = execution
        task.add_done_callback(lambda t: self._done(execution, t))
        if self._cancel_pending.pop(run.id, None) is not None:  # cancelled between its claim and now
            execution.request_cancel()

    def _done(self, execution: Execution, task: asyncio.Task[None]) -> None:
        if self.executions.get(execution.run.id) is execution:
            del self.executions[execution.run.id]
        if not task.cancelled() and task.exception() is not None:
            log.error("stepstone: execution of run %s crashed", execution.run.id, exc_info=task.exception())
        if execution.suspended is not None:
            self.wake_at(execution.suspended.until)
        self.wake()

    async def _heartbeat(self) -> None:
        rt = self.runtime
        while not self._stopping:
            await asyncio.sleep(rt.heartbeat_interval)
            for execution in list(self.executions.values()):
                try:
                    held = await rt.store.renew_lease(
                        execution.run.id, execution.run.epoch, rt.clock.now() + rt.stale_threshold
                    )
                except Exception:
                    log.exception("stepstone: heartbeat for run %s failed", execution.run.id)
                    continue
                if held is None:  # taken over (or deleted): stop at once, write nothing
                    execution.writer.close()
                    if execution.task is not None:
                        execution.task.cancel()
                elif held.cancel_requested:  # cancelled from another process
                    execution.request_cancel()

    async def _reap_dead_owners(self) -> None:
        rt = self.runtime
        if self._liveness is None or rt.clock.now() - self._last_reap < rt.polling_interval:
            return
        self._last_reap = rt.clock.now()
        for owner in await rt.store.lease_owners(rt.clock.now()) - {rt.owner}:
            if await self._liveness.is_dead(owner):
                count = await rt.store.expire_leases(owner, rt.clock.now())
                log.info("stepstone: owner %s is gone; %d run(s) resume now", owner, count)

    def request_cancel(self, run_id: str) -> asyncio.Task[None] | None:
        """The run was cancelled: its execution here (if any) raises ``RunCancelled`` in the job.
        Returns that execution's task (None when it does not execute here)."""
        execution = self.executions.get(run_id)
        if execution is None:
            now = self.runtime.clock.now()
            for stale in [r for r, at in self._cancel_pending.items() if at < now - self.runtime.stale_threshold]:
                del self._cancel_pending[stale]
            self._cancel_pending[run_id] = now
            return None
        execution.request_cancel()
        return execution.task

    def task_of(self, run_id: str) -> asyncio.Task[None] | None:
        execution = self.executions.get(run_id)
        return None if execution is None else execution.task

    def abort(self, run_id: str) -> None:
        """Stop executing the run here at once and write nothing more (it is being deleted)."""
        execution = self.executions.get(run_id)
        if execution is not None:
            execution.writer.close()
            if execution.task is not None:
                execution.task.cancel()

    async def stop(self, timeout: float = 0.0) -> None:
        """Stop claiming; let executions finish for up to ``timeout`` s; cancel the rest and hand
        their runs back so another worker resumes them at once."""
        self._stopping = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self.wake()
        # The claim loop ends its iteration on its own: cancelled mid-claim, a run the store had
        # already handed over would be dropped, left running under this owner until its lease ran
        # out. Whatever it claims is in self.executions, handed back below.
        loop, *others = self._tasks
        for task in others:
            task.cancel()
        _, pending = await asyncio.wait({loop}, timeout=max(self.runtime.polling_interval, 1.0) + 5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [e.task for e in self.executions.values() if e.task is not None]
        if running and timeout > 0:
            await asyncio.wait(running, timeout=timeout)
        left = list(self.executions.values())
        for execution in left:
            if execution.task is not None:
                execution.task.cancel()
        await asyncio.gather(*(e.task for e in left if e.task is not None), return_exceptions=True)
        for execution in left:
            with contextlib.suppress(Exception):
                await execution.writer.flush()
            execution.writer.close()
            with contextlib.suppress(Exception):
                await self.runtime.store.release_lease(execution.run.id, execution.run.epoch, self.runtime.clock.now())
        self.executions.clear()
        if self._liveness is not None:
            await self._liveness.release(self.runtime.owner)
