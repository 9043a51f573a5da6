"""The one HTTP seam of stepstone: what a transport is asked (:class:`Request`), what it answers
(:class:`Response`, or a :class:`StreamResponse` for a streaming GET) and the :class:`Transport`
protocol itself. The jobs client (``stepstone.client``) and the Durable Streams client
(``stepstone.streams``) both talk to the network through it and nothing else.

A transport sends one request and returns the whole response, or opens a streaming GET (for
Server-Sent Events) and hands back its body in chunks. It knows nothing of either API: URLs,
JSON, error mapping, SSE parsing and reconnects all live in the clients. It raises
:class:`~stepstone._errors.TransportError` (a ``ServerUnavailable``) when no answer arrives and never
raises on an HTTP error status. Stdlib only; must never import httpx, ``js`` or ``pyodide``.

A transport may also be an :class:`EventSourceTransport`: it opens the platform's own SSE client
(the browser's ``EventSource``), which parses the stream and reconnects by itself with
``Last-Event-ID``, and reports what it sees as :class:`EventSourceStream` items: messages, and
``"lost"`` / ``"open"`` when its connection drops and comes back. It cannot send headers, so the
clients use it only when they have none to send.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._sse import SSEMessage

__all__ = [
    "EventSourceSignal",
    "EventSourceStream",
    "EventSourceTransport",
    "Request",
    "Response",
    "StreamResponse",
    "Transport",
]


@dataclass(frozen=True)
class Request:
    """What a client asks a transport for (``MockTransport`` handlers receive these)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def json(self) -> Any:
        return None if not self.body else json.loads(self.body)


@dataclass(frozen=True)
class Response:
    """A whole HTTP response. Header names are lower case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), or None."""
        return self.headers.get(name)


@runtime_checkable
class StreamResponse(Protocol):
    """An open streaming response: its status and headers, then its body in chunks (bytes or text;
    the SSE parser decodes UTF-8 split across chunks).

    Iterate it once; ``aclose()`` releases the connection (and is safe to call twice).
    """

    status: int
    headers: Mapping[str, str]

    def __aiter__(self) -> AsyncIterator[bytes | str]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Sends HTTP requests for the clients. ``timeout`` bounds getting an answer (for a stream:
    its status line and headers; a live body may stay quiet as long as it likes)."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and read the whole response."""
        ...

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> StreamResponse:
        """Open a streaming GET; returns once the status line and headers are in."""
        ...

    async def aclose(self) -> None:
        """Release connections. The transport is not used afterwards."""
        ...


#: What an open EventSource reports besides messages: ``"lost"``, its connection dropped (or a
#: reconnect failed) and it is reconnecting by itself; ``"open"``, a reconnect got through.
EventSourceSignal = Literal["lost", "open"]


@runtime_checkable
class EventSourceStream(Protocol):
    """An open native SSE connection: iterate it once for :class:`~stepstone._sse.SSEMessage` items
    (only of the event types asked for, plus unnamed ``message`` events) and :data:`EventSourceSignal`
    items. Iteration ends when the connection is closed for good: a reconnect was refused (an
    answer other than 200 ``text/event-stream``) or ``aclose()`` was called. Keep-alive comments
    are invisible here. ``aclose()`` is safe to call twice."""

    def __aiter__(self) -> AsyncIterator[SSEMessage | EventSourceSignal]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EventSourceTransport(Transport, Protocol):
    """A :class:`Transport` that can also open the platform's native SSE client (no headers)."""

    async def event_source(
        self, url: str, event_types: Sequence[str], timeout: float | None = None
    ) -> EventSourceStream | Response:
        """Open ``url`` and return once it is open. When the server answers anything but a 200
        event stream, return that answer as a :class:`Response` (status, headers, body) so the
        client maps it as it maps any other; raise ``TransportError`` when it cannot be reached."""
        ...
