"""Render hook states into a page's DOM without a framework (PyScript / Pyodide).

    from stepstone.hooks import use_job
    from stepstone.hooks.dom import ListView, bind, element, on, set_progress, set_text

    job = use_job(client, "demo-steps")
    logs = ListView("log", key=lambda entry: entry.seq, render=lambda entry: element("li", entry.message))

    def render(state):
        set_text("status", state.status or "idle")
        set_progress("bar", state.progress)
        logs.update(state.logs)

    bind(job, render)                      # now, and after every change (once per burst)
    on("start", "click", lambda event: job.trigger({"steps": 5}))

Elements are given as ids or as elements. ``ListView`` keeps one node per key: a log grows by
appending, a table row is rebuilt only when its item changed, so a page re-renders cheaply and a
line is never shown twice. The helpers live in :mod:`stepstone.browser` (the one door to
JavaScript), which imports ``js`` / ``pyodide`` when a function needs them, never at import time,
so this module can be imported (and its pure parts used) anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..browser._dom import (
    ListView,
    element,
    field_value,
    get_element,
    on,
    progress_text,
    set_progress,
    set_text,
    show,
)
from ._base import HookState

__all__ = [
    "ListView",
    "bind",
    "countdown",
    "countdown_text",
    "element",
    "field_value",
    "get_element",
    "on",
    "progress_text",
    "set_progress",
    "set_text",
    "show",
]

log = logging.getLogger("stepstone.hooks")

S = TypeVar("S", bound=HookState)


def bind(state: S, render: Callable[[S], Any]) -> Callable[[], None]:
    """Call ``render(state)`` now and after every change of ``state`` (one call per burst of
    changes, on the next turn of the event loop). Returns a function that unbinds."""
    loop = state._loop
    scheduled = False

    def run() -> None:
        nonlocal scheduled
        scheduled = False
        try:
            render(state)
        except Exception:
            log.exception("stepstone: rendering %s failed", type(state).__name__)

    def changed(_: Any) -> None:
        nonlocal scheduled
        if not scheduled:
            scheduled = True
            loop.call_soon(run)

    unsubscribe = state.subscribe(changed)
    run()
    return unsubscribe


def countdown_text(until: float, now: float | None = None) -> str:
    """How long until ``until`` (epoch seconds), for a live countdown: ``in 42 s``, ``in 4 min 05 s``,
    ``in 2 h 05 min``, ``in 3 d 4 h``; ``due now`` once it passed (a sleeping run about to wake)."""
    left = math.ceil(until - (time.time() if now is None else now))
    if left <= 0:
        return "due now"
    if left < 60:
        return f"in {left} s"
    if left < 3600:
        return f"in {left // 60} min {left % 60:02d} s"
    if left < 86400:
        return f"in {left // 3600} h {left % 3600 // 60:02d} min"
    return f"in {left // 86400} d {left % 86400 // 3600} h"


def countdown(until: float) -> Any:
    """A ``<span class="countdown" data-until="…">`` showing :func:`countdown_text`; a page keeps
    every such span current by setting its text again once a second."""
    return element("span", countdown_text(until), "countdown", data_until=repr(until))
