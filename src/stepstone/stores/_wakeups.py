"""A store's wake-ups: the in-process :class:`~stepstone._notify.Hub`, what is being waited on,
and who wants to hear that a run may have become claimable.

Stores that see writes made by other processes (PostgreSQL's LISTEN/NOTIFY, the SQLite store's
datagram sockets) publish the keys those writes name here, so waiters in this process wake as if
the write were local. After a lost notification channel is restored, :meth:`Wakeups.publish_all`
wakes every waiter to re-check. Stdlib + asyncio only.

A store whose check is itself a network read cannot check, then wait, with no ``await`` between
(the rule of ``_notify.py``): a write may commit and publish while the read is in flight. It
registers first — ``with wakeups.expecting(key) as woken:`` — then reads, then
``await wakeups.until(woken, timeout)``: a publish during the read is kept.

``CLAIMABLE_KEY`` is published by every write that may make a run claimable or move the earliest
wake-up (a trigger, a release, an event for a waiting run, a finished child or concurrency-key
holder, a suspension, a cancel, a retry, a deletion); :meth:`Wakeups.subscribe_claimable`
callbacks run for it, which is how a worker in another process claims a run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

from .._notify import RUNS_KEY, Hub

__all__ = ["CLAIMABLE_KEY", "RUNS_KEY", "Wakeups"]

log = logging.getLogger("stepstone")

#: Published when a run may have become claimable (or the earliest ``wake_at`` may have moved).
CLAIMABLE_KEY = "*claimable*"


class Wakeups:
    """A Hub, the waits registered before a read (:meth:`expecting`), and the claimable
    subscribers."""

    def __init__(self) -> None:
        self.hub = Hub()
        self._claimable: list[Callable[[], None]] = []
        self._expected: dict[str, set[asyncio.Future[None]]] = {}

    @contextlib.contextmanager
    def expecting(self, key: str) -> Iterator[asyncio.Future[None]]:
        """A future settled by the next publish of ``key`` (registered now, before any read)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected.setdefault(key, set()).add(fut)
        try:
            yield fut
        finally:
            waiting = self._expected.get(key)
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self._expected[key]

    @staticmethod
    async def until(fut: asyncio.Future[None], timeout: float | None) -> None:
        """Return when ``fut`` (from :meth:`expecting`) is settled or ``timeout`` seconds pass; a
        plain future and a timer, as ``Hub.wait`` (a cancel always raises)."""
        if fut.done():
            return
        timer = None if timeout is None else asyncio.get_running_loop().call_later(max(timeout, 0.0), _settle, fut)
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()

    def _settle_expected(self, key: str) -> None:
        for fut in self._expected.pop(key, ()):
            _settle(fut)

    def publish(self, keys: Iterable[str]) -> None:
        claimable = False
        for key in keys:
            if key == CLAIMABLE_KEY:
                claimable = True
            else:
                self.hub.publish(key)
                self._settle_expected(key)
        if claimable:
            self.claimable()

    def publish_all(self) -> None:
        """Everything may have changed (a notification channel was down): wake every waiter and
        every claimable subscriber, so each re-checks."""
        for key in list(self._expected):
            self._settle_expected(key)
        self.hub.publish(RUNS_KEY)
        self.claimable()

    def claimable(self) -> None:
        for callback in list(self._claimable):
            try:
                callback()
            except Exception:
                log.exception("stepstone: a claimable callback failed")

    def subscribe_claimable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (in the event loop, not awaited) whenever a run may have become
        claimable, whoever wrote it; returns a function that unsubscribes."""
        self._claimable.append(callback)

        def unsubscribe() -> None:
            if callback in self._claimable:
                self._claimable.remove(callback)

        return unsubscribe


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
