"""Group commit for the SQLite store: writes queued in one event-loop tick share one transaction.

Each write is a function of the connection, run inside its own savepoint so a refused one (a stale
epoch) — or one that raises anything else (a value SQLite cannot bind) — fails alone; the
transaction commits once, then every waiter is answered and its keys are published. Only a failure
of the transaction itself (BEGIN, COMMIT, a savepoint) fails every write in it. Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from ..._errors import StepstoneError, StoreError
from ..._notify import Hub

__all__ = ["GroupCommitMixin"]

log = logging.getLogger("stepstone")

T = TypeVar("T")


class _Refused(Exception):
    """Carries one write's own error out of a single-op transaction so it is rolled back, then
    re-raised to that write alone."""

    def __init__(self, error: StepstoneError) -> None:
        super().__init__(str(error))
        self.error = error


class GroupCommitMixin:
    """Mixed into SqliteStore, which provides the attributes below."""

    path: str
    synchronous: str
    _hub: Hub

    def _publish(self, keys: Collection[str]) -> None:
        raise NotImplementedError
    _queue: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], tuple[str, ...], bool]]

    @property
    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _write(self, op: Callable[[sqlite3.Connection], T], *keys: str, sync: bool = True) -> T:
        """Run ``op`` in the next write transaction, shared with every write queued in the same
        event-loop tick (group commit: several executions' step commits cost one COMMIT). Each op
        runs inside its own savepoint, so one fenced-off write fails alone. ``keys`` are published
        once the transaction has committed. ``sync=False`` marks a write whose loss on power failure
        is harmless (a claim or a lease renewal: the run is simply claimed again); a transaction of
        only such writes skips the fsync even with ``synchronous=full``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((op, fut, keys, sync))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        live = [item for item in batch if not item[1].cancelled()]
        if not live:
            return
        try:
            outcomes = self._commit([item[0] for item in live], relaxed=not any(item[3] for item in live))
        except _Refused as refused:  # the only write of this transaction was refused: rolled back
            if not live[0][1].done():
                live[0][1].set_exception(refused.error)
            return
        except Exception as exc:  # the transaction itself failed: every write in it failed
            log.error("stepstone: a write transaction in %s failed", self.path, exc_info=exc)
            error = exc if isinstance(exc, StoreError) else StoreError(f"the SQLite store could not write: {exc}")
            for _, fut, _, _ in live:
                if not fut.done():
                    fut.set_exception(error)
            return
        published: set[str] = set()
        for (_, fut, keys, _), (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                published.update(keys)
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        if published:
            self._publish(published)

    def _commit(self, ops: list[Callable[[sqlite3.Connection], Any]], relaxed: bool) -> list[tuple[bool, Any]]:
        """One transaction for ``ops``; each op in a savepoint unless it is alone."""
        db = self._db
        relaxed = relaxed and self.synchronous in ("full", "extra")
        if relaxed:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if len(ops) == 1:
                    outcomes = [self._attempt(db, ops[0], savepoint=False)]
                else:
                    outcomes = [self._attempt(db, op, savepoint=True) for op in ops]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return outcomes
        finally:
            if relaxed:
                db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")

    @staticmethod
    def _attempt(db: sqlite3.Connection, op: Callable[[sqlite3.Connection], Any], savepoint: bool) -> tuple[bool, Any]:
        if savepoint:
            db.execute("SAVEPOINT op")
        try:
            result = op(db)
        except Exception as exc:
            refusal = exc if isinstance(exc, StepstoneError) else StoreError(f"the write failed: {exc}")
            if not savepoint:
                raise _Refused(refusal) from exc
            db.execute("ROLLBACK TO op")
            db.execute("RELEASE op")
            return False, refusal
        if savepoint:
            db.execute("RELEASE op")
        return True, result
