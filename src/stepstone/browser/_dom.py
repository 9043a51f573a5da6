"""DOM helpers for pages without a framework: find and make elements, set text, show and hide,
drive a ``<progress>``, keep a list in step with a container (:class:`ListView`), and listen to
events with Python handlers. ``stepstone.hooks.dom`` re-exports all of it beside ``bind``.

Imports ``js`` / ``pyodide`` when a function needs them, never at import time, so it can be
imported (and its pure parts, ``field_value`` and ``progress_text``, used) anywhere.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from .._models import Progress

__all__ = [
    "ListView",
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

T = TypeVar("T")


def _js() -> Any:
    import js  # only when a DOM function runs

    return js


def get_element(target: Any) -> Any:
    """The element with id ``target`` (a str), or ``target`` itself; a clear error if missing."""
    if not isinstance(target, str):
        return target
    found = _js().document.getElementById(target)
    if found is None or not found:  # JS null arrives as jsnull (falsy)
        raise LookupError(f"no element with id {target!r} in this page")
    return found


def element(tag: str, text: Any = None, cls: str | None = None, **attrs: Any) -> Any:
    """A new element: ``element("li", "hello", "log-line", data_seq=3)`` (``data_x`` → ``data-x``)."""
    node = _js().document.createElement(tag)
    if text is not None:
        node.textContent = str(text)
    if cls:
        node.className = cls
    for name, value in attrs.items():
        if value is not None:
            node.setAttribute(name.replace("_", "-"), str(value))
    return node


def set_text(target: Any, value: Any) -> None:
    """Set an element's text (only when it changed: no needless layout work)."""
    node = get_element(target)
    text = "" if value is None else str(value)
    if node.textContent != text:
        node.textContent = text


def show(target: Any, visible: bool) -> None:
    """Show or hide an element (the ``hidden`` attribute)."""
    node = get_element(target)
    if bool(node.hidden) == bool(visible):
        node.hidden = not visible


def field_value(text: Any) -> int | float | str:
    """A form field as a number when it reads as one, else the raw text (so the job's validator,
    not the page, names what is wrong with it)."""
    raw = str(text).strip()
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def progress_text(progress: Progress | None) -> str:
    """``"3 / 10 · step 3 of 10"``, ``"3"`` or ``""``: a progress as a line of text."""
    if progress is None:
        return ""
    amount = f"{progress.current:g}" + (f" / {progress.total:g}" if progress.total is not None else "")
    return f"{amount} · {progress.message}" if progress.message else amount


def set_progress(target: Any, progress: Progress | None) -> None:
    """Drive a ``<progress>`` element. No progress (nothing reported yet, no run, an unknown run)
    is an empty bar, never the animated "busy" one a ``<progress>`` without a value shows; a
    progress without a total fills the bar."""
    node = get_element(target)
    if progress is None:
        node.max = 1
        node.value = 0
        node.dataset.current = ""
        node.title = ""
        return
    total = progress.total if progress.total else max(progress.current, 1)
    node.max = total
    node.value = min(progress.current, total)
    node.dataset.current = f"{progress.current:g}"
    node.title = progress_text(progress)


class ListView(Generic[T]):
    """Keeps a container's children in step with a list of items, one node per key.

    ``render(item)`` makes a node; it is called again only when an item with the same key changed
    (``!=``). Appending items appends nodes; anything else reorders the existing nodes in place.
    """

    def __init__(self, container: Any, key: Callable[[T], Hashable], render: Callable[[T], Any]) -> None:
        self.container = container
        self.key = key
        self.render = render
        self._nodes: dict[Hashable, tuple[T, Any]] = {}
        self._order: list[Hashable] = []

    def update(self, items: Iterable[T]) -> None:
        container = get_element(self.container)
        nodes: dict[Hashable, tuple[T, Any]] = {}
        order: list[Hashable] = []
        for item in items:
            k = self.key(item)
            if k in nodes:
                continue  # the same key twice: show it once
            known = self._nodes.get(k)
            nodes[k] = known if known is not None and known[0] == item else (item, self.render(item))
            order.append(k)
        changed = [k for k in order if k in self._nodes and nodes[k][1] is not self._nodes[k][1]]
        if order[: len(self._order)] == self._order and not changed:
            for k in order[len(self._order):]:
                container.append(nodes[k][1])
        elif order != self._order or changed:
            container.replaceChildren(*(nodes[k][1] for k in order))
        self._nodes, self._order = nodes, order

    def clear(self) -> None:
        self.update([])


_listeners: list[Any] = []  # proxies stay alive as long as the page (they are few and long-lived)
_tasks: set[asyncio.Task[Any]] = set()


def on(target: Any, event: str, handler: Callable[[Any], Any],
       on_error: Callable[[BaseException], Any] | None = None, *, prevent_default: bool = False) -> Callable[[], None]:
    """``addEventListener`` with a Python handler, sync or async (run as a task). An exception in
    the handler goes to ``on_error`` (default: logged). ``prevent_default`` calls the event's
    ``preventDefault()`` at once (an async handler runs too late for that: a form would submit).
    Returns a function that removes the listener."""
    from pyodide.ffi import create_proxy

    node = get_element(target)

    def report(exc: BaseException) -> None:
        if on_error is not None:
            on_error(exc)
        else:
            log.error("stepstone: %s handler failed", event, exc_info=exc)

    def done(task: asyncio.Task[Any]) -> None:
        _tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            report(task.exception())  # type: ignore[arg-type]

    def call(js_event: Any) -> None:
        if prevent_default:
            js_event.preventDefault()
        try:
            result = handler(js_event)
        except Exception as exc:
            report(exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            _tasks.add(task)
            task.add_done_callback(done)

    proxy = create_proxy(call)
    _listeners.append(proxy)
    node.addEventListener(event, proxy)

    def remove() -> None:
        node.removeEventListener(event, proxy)
        if proxy in _listeners:
            _listeners.remove(proxy)
            proxy.destroy()

    return remove
