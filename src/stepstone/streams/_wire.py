"""The one I/O seam of the Durable Streams client: a :class:`Transport` sends a request and returns
the whole response, or opens a streaming GET (for SSE). Two implementations: httpx on CPython
(``_httpx``), ``fetch`` in Pyodide (``_fetch``); :func:`default_transport` picks one the way
micropip does, by looking for ``_pyodide_core``.

Also maps HTTP answers to stepstone's stream exceptions, so the client code above this seam never
looks at status codes twice. Stdlib only; must never import httpx, ``js`` or ``pyodide`` at module
level.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._stream_store import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerFenced,
    ProducerSeqGap,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamNotFound,
    StreamSeqConflict,
)

__all__ = [
    "Response",
    "StreamHTTPError",
    "StreamingResponse",
    "Transport",
    "TransportError",
    "default_transport",
    "error_for",
]


class TransportError(StreamError):
    """The server could not be reached, or the connection broke (retrying is safe for reads and
    for idempotent producer batches)."""

    code = "transport_error"
    status = 0


class StreamHTTPError(StreamError):
    """An HTTP error the protocol gives no specific meaning (5xx, 401, 413, …)."""

    code = "http_error"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@runtime_checkable
class StreamingResponse(Protocol):
    """A response whose body arrives in chunks (an SSE stream)."""

    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """Sends HTTP requests. Raise :class:`TransportError` when no response arrives."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response: ...

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> StreamingResponse:
        """Open a streaming GET; the caller reads ``chunks()`` and then ``aclose()``s it."""

    async def aclose(self) -> None: ...


def default_transport() -> Transport:
    """fetch inside Pyodide, httpx elsewhere (install the ``server`` extra, or just httpx)."""
    if "_pyodide_core" in sys.modules or sys.platform == "emscripten":
        from ._fetch import FetchTransport

        return FetchTransport()
    from ._httpx import HttpxTransport

    return HttpxTransport()


_BY_CODE: dict[str, type[StreamError]] = {
    "content_type_mismatch": ContentTypeMismatch,
    "stream_seq_conflict": StreamSeqConflict,
}


def _message(response: Response, url: str) -> tuple[str, str | None]:
    text = response.body.decode("utf-8", errors="replace").strip()
    code = None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            text = str(data["error"].get("message") or text)
    except ValueError:
        pass
    return f"{response.status} from {url}: {text or 'no detail'}", code


def error_for(response: Response, url: str) -> Exception:
    """The exception for a non-2xx answer."""
    message, code = _message(response, url)
    status = response.status
    if status == 404:
        return StreamNotFound(message)
    if status == 410:
        return StreamGone(message)
    if status == 400:
        return InvalidStreamRequest(message)
    if status == 403 and response.header("producer-epoch"):
        return ProducerFenced(message, int(response.header("producer-epoch") or 0))
    if status == 409:
        if (response.header("stream-closed") or "").lower() == "true":
            return StreamClosedError(message, response.header("stream-next-offset") or "")
        expected = response.header("producer-expected-seq")
        if expected is not None:
            received = response.header("producer-received-seq") or "-1"
            return ProducerSeqGap(message, int(expected), int(received))
        return _BY_CODE.get(code or "", StreamConflict)(message)
    return StreamHTTPError(message, status)
