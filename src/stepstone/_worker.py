"""The worker: claims runnable runs, executes up to ``concurrency`` at once, heartbeats leases,
reclaims runs whose owner died. Stdlib + asyncio only; all I/O goes through the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ._execution import Execution
from ._liveness import Liveness
from ._models import Run
from ._runtime import Runtime
from ._util import now

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

    async def start(self) -> None:
        liveness = getattr(self.runtime.store, "liveness", None)
        self._liveness = liveness() if callable(liveness) else None
        if self._liveness is not None:
            await self._liveness.hold(self.runtime.owner)
        self._tasks = [
            asyncio.create_task(self._loop(), name="stepstone-worker"),
            asyncio.create_task(self._heartbeat(), name="stepstone-heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        rt = self.runtime
        while not self._stopping:
            self._wake.clear()
            try:
                await self._reap_dead_owners()
                await self._fill()
            except Exception:  # the store hiccuped (locked, network): try again next tick
                log.exception("stepstone: claiming runs failed")
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: see _notify.py
                async with asyncio.timeout(rt.polling_interval):
                    await self._wake.wait()

    async def _fill(self) -> None:
        rt = self.runtime
        while not self._stopping and len(self.executions) < rt.concurrency:
            t = now()
            run = await rt.store.claim_next(
                rt.owner, rt.job_names, t, t + rt.stale_threshold, exclude=tuple(self.executions)
            )
            if run is None:
                return
            self._start(run)

    def _start(self, run: Run) -> None:
        execution = Execution(self.runtime, run, self.runtime.jobs[run.job_name])
        task = asyncio.create_task(execution.execute(), name=f"stepstone-run-{run.id}")
        execution.task = task
        self.executions[run.id] = execution
        task.add_done_callback(lambda t: self._done(execution, t))

    def _done(self, execution: Execution, task: asyncio.Task[None]) -> None:
        if self.executions.get(execution.run.id) is execution:
            del self.executions[execution.run.id]
        if not task.cancelled() and task.exception() is not None:
            log.error("stepstone: execution of run %s crashed", execution.run.id, exc_info=task.exception())
        self.wake()

    async def _heartbeat(self) -> None:
        rt = self.runtime
        while not self._stopping:
            await asyncio.sleep(rt.heartbeat_interval)
            for execution in list(self.executions.values()):
                try:
                    held = await rt.store.renew_lease(
                        execution.run.id, execution.run.epoch, now() + rt.stale_threshold
                    )
                except Exception:
                    log.exception("stepstone: heartbeat for run %s failed", execution.run.id)
                    continue
                if not held:  # cancelled elsewhere or taken over: stop at once, write nothing
                    execution.writer.close()
                    if execution.task is not None:
                        execution.task.cancel()

    async def _reap_dead_owners(self) -> None:
        if self._liveness is None or now() - self._last_reap < self.runtime.polling_interval:
            return
        self._last_reap = now()
        for owner in await self.runtime.store.lease_owners(now()) - {self.runtime.owner}:
            if await self._liveness.is_dead(owner):
                count = await self.runtime.store.expire_leases(owner, now())
                log.info("stepstone: owner %s is gone; %d run(s) resume now", owner, count)

    def cancel_local(self, run_id: str) -> None:
        execution = self.executions.get(run_id)
        if execution is not None:
            execution.writer.close()
            if execution.task is not None:
                execution.task.cancel()

    async def stop(self, timeout: float = 0.0) -> None:
        """Stop claiming; let executions finish for up to ``timeout`` s; cancel the rest and hand
        their runs back so another worker resumes them at once."""
        self._stopping = True
        self.wake()
        for task in self._tasks:
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
                await self.runtime.store.release_lease(execution.run.id, execution.run.epoch, now())
        self.executions.clear()
        if self._liveness is not None:
            await self._liveness.release(self.runtime.owner)
