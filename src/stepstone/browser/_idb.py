"""The one door to the browser: IndexedDB requests and transactions as asyncio futures, Web Locks,
BroadcastChannel, and JS-value conversion. Only importable inside Pyodide.

Values cross the seam as JSON text (``JSON.parse`` / ``JSON.stringify``): no nested proxies to
leak, JS ``null`` and ``undefined`` both come back as ``None`` (never ``pyodide.ffi.jsnull``), and
integers keep their exact value because stores keep user payloads as JSON strings.

IndexedDB commits a transaction as soon as a task ends with no request pending, so a transaction is
driven by a *program*: a generator that yields requests and receives their results, advanced
synchronously inside the request callbacks. No Python ``await`` (which would hand control back to
the JS event loop) ever sits between two requests of one transaction. The caller awaits the
transaction's ``complete`` event, not a request's ``success``, before it treats a write as durable.

Every Python callable handed to JS (``create_proxy``) is destroyed once JS can no longer call it.
Browser-only: imports nothing but the stdlib, stepstone's core and ``js``/``pyodide`` (never a
server-only package); the core never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Generator
from typing import Any, ClassVar, Generic, TypeVar

import js
from pyodide.ffi import create_proxy, jsnull

from ._errors import StoreError
from ._notify import Hub

__all__ = [
    "is_nil",
    "BroadcastNotifier",
    "Program",
    "WebLock",
    "has_web_locks",
    "held_lock_names",
    "js_value",
    "open_database",
    "py_value",
    "request_lock",
    "run_transaction",
]

log = logging.getLogger("stepstone")

T = TypeVar("T")
#: A transaction body: yields an IDBRequest (or a list of them) and is sent its result (or results).
Program = Generator[Any, Any, T]


# -- values ------------------------------------------------------------------------------------
def js_value(value: Any) -> Any:
    """A fresh JS value (object, array, string, number, null) equal to the JSON of ``value``."""
    return js.JSON.parse(json.dumps(value, separators=(",", ":"), allow_nan=False))


def is_nil(value: Any) -> bool:
    return value is None or value is jsnull


def py_value(value: Any) -> Any:
    """A JS value as plain Python data; ``null`` and ``undefined`` become ``None``."""
    if is_nil(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(str(js.JSON.stringify(value)))


def error_text(error: Any) -> str:
    """``Name: message`` of a DOMException (or whatever JS gave us)."""
    if is_nil(error):
        return "unknown error"
    name = getattr(error, "name", None)
    message = getattr(error, "message", None)
    if name and message:
        return f"{name}: {message}"
    return str(name or message or error)


# -- transactions ------------------------------------------------------------------------------
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
                self.error = StoreError(f"IndexedDB request failed: {error_text(event.target.error)}")
            # the error bubbles and aborts the transaction; "abort" settles the future
        elif kind == "complete":
            self.finish(None)
        elif kind == "abort":
            error = self.error
            if error is None:
                error = StoreError(f"IndexedDB transaction aborted: {error_text(self.tx.error)}")
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
        raise StoreError(f"cannot start an IndexedDB transaction: {error_text(exc)}") from exc
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
            raise StoreError(f"cannot open IndexedDB database {self.name!r}: {error_text(exc)}") from exc
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
            self.settle(StoreError(f"cannot open IndexedDB database {self.name!r}: {error_text(request.error)}"))


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


# -- Web Locks ---------------------------------------------------------------------------------
def has_web_locks() -> bool:
    locks = getattr(js.navigator, "locks", None)
    return not is_nil(locks)


class WebLock:
    """A held Web Lock; the browser frees it when :meth:`release` is called or the tab dies."""

    def __init__(self, name: str, resolve: Any) -> None:
        self.name = name
        self._resolve = resolve

    def release(self) -> None:
        if self._resolve is not None:
            self._resolve()
            self._resolve = None


_watchers: set[asyncio.Future[None]] = set()


async def request_lock(name: str, *, if_available: bool = True) -> WebLock | None:
    """Take the exclusive lock ``name`` and hold it until released; None when ``if_available`` and
    another holder has it."""
    loop = asyncio.get_running_loop()
    granted: asyncio.Future[WebLock | None] = loop.create_future()
    box: dict[str, Any] = {}
    proxies: list[Any] = []

    def cleanup() -> None:
        while proxies:
            proxies.pop().destroy()

    def executor(resolve: Any, reject: Any) -> None:
        box["resolve"] = resolve

    def callback(lock: Any) -> Any:
        loop.call_soon(cleanup)  # JS calls this once; not destroyed while it runs
        if is_nil(lock):
            if not granted.done():
                granted.set_result(None)
            return None
        # The lock is held for as long as this promise is pending: until WebLock.release().
        holder = js.Promise.new(proxies[0])
        lock_obj = WebLock(name, box.pop("resolve"))
        if granted.done():  # the caller went away while we waited: let go at once
            lock_obj.release()
        else:
            granted.set_result(lock_obj)
        return holder

    proxies.extend([create_proxy(executor), create_proxy(callback)])
    options = js_value({"mode": "exclusive", "ifAvailable": if_available})
    try:
        request = js.navigator.locks.request(name, options, proxies[1])
    except Exception as exc:
        cleanup()
        raise StoreError(f"Web Lock {name!r} could not be requested: {exc}") from exc
    watcher = asyncio.ensure_future(_watch_lock_request(request, granted, name, cleanup))
    _watchers.add(watcher)
    watcher.add_done_callback(_watchers.discard)
    return await granted


async def _watch_lock_request(
    request: Any, granted: asyncio.Future[WebLock | None], name: str, cleanup: Callable[[], None]
) -> None:
    """The request's promise settles when the lock is let go, or rejects if it never came."""
    try:
        await request
    except Exception as exc:  # the browser refused the request (e.g. AbortError)
        cleanup()
        if not granted.done():
            granted.set_exception(StoreError(f"Web Lock {name!r} could not be taken: {exc}"))


async def held_lock_names(prefix: str) -> set[str]:
    """Names of the locks any tab of this origin holds right now, that start with ``prefix``."""
    snapshot = await js.navigator.locks.query()
    held = py_value(snapshot.held) or []
    return {str(info["name"]) for info in held if str(info.get("name", "")).startswith(prefix)}


# -- notification across tabs ------------------------------------------------------------------
class BroadcastNotifier:
    """Wake-ups for one database in this page, fanned out to other tabs over a BroadcastChannel.

    ``generation(key)`` counts publishes of ``key``: a waiter reads it before it reads the database
    and compares after, so a publish that lands while it reads is never lost.
    """

    _instances: ClassVar[dict[str, BroadcastNotifier]] = {}

    def __init__(self, channel_name: str) -> None:
        self.channel_name = channel_name
        self.hub = Hub()
        self._generations: dict[str, int] = {}
        self._users = 0
        self._channel: Any = None
        self._proxy: Any = None

    @classmethod
    def shared(cls, channel_name: str) -> BroadcastNotifier:
        notifier = cls._instances.get(channel_name)
        if notifier is None:
            notifier = cls._instances[channel_name] = cls(channel_name)
        return notifier

    def attach(self) -> None:
        self._users += 1
        if self._channel is not None or is_nil(getattr(js, "BroadcastChannel", None)):
            return
        self._proxy = create_proxy(self._on_message)
        self._channel = js.BroadcastChannel.new(self.channel_name)
        self._channel.onmessage = self._proxy

    def detach(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._channel is not None:
            self._channel.onmessage = None
            self._channel.close()
            self._proxy.destroy()
            self._channel = self._proxy = None

    def generation(self, key: str) -> int:
        return self._generations.get(key, 0)

    def _local(self, keys: list[str]) -> None:
        for key in keys:
            self._generations[key] = self._generations.get(key, 0) + 1
            self.hub.publish(key)

    def publish(self, *keys: str) -> None:
        """Wake waiters on ``keys`` in this page and in every other tab of this origin."""
        self._local(list(keys))
        if self._channel is not None:
            try:
                self._channel.postMessage(json.dumps(list(keys)))
            except Exception:  # other tabs fall back to polling
                log.debug("stepstone: BroadcastChannel post failed", exc_info=True)

    def _on_message(self, event: Any) -> None:
        try:
            keys = json.loads(str(event.data))
        except (TypeError, ValueError):
            return
        if isinstance(keys, list):
            self._local([str(k) for k in keys])
