"""IndexedDB as asyncio: transactions driven by programs, opening with upgrades, key ranges, and a
watch on a connection another tab (or the browser) takes away. Pyodide only.

IndexedDB commits a transaction as soon as a task ends with no request pending, so a transaction is
driven by a *program*: a generator that yields requests and receives their results, advanced
synchronously inside the request callbacks. No Python ``await`` (which would hand control back to
the JS event loop) ever sits between two requests of one transaction. The caller awaits the
transaction's ``complete`` event, not a request's ``success``, before it treats a write as durable.

Every Python callable handed to JS (``create_proxy``) is destroyed once JS can no longer call it.
The IndexedDB store (``stepstone/stores/indexeddb/``) holds the logic; this module only the access.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import js
from pyodide.ffi import create_proxy

from .._errors import StoreError
from ._values import describe_js_error, is_nil, js_value

__all__ = ["DatabaseWatch", "Program", "key_range", "open_database", "run_transaction"]

T = TypeVar("T")
#: A transaction body: yields an IDBRequest (or a list of them) and is sent its result (or results).
Program = Generator[Any, Any, T]


def key_range(
    lower: Any = None, upper: Any = None, *, lower_open: bool = False, upper_open: bool = False
) -> Any:
    """An ``IDBKeyRange`` from plain keys (lists become JS arrays): both bounds, only one, or
    ``None`` when neither is given (every key)."""
    if lower is None and upper is None:
        return None
    if upper is None:
        return js.IDBKeyRange.lowerBound(js_value(lower), lower_open)
    if lower is None:
        return js.IDBKeyRange.upperBound(js_value(upper), upper_open)
    return js.IDBKeyRange.bound(js_value(lower), js_value(upper), lower_open, upper_open)


class DatabaseWatch:
    """Calls ``on_lost(reason)`` once when another tab upgrades the database or the browser closes
    it (storage cleared); :meth:`close` stops watching. The proxy is destroyed after its own call."""

    def __init__(self, db: Any, on_lost: Callable[[str], None]) -> None:
        self._db = db
        self._on_lost = on_lost
        self._proxy: Any = create_proxy(self._event)
        db.onversionchange = self._proxy
        db.onclose = self._proxy

    def _event(self, event: Any) -> None:
        self._on_lost(str(event.type))
        asyncio.get_running_loop().call_soon(self.close)

    def close(self) -> None:
        if self._db is not None:
            self._db.onversionchange = None
            self._db.onclose = None
            self._db = None
        if self._proxy is not None:
            self._proxy.destroy()
            self._proxy = None


class _Driver(Generic[T]):
    """Advances one program inside one IDBTransaction; one proxy serves every event."""

    def __init__(self, tx: Any, program: Program[T], fut: asyncio.Future[T]) -> None:
        self.tx = tx
        self.program = program
        self.fut = fut
        self.result: Any = None
        self.error: BaseException | None = None
        self.batch: list[Any] | None = None
        self.pending = 0
        self.proxy = create_proxy(self.on_event)
        tx.oncomplete = self.proxy
        tx.onabort = self.proxy

    def advance(self, value: Any) -> None:
        try:
            request = self.program.send(value)
        except StopIteration as stop:
            self.result = stop.value  # the transaction commits once its last write is done
            return
        except BaseException as exc:  # the program refused (fencing, not found): roll back, re-raise
            self.fail(exc)
            return
        if isinstance(request, list):
            self.batch, self.pending = request, len(request)
            if not request:
                self.advance([])
                return
            for req in request:
                req.onsuccess = self.proxy
                req.onerror = self.proxy
        else:
            self.batch = None
            request.onsuccess = self.proxy
            request.onerror = self.proxy

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        with contextlib.suppress(Exception):  # already finishing: its abort event still comes
            self.tx.abort()

    def on_event(self, event: Any) -> None:
        kind = str(event.type)
        if kind == "success":
            if self.batch is None:
                self.advance(event.target.result)
                return
            self.pending -= 1
            if self.pending == 0:
                batch, self.batch = self.batch, None
                self.advance([req.result for req in batch])
        elif kind == "error":
            if self.error is None:
                self.error = StoreError(f"IndexedDB request failed: {describe_js_error(event.target.error)}")
            # the error bubbles and aborts the transaction; "abort" settles the future
        elif kind == "complete":
            self.finish(None)
        elif kind == "abort":
            error = self.error
            if error is None:
                error = StoreError(f"IndexedDB transaction aborted: {describe_js_error(self.tx.error)}")
            self.finish(error)

    def finish(self, error: BaseException | None) -> None:
        self.tx.oncomplete = None
        self.tx.onabort = None
        # This runs inside the proxy's own call: destroy it once the call has returned.
        asyncio.get_running_loop().call_soon(self.proxy.destroy)
        self.program.close()
        if self.fut.done():  # the caller gave up (cancelled); the outcome stands in the database
            return
        if error is None:
            self.fut.set_result(self.result)
        else:
            self.fut.set_exception(error)


_JS_CACHE: dict[Any, Any] = {}


def _cached_js(key: tuple[str, ...] | str | None) -> Any:
    """The JS array of store names, or the options object for a durability, made once."""
    value = _JS_CACHE.get(key)
    if value is None:
        plain: Any = list(key) if isinstance(key, tuple) else {} if key is None else {"durability": key}
        value = _JS_CACHE[key] = js_value(plain)
    return value


def run_transaction(
    db: Any, stores: list[str], mode: str, program: Callable[[Any], Program[T]], durability: str = "relaxed"
) -> asyncio.Future[T]:
    """Run ``program(tx)`` in one new transaction; the future settles on ``complete`` or ``abort``."""
    fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    try:
        tx = db.transaction(_cached_js(tuple(stores)), mode, _cached_js(durability if mode == "readwrite" else None))
    except Exception as exc:
        raise StoreError(f"cannot start an IndexedDB transaction: {describe_js_error(exc)}") from exc
    driver = _Driver(tx, program(tx), fut)
    driver.advance(None)
    return fut


# -- opening -----------------------------------------------------------------------------------
class _OpenRequest:
    """One ``indexedDB.open`` request and the future it settles."""

    def __init__(self, name: str, upgrade: Callable[[Any, Any, int], None] | None) -> None:
        self.name = name
        self.upgrade = upgrade
        self.fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.abandoned = False
        self.request: Any = None
        self.proxy = create_proxy(self.on_event)

    def start(self, factory: Any, version: int | None) -> None:
        try:
            self.request = factory.open(self.name) if version is None else factory.open(self.name, version)
        except Exception as exc:
            self.proxy.destroy()
            raise StoreError(f"cannot open IndexedDB database {self.name!r}: {describe_js_error(exc)}") from exc
        request = self.request
        request.onsuccess = request.onerror = request.onblocked = request.onupgradeneeded = self.proxy

    def settle(self, error: BaseException | None, value: Any = None) -> None:
        if self.fut.done():
            return
        if error is None:
            self.fut.set_result(value)
        else:
            self.fut.set_exception(error)

    def on_event(self, event: Any) -> None:
        kind = str(event.type)
        if kind == "upgradeneeded":
            self.on_upgrade(int(event.oldVersion))
        elif kind == "blocked":
            self.settle(
                StoreError(
                    f"opening IndexedDB database {self.name!r} is blocked: another tab of this site keeps an "
                    "older connection to it open. Close the other tabs of this site, then reload."
                )
            )
        else:
            self.on_done(kind)

    def on_upgrade(self, old_version: int) -> None:
        tx = self.request.transaction
        if self.abandoned:  # we already gave up on this open: do not change the database
            tx.abort()
            return
        if self.upgrade is None:
            return
        try:
            self.upgrade(self.request.result, tx, old_version)
        except BaseException as exc:  # reported to the opener; the version bump is rolled back
            self.settle(exc)
            tx.abort()

    def on_done(self, kind: str) -> None:
        request = self.request
        request.onsuccess = request.onerror = request.onblocked = request.onupgradeneeded = None
        asyncio.get_running_loop().call_soon(self.proxy.destroy)  # not while it runs
        if kind == "success":
            db = request.result
            if self.fut.done():  # we gave up (blocked, timed out) or the upgrade failed
                db.close()
            else:
                self.fut.set_result(db)
        else:
            self.settle(StoreError(f"cannot open IndexedDB database {self.name!r}: {describe_js_error(request.error)}"))


async def open_database(
    name: str,
    version: int | None,
    upgrade: Callable[[Any, Any, int], None] | None,
    timeout: float,
) -> Any:
    """``indexedDB.open`` as a coroutine: the IDBDatabase, or StoreError with a clear reason.

    ``upgrade(db, versionchange_tx, old_version)`` runs inside ``upgradeneeded``. A ``blocked``
    open (another tab holds an older connection open) fails at once instead of hanging; if it later
    goes through, the upgrade is aborted and the late connection closed.
    """
    factory: Any = getattr(js, "indexedDB", None)
    if is_nil(factory):
        raise StoreError("IndexedDB is not available in this browser context (private mode or a sandboxed frame?)")
    opening = _OpenRequest(name, upgrade)
    opening.start(factory, version)
    try:
        return await asyncio.wait_for(asyncio.shield(opening.fut), timeout)
    except TimeoutError:
        raise StoreError(f"IndexedDB did not open database {name!r} within {timeout:g} s") from None
    finally:
        opening.abandoned = True
