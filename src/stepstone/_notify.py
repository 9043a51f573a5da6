"""In-process wake-ups: a store publishes a key when it writes, waiters on that key wake.

Stdlib + asyncio only. The caller checks its condition *before* waiting, with no ``await`` between
the check and :meth:`Hub.wait`, so a publish can never slip between the two (no lost wake-up).
"""

from __future__ import annotations

import asyncio

__all__ = ["Hub", "RUNS_KEY"]

#: Key published on every change to any run's row (created, status, progress): list watchers use it.
RUNS_KEY = "*runs*"


class Hub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def publish(self, key: str) -> None:
        for fut in self._waiters.pop(key, ()):
            _settle(fut)

    async def wait(self, key: str, timeout: float | None) -> None:
        """Return when ``key`` is published or ``timeout`` seconds pass, whichever is first.

        A plain future, settled by the publish or by a timer: no ``asyncio.wait_for``, which on
        Python 3.11 swallows a cancellation that lands in the same tick as the publish (the waiter
        would loop on forever). A cancelled waiter always gets its ``CancelledError``.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters.setdefault(key, set())
        waiters.add(fut)
        timer = None if timeout is None else loop.call_later(max(timeout, 0.0), _settle, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            current = self._waiters.get(key)
            if current is not None:
                current.discard(fut)
                if not current:
                    del self._waiters[key]

    def waiting(self, key: str) -> int:
        """How many waiters wait on ``key`` now (for leak checks)."""
        return len(self._waiters.get(key, ()))


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
