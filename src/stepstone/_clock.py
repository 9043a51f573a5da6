"""The engine's clock: what time it is, and callbacks at a wall-clock time. Stdlib + asyncio only.

Everything the engine times (leases, sleeps, event deadlines, retry backoffs, the worker's wake-up
timers) goes through one :class:`Clock`, so a test can run a one-day sleep in milliseconds with
``stepstone.testing.TestClock`` (time travel, as Temporal's time-skipping test environment does).
Stores never read a clock: every store method is given ``now``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall-clock seconds (comparable across processes: stores persist them) and timers."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Call ``callback`` (on the running loop) once the clock reads ``when`` or later."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and the running loop's timers."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(when - time.time(), 0.0), callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))
