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
            if not fut.done():
                fut.set_result(None)

    async def wait(self, key: str, timeout: float | None) -> None:
        """Return when ``key`` is published or ``timeout`` seconds pass, whichever is first."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(key, set())
        waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            current = self._waiters.get(key)
            if current is not None:
                current.discard(fut)
                if not current:
                    del self._waiters[key]
