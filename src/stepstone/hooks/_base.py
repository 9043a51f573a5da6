"""What every hook state shares: observers, background tasks, ``close``, ``wait_for``, and turning an
exception into the clear ``error`` text a page shows.

Stdlib + asyncio only; must never import js, pyodide, httpx or the server.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .. import browser
from .._errors import RunNotFound, ServerError, ServerUnavailable, StepstoneError, Unauthorized
from .._models import Run

__all__ = ["HookState", "describe_error"]

log = logging.getLogger("stepstone.hooks")

S = TypeVar("S", bound="HookState")
Callback = Callable[[Any], Any]


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` for an error a hook ran into: what a page shows the user."""
    if isinstance(exc, ServerUnavailable):
        return "server_unavailable", f"the server is unreachable: {exc} (retrying)"
    if isinstance(exc, Unauthorized):
        return "unauthorized", str(exc)
    if isinstance(exc, RunNotFound):
        return "run_not_found", str(exc) or "the run does not exist (it may have been deleted)"
    if isinstance(exc, ServerError):
        return exc.code, str(exc)
    if isinstance(exc, StepstoneError):
        return exc.code, str(exc)
    text = str(exc)
    return "error", f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if browser.in_pyodide():  # a PyScript page's top level runs on the WebLoop
            return asyncio.get_event_loop()
        raise RuntimeError("stepstone hooks start background tasks: call them from async code") from None


class HookState:
    """An observable, closable state object. Subclasses set fields, then call ``_changed()``.

    ``subscribe(callback)`` calls ``callback(state)`` after every change and returns a function
    that unsubscribes. ``close()`` (or ``async with``) stops every stream the state holds.
    """

    def __init__(self) -> None:
        self._loop = _loop()
        self._callbacks: list[Callback] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()
        self.closed = False
        self._problem: str | None = None
        self._problem_code: str | None = None

    @property
    def error(self) -> str | None:
        """A clear message for the last problem (server down, 401, unknown run, …), else None."""
        return self._problem

    @property
    def error_code(self) -> str | None:
        """The problem's stable code: ``server_unavailable``, ``unauthorized``, ``run_not_found``, …"""
        return self._problem_code

    # -- observing -------------------------------------------------------------------------------
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(state)`` after each change; returns the function that stops it."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _changed(self) -> None:
        for callback in list(self._callbacks):
            try:
                result = callback(self)
                if inspect.isawaitable(result):
                    self._spawn(_await(result), "stepstone-hook-callback")
            except Exception:
                log.exception("stepstone: a hook subscriber failed")
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self: S, predicate: Callable[[S], bool], timeout: float | None = None) -> S:
        """Wait until ``predicate(state)`` holds (checked now and after each change)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.closed:
                    raise RuntimeError(f"{type(self).__name__} was closed while waiting")
                fut = self._loop.create_future()
                self._waiters.append(fut)
                await fut
        return self

    async def ready(self: S, timeout: float | None = None) -> S:
        """Wait until the first load is done (whether it succeeded: see ``error``)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        return self

    # -- errors ----------------------------------------------------------------------------------
    def _set_problem(self, exc: BaseException) -> None:
        self._problem_code, self._problem = describe_error(exc)
        self._changed()

    def _clear_problem(self, code: str | None = None) -> None:
        """Forget the last problem (only one with ``code``, when given)."""
        if self._problem is not None and (code is None or self._problem_code == code):
            self._problem = None
            self._problem_code = None
            self._changed()

    # -- tasks -----------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            log.error("stepstone: a hook task failed", exc_info=exc)
            if not self.closed:
                self._set_problem(exc)

    def close(self) -> None:
        """Stop every stream and task of this state; it no longer changes."""
        if self.closed:
            return
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        self._ready.set()
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def aclose(self) -> None:
        """``close()``, then wait until its tasks have finished."""
        tasks = list(self._tasks)
        self.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _await(awaitable: Any) -> None:
    await awaitable


def backoff_delays(first: float = 0.5, cap: float = 3.0) -> Callable[[], float]:
    """A function returning 0.5, 1, 2, 3, 3, … seconds; for hooks retrying a server that is down."""
    delay = first / 2

    def next_delay() -> float:
        nonlocal delay
        delay = min(delay * 2, cap)
        return delay

    return next_delay


RunCallback = Callable[[Run], Any]


class TerminalCallbacks:
    """``on_complete`` / ``on_fail`` / ``on_cancel`` for states that follow a run; each callback is
    called once per finished run with the run, and each registration returns its own remover."""

    _callbacks_by_status: dict[str, list[RunCallback]]

    def on_complete(self, callback: RunCallback) -> Callable[[], None]:
        """Call ``callback(run)`` once when the run followed here completes."""
        return self._add_callback("completed", callback)

    def on_fail(self, callback: RunCallback) -> Callable[[], None]:
        """Call ``callback(run)`` once when the run followed here fails."""
        return self._add_callback("failed", callback)

    def on_cancel(self, callback: RunCallback) -> Callable[[], None]:
        """Call ``callback(run)`` once when the run followed here is cancelled."""
        return self._add_callback("cancelled", callback)

    def _add_callback(self, status: str, callback: RunCallback) -> Callable[[], None]:
        callbacks = self._callbacks_by_status[status]
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None
