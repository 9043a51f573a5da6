"""The one HTTP seam of stepstone: what a transport is asked (:class:`Request`), what it answers
(:class:`Response`, or a :class:`StreamResponse` for a streaming GET) and the :class:`Transport`
protocol itself. The jobs client (``stepstone.client``) and the Durable Streams client
(``stepstone.streams``) both talk to the network through it and nothing else.

A transport sends one request and returns the whole response, or opens a streaming GET (for
Server-Sent Events) and hands back its body in chunks. It knows nothing of either API: URLs,
JSON, error mapping, SSE parsing and reconnects all live in the clients. It raises
:class:`~stepstone._errors.TransportError` (a ``ServerUnavailable``) when no answer arrives and never
raises on an HTTP error status. Stdlib only; must never import httpx, ``js`` or ``pyodide``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Request", "Response", "StreamResponse", "Transport"]


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
