"""Web Locks as asyncio: take an exclusive lock and hold it until released or the tab dies, and list
the locks every tab of this origin holds. A lock the browser frees when its tab dies is how the
IndexedDB store proves a closed tab dead at once. Pyodide only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import js
from pyodide.ffi import create_proxy

from .._errors import StoreError
from ._values import is_nil, js_value, py_value

__all__ = ["WebLock", "has_web_locks", "held_lock_names", "request_lock"]


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
