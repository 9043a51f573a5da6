"""The browser's ``EventSource`` behind the HTTP seam's :class:`~stepstone._http.EventSourceStream`.

``FetchTransport.event_source`` opens one for a live stream that sends no headers (cookies and
same-origin auth still go with it). The browser parses the stream and, when the connection drops
(a SIGKILLed server, a proxy), reconnects by itself with ``Last-Event-ID`` every few seconds; this
module reports what it does to the client:

* each event of a type it listens for as an :class:`~stepstone._sse.SSEMessage` (named events need
  a listener per type; unnamed ones are ``message``);
* ``"lost"`` on an error event while the browser is reconnecting (``readyState`` CONNECTING), and
  ``"open"`` when a reconnect gets through;
* the end of iteration when the browser gave up for good (``readyState`` CLOSED: the server
  answered a reconnect with anything but a 200 event stream: a 503 while it restarts, a 404 for a
  deleted run, a 401).

An EventSource never shows the status or body of a refused answer, so when one is refused before it
ever opened, :func:`open_event_source` asks the same URL once with ``fetch`` and hands that answer
back as a :class:`~stepstone._http.Response`: the client maps it exactly as on the fetch path
(``ServerUnavailable`` for a 503, ``RunNotFound``, ``Unauthorized``, ...). Pyodide only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import js
from pyodide.ffi import create_proxy

from .._errors import TransportError
from .._http._models import EventSourceSignal, Response, StreamResponse
from .._sse import SSEMessage
from ._values import js_value

__all__ = ["EventSourceStream", "open_event_source"]

_CLOSED = 2  # EventSource.readyState: 0 CONNECTING, 1 OPEN, 2 CLOSED

_Item = SSEMessage | EventSourceSignal | None  # None: closed for good
_Opened = Literal["open", "refused", "unreachable"]


class EventSourceStream:
    """One ``EventSource``: its events and connection changes, in order, through a queue."""

    def __init__(self, url: str, event_types: Sequence[str], *, with_credentials: bool = False) -> None:
        self.url = url
        self.closed = False
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.opened: asyncio.Future[_Opened] = asyncio.get_running_loop().create_future()
        self._types = tuple(dict.fromkeys(("message", *event_types)))
        self._source: Any = js.EventSource.new(url, js_value({"withCredentials": with_credentials}))
        self._on_message = create_proxy(self._message)
        self._on_open = create_proxy(self._open)
        self._on_error = create_proxy(self._error)
        for name in self._types:
            self._source.addEventListener(name, self._on_message)
        self._source.addEventListener("open", self._on_open)
        self._source.addEventListener("error", self._on_error)

    # -- JS callbacks (run by the browser's event loop, between Python tasks) ----------------------
    def _message(self, event: Any) -> None:
        last_id = str(event.lastEventId or "")
        self._queue.put_nowait(SSEMessage(last_id or None, str(event.type), str(event.data)))

    def _open(self, event: Any) -> None:
        if not self.opened.done():
            self.opened.set_result("open")
        else:
            self._queue.put_nowait("open")

    def _error(self, event: Any) -> None:
        closed = int(self._source.readyState) == _CLOSED
        if not self.opened.done():
            self.opened.set_result("refused" if closed else "unreachable")
        elif closed:
            self._queue.put_nowait(None)
        else:
            self._queue.put_nowait("lost")

    # -- the EventSourceStream protocol ------------------------------------------------------------
    async def _items(self) -> AsyncIterator[SSEMessage | EventSourceSignal]:
        while not self.closed:
            item = await self._queue.get()
            if item is None:
                await self.aclose()
                return
            yield item

    def __aiter__(self) -> AsyncIterator[SSEMessage | EventSourceSignal]:
        return self._items()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._source.close()  # no event is dispatched after close()
        for name in self._types:
            self._source.removeEventListener(name, self._on_message)
        self._source.removeEventListener("open", self._on_open)
        self._source.removeEventListener("error", self._on_error)
        for proxy in (self._on_message, self._on_open, self._on_error):
            proxy.destroy()
        self._queue.put_nowait(None)  # wakes a reader still waiting


StreamOpener = Callable[[str, Mapping[str, str], float], Awaitable[StreamResponse]]


async def open_event_source(
    url: str,
    event_types: Sequence[str],
    timeout: float,
    probe: StreamOpener,
    *,
    with_credentials: bool = False,
) -> EventSourceStream | Response:
    """An open EventSource on ``url``; or, when the server refused it, the server's answer as read
    by ``probe`` (a streaming GET of the same URL); ``TransportError`` when it cannot be reached."""
    source = EventSourceStream(url, event_types, with_credentials=with_credentials)
    try:
        async with asyncio.timeout(timeout):
            outcome = await source.opened
    except TimeoutError:
        await source.aclose()
        raise TransportError(f"GET {url}: no answer within {timeout:g} s") from None
    if outcome == "open":
        return source
    await source.aclose()
    if outcome == "unreachable":
        raise TransportError(f"cannot reach the server at {url} (GET): the connection failed")
    return await _refusal(url, timeout, probe)


async def _refusal(url: str, timeout: float, probe: StreamOpener) -> Response:
    """What the server answers the URL an EventSource was refused on (at most 64 KiB of it)."""
    response = await probe(url, {"accept": "text/event-stream", "cache-control": "no-cache"}, timeout)
    body = bytearray()
    try:
        if response.status == 200:  # up again since, or not an event stream: try again
            kind = response.headers.get("content-type", "")
            raise TransportError(f"GET {url}: the event stream was refused, then answered 200 ({kind}); retrying")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for chunk in response:
                    body += chunk.encode() if isinstance(chunk, str) else chunk
                    if len(body) > 65536:
                        break
    finally:
        await response.aclose()
    return Response(response.status, dict(response.headers), bytes(body))
