"""The one seam between the client's logic and the network: a small transport protocol.

A transport sends one HTTP request and returns the whole response, or opens a streaming GET (for
Server-Sent Events) and hands back its body chunks. It knows nothing of stepstone's API: URLs,
JSON, error mapping, SSE parsing and reconnects all live in the client core. Implementations:
``HTTPXTransport`` (CPython, httpx), ``FetchTransport`` (Pyodide, the browser's fetch) and
``MockTransport`` (tests).

A transport raises :class:`~stepstone.ServerUnavailable` when the server cannot be reached and never
raises on an HTTP error status. Stdlib only; must never import httpx, js or pyodide.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Request", "Response", "StreamResponse", "Transport"]


@dataclass(frozen=True)
class Request:
    """What the client asks a transport for (``MockTransport`` handlers receive these)."""

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
    """Sends requests for a :class:`~stepstone.client.Client`."""

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        """Send one request and read the whole response."""
        ...

    async def stream(self, url: str, headers: Mapping[str, str]) -> StreamResponse:
        """Open a streaming GET; returns once the status line and headers are in."""
        ...

    async def aclose(self) -> None:
        """Release connections. The transport is not used afterwards."""
        ...
