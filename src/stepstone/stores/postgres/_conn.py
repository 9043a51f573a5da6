"""Connections of the PostgreSQL store: the URL, the pool, and what happens when a connection dies.

Every store call runs a function on one pooled connection (autocommit, ``search_path`` set to the
store's schema), either as one statement or inside one transaction. A connection error (the
server restarted, ``pg_terminate_backend``, a network cut) before the transaction is committed
means nothing was written: the pool drops the dead connections and the call runs again on a fresh
one, until ``retry_for`` seconds have passed. An error *while committing* leaves the outcome
unknown; that call raises :class:`~stepstone.StoreError` (nothing it wrote was acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..._errors import StepstoneError, StoreError

__all__ = ["Conn", "Database", "PgOptions", "parse_url", "quote_ident"]

log = logging.getLogger("stepstone")

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

#: URL query options that are ours; every other one goes to libpq (``sslmode``, ``connect_timeout``…).
OPTIONS = ("schema", "pool_size", "pool_min", "synchronous_commit", "retry_for")


@dataclass(frozen=True)
class PgOptions:
    conninfo: str
    schema: str = "stepstone"
    pool_size: int = 10
    pool_min: int = 1
    synchronous_commit: str | None = None
    retry_for: float = 15.0


def parse_url(url: str) -> PgOptions:
    """``postgresql://user:password@host:5432/db?schema=stepstone&pool_size=10`` → options; the
    URL minus our options is the libpq connection string."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(key, value) if key in OPTIONS else rest.append((key, value)))
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    try:
        return PgOptions(
            conninfo=conninfo,
            schema=ours.get("schema", "stepstone"),
            pool_size=int(ours.get("pool_size", 10)),
            pool_min=int(ours.get("pool_min", 1)),
            synchronous_commit=ours.get("synchronous_commit"),
            retry_for=float(ours.get("retry_for", 15.0)),
        )
    except ValueError as exc:
        raise StoreError(f"bad option in PostgreSQL URL: {exc}") from None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _retryable(exc: BaseException) -> bool:
    """A connection-class failure: the statement (and its transaction) did not commit."""
    return isinstance(exc, psycopg.OperationalError)


class Database:
    """The pool of one store, and :meth:`run`: a function on a connection, retried across
    connection losses."""

    def __init__(self, options: PgOptions) -> None:
        if not options.schema or "\x00" in options.schema:
            raise StoreError(f"bad PostgreSQL schema name {options.schema!r}")
        if options.pool_size < 1 or options.pool_min < 0 or options.pool_min > options.pool_size:
            raise StoreError(f"bad pool sizes: pool_min={options.pool_min}, pool_size={options.pool_size}")
        if options.synchronous_commit not in (None, "on", "off", "local", "remote_write", "remote_apply"):
            raise StoreError(f"unknown synchronous_commit {options.synchronous_commit!r}; use on or off")
        self.options = options
        self.schema = options.schema
        self._pool: AsyncConnectionPool[Conn] | None = None

    @property
    def conninfo(self) -> str:
        return self.options.conninfo

    async def configure(self, conn: Conn) -> None:
        """Every connection of this store: its schema first on the search path."""
        await conn.execute(f"SET search_path TO {quote_ident(self.schema)}")
        if self.options.synchronous_commit is not None:
            await conn.execute(f"SET synchronous_commit TO {self.options.synchronous_commit}")

    async def connect(self) -> Conn:
        """A new connection outside the pool (the listener's), configured like the pool's."""
        conn = await AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await self.configure(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.conninfo,
            min_size=self.options.pool_min,
            max_size=self.options.pool_size,
            kwargs={"autocommit": True, "prepare_threshold": 0},
            configure=self.configure,
            open=False,
            timeout=max(self.options.retry_for, 1.0),
            name=f"stepstone-{self.schema}",
        )
        try:
            await pool.open(wait=True, timeout=max(self.options.retry_for, 1.0))
        except Exception as exc:
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL ({_where(self.conninfo)}): {exc}") from None
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open; call init() first")
        return self._pool

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, tx: bool = False, pipeline: bool = False) -> T:
        """``fn`` on a pooled connection — inside one transaction when ``tx`` — retried on a fresh
        connection after a connection loss, for up to ``retry_for`` seconds. Our own errors
        (StaleLeaseError, RunNotFound, …) pass through; any other database error is a StoreError.
        ``pipeline`` (with ``tx``): statements whose results ``fn`` does not fetch are sent without
        waiting, and go with the COMMIT in one round trip."""
        deadline = time.monotonic() + self.options.retry_for
        delay = 0.02
        while True:
            committing = False
            try:
                async with self.pool.connection(timeout=max(deadline - time.monotonic(), 0.1)) as conn:
                    if not tx:
                        return await fn(conn)
                    async with contextlib.AsyncExitStack() as stack:
                        if pipeline:
                            await stack.enter_async_context(conn.pipeline())
                        async with conn.transaction():
                            result = await fn(conn)
                            committing = True
                    return result
            except StepstoneError:
                raise
            except Exception as exc:
                if committing or not _retryable(exc) or time.monotonic() + delay > deadline:
                    raise _store_error(exc, committing) from None
                log.info("stepstone: PostgreSQL connection lost (%s); retrying", exc)
            await self._drop_dead()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _drop_dead(self) -> None:
        """After one dead connection, check the idle ones: a restart kills them all at once."""
        pool = self._pool
        if pool is not None:
            try:
                await pool.check()
            except Exception:  # the server may still be down; the next attempt waits for it
                log.debug("stepstone: checking pooled connections failed", exc_info=True)


def _where(conninfo: str) -> str:
    """host:port/db of a conninfo, without the password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "bad connection string"
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _store_error(exc: BaseException, committing: bool) -> StoreError:
    if committing:
        return StoreError(f"the PostgreSQL connection was lost while committing; the write may not be stored: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"PostgreSQL is unreachable: {exc}")
    if isinstance(exc, UnicodeError):
        return StoreError(f"the write failed: a value is not valid Unicode text: {exc}")
    return StoreError(f"the write failed: {type(exc).__name__}: {exc}")
