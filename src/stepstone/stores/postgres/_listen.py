"""Notification across processes for the PostgreSQL store: one LISTEN connection per store, the
batched NOTIFY of what a write changed, and owner liveness held on that same connection.

* **Sending.** After a write commits, its keys (a run id, the run list, "claimable", a stream)
  are published on the store's in-process hub at once and queued for other processes. One
  ``pg_notify`` statement per batch carries every key queued meanwhile (``sender|key key …``);
  at most one is in flight per store, so under load a batch grows instead of the statement count.
  A batch that makes nothing claimable (a run's new events, a stream's appends) lingers 2 ms for
  company first; one that may (a trigger, an event for a waiting run, a finished child) goes at
  once.
  The NOTIFY runs in its own tiny transaction, never inside the write's: PostgreSQL serialises
  notifying commits, and a separate notify writes no WAL, so it holds that lock only briefly.
* **Receiving.** One connection per store LISTENs on the schema's channel and publishes every key
  another sender named (its own are skipped: they were published locally already).
* **Liveness.** An engine's owner lock is a session-level advisory lock held on the listening
  connection, so it lives exactly as long as that connection: when the process dies, PostgreSQL
  ends the session and frees the lock — proof of death for every other server.
* **Losing the connection.** The listener reconnects with backoff, LISTENs again, re-takes the
  owner locks it held and then publishes everything (each waiter re-checks): a notification sent
  while it was away is never needed. For a few seconds after (re)connecting it proves nobody dead,
  since other servers may still be reconnecting after the same outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

import psycopg

from ..._errors import StoreError
from .._wakeups import CLAIMABLE_KEY
from ._conn import Conn, Database, quote_ident

__all__ = ["Listener"]

log = logging.getLogger("stepstone")

#: A NOTIFY payload must stay under 8000 bytes.
_PAYLOAD = 7000
#: Seconds after (re)connecting during which no owner is proven dead.
GRACE = 3.0
#: Seconds a batch with nothing claimable in it waits for more keys before it is sent.
LINGER = 0.002


class Listener:
    """The LISTEN connection of one store, its NOTIFY batches and the owner locks it holds."""

    def __init__(self, db: Database, channel: str, sender: str, on_keys: Callable[[list[str]], None],
                 on_reconnect: Callable[[], None]) -> None:  # fmt: skip
        self.db = db
        self.channel = channel
        self.sender = sender
        self._on_keys = on_keys
        self._on_reconnect = on_reconnect
        self._task: asyncio.Task[None] | None = None
        self._conn: Conn | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self.connected_at: float | None = None
        #: Seconds after (re)connecting during which a free owner lock proves nothing.
        self.grace = GRACE
        self._held: set[int] = set()
        self._commands: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._outbox: set[str] = set()
        self._sending: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"stepstone-listen-{self.channel}")
        ready = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task in done:
            self._task.result()
        if not self._ready.is_set():
            await self.stop()
            raise StoreError("the PostgreSQL listener did not connect within 30 s")

    async def stop(self) -> None:
        self._closing = True
        for task in (self._task, self._sending):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._task, self._sending) if t is not None), return_exceptions=True)
        self._task = self._sending = None
        for _, _, fut in self._commands:
            if not fut.done():
                fut.set_exception(StoreError("the PostgreSQL store is closed"))
        self._commands.clear()
        self._held.clear()
        self._ready.clear()

    # -- the connection --------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.05
        first = True
        while not self._closing:
            try:
                conn = await self.db.connect()
            except psycopg.OperationalError as exc:
                log.warning("stepstone: PostgreSQL listener cannot connect (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                await conn.execute(f"LISTEN {quote_ident(self.channel)}")
                for key in sorted(self._held):
                    try:
                        await self._lock(conn, key)
                    except StoreError as exc:  # taken meanwhile by a session using the same owner
                        log.error("stepstone: owner lock %s could not be re-taken: %s", key, exc)
                        self._held.discard(key)
                self._conn = conn
                self.connected_at = time.monotonic()
                delay = 0.05
                self._ready.set()
                if not first:
                    log.info("stepstone: PostgreSQL listener reconnected; waking every waiter to re-check")
                    self._on_reconnect()
                first = False
                await self._serve(conn)
            except psycopg.OperationalError as exc:
                if not self._closing:
                    log.warning("stepstone: PostgreSQL listener lost its connection (%s); reconnecting", exc)
                    await asyncio.sleep(0.05)
            except Exception:
                log.exception("stepstone: PostgreSQL listener failed; reconnecting")
                await asyncio.sleep(delay)
            finally:
                self._conn = None
                self.connected_at = None
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _serve(self, conn: Conn) -> None:
        while not self._closing:
            await self._do_commands(conn)
            async for note in conn.notifies(timeout=1.0):
                self._received(note.payload)
                if self._commands:
                    break

    def _received(self, payload: str) -> None:
        sender, _, keys = payload.partition("|")
        if sender == self.sender or not keys:
            return
        self._on_keys(keys.split(" "))

    async def _do_commands(self, conn: Conn) -> None:
        while self._commands:
            op, key, fut = self._commands.pop(0)
            try:
                if op == "hold":
                    await self._lock(conn, key)
                    self._held.add(key)
                else:
                    self._held.discard(key)
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg.OperationalError:
                self._commands.insert(0, (op, key, fut))
                raise
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(True)

    async def _lock(self, conn: Conn, key: int) -> None:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cur.fetchone()
        if not (row and row[0]):
            raise StoreError("another live session holds this owner's lock: owner names must be unique")

    # -- owner locks --------------------------------------------------------------------------------
    async def command(self, op: str, key: int, timeout: float = 30.0) -> None:
        """Run ``hold``/``release`` of advisory lock ``key`` on the listening connection; raise
        StoreError when it could not be done within ``timeout`` seconds (no connection)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._commands.append((op, key, fut))
        self._poke()
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            if (op, key, fut) in self._commands:
                self._commands.remove((op, key, fut))
            raise StoreError(f"the PostgreSQL listener could not {op} an owner lock within {timeout:g} s") from None

    @property
    def settled(self) -> bool:
        """Connected for longer than the grace period: a free owner lock now proves death."""
        return self.connected_at is not None and time.monotonic() - self.connected_at >= self.grace

    # -- sending -----------------------------------------------------------------------------------------
    def send(self, keys: tuple[str, ...] | list[str]) -> None:
        """Queue ``keys`` for the other processes (one NOTIFY per batch, at most one in flight)."""
        self._outbox.update(keys)
        if CLAIMABLE_KEY in keys:
            self._urgent.set()
        if self._sending is None and not self._closing:
            self._sending = asyncio.ensure_future(self._flush())

    def _poke(self) -> None:
        """Wake the listening connection so it runs queued commands (its own NOTIFY is skipped)."""
        self._outbox.add("")
        self._urgent.set()
        if self._sending is None and not self._closing:
            self._sending = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox and not self._closing:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LINGER):
                            await self._urgent.wait()
                self._urgent.clear()
                keys, self._outbox = self._outbox, set()
                payloads = _payloads(self.sender, sorted(keys))
                try:
                    await self.db.run(functools.partial(_notify, channel=self.channel, payloads=payloads))
                except Exception as exc:  # the listeners re-check everything once they reconnect
                    log.debug("stepstone: NOTIFY failed: %s", exc)
        finally:
            self._sending = None


async def _notify(conn: Conn, channel: str, payloads: list[str]) -> None:
    await conn.execute(
        "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
        (channel, payloads),
    )


def _payloads(sender: str, keys: list[str]) -> list[str]:
    """``sender|k1 k2 …`` chunks under the NOTIFY size limit (an empty key list pokes)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for key in keys:
        if chunk and size + len(key.encode()) + 1 > _PAYLOAD:
            out.append(f"{sender}|{' '.join(chunk)}")
            chunk, size = [], 0
        if key:
            chunk.append(key)
            size += len(key.encode()) + 1
    out.append(f"{sender}|{' '.join(chunk)}")
    return out
