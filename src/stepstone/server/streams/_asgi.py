"""Raw-ASGI plumbing for the Durable Streams server: requests, responses, the headers every
response carries (CORS, browser security), JSON errors, cursors and ETags.

The protocol needs exact control of headers (``Content-Type`` echoed byte for byte, no charset
added, no ``Content-Length`` on SSE), and appends are the hot path, so this speaks ASGI directly
instead of going through a framework's request and response objects. Server-only; never imported
by ``stepstone/__init__.py`` or the browser path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from .._errors import error_body

__all__ = [
    "CORS_HEADERS",
    "PREFLIGHT_HEADERS",
    "Receive",
    "Request",
    "Scope",
    "Send",
    "disconnected",
    "etag",
    "make_cursor",
    "send_error",
    "send_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_ALLOW_HEADERS = (
    "content-type, authorization, if-none-match, last-event-id, Stream-Seq, Stream-TTL, Stream-Expires-At, "
    "Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, Stream-Fork-Offset, "
    "Stream-Fork-Sub-Offset"
)
_EXPOSE_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, Stream-Expires-At, "
    "Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, "
    "etag, content-type, content-encoding, location, vary"
)

#: Sent on every response, errors and SSE included.
CORS_HEADERS: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", _EXPOSE_HEADERS.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]

#: Added to preflight (OPTIONS) answers, the only place browsers read them.
PREFLIGHT_HEADERS: Headers = [
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, HEAD, OPTIONS"),
    (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
    (b"access-control-max-age", b"600"),
]

_CURSOR_EPOCH = 1728432000.0  # 2024-10-09T00:00:00Z
_CURSOR_INTERVAL = 20


class Request:
    """The parts of an ASGI HTTP request the protocol reads."""

    __slots__ = ("_query", "headers", "method", "path", "receive", "root", "scope")

    def __init__(self, scope: Scope, receive: Receive, path: str) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path = path
        self.root: str = scope.get("root_path", "")
        self.headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self._query: dict[str, list[str]] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            self._query = parse_qs(raw, keep_blank_values=True)
        return self._query

    def base_url(self) -> str:
        """``scheme://host`` + the mount point: the URL this app's paths are relative to."""
        scheme = self.scope.get("scheme", "http")
        host = self.headers.get("host")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}{self.root}"

    async def body(self, limit: int) -> bytes | None:
        """The whole body, or None once it grows past ``limit`` bytes (at once, without reading a
        byte of it, when the declared ``Content-Length`` already says so)."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("the client went away while sending its body")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def send_response(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    out = headers + CORS_HEADERS
    if status not in (204, 304):
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body if status not in (204, 304) else b""})


async def send_error(send: Send, status: int, code: str, message: str, headers: Headers | None = None) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send_response(send, status, [*(headers or []), (b"content-type", b"application/json")], body)


def make_cursor(client_cursor: str | None) -> str:
    """The ``Stream-Cursor`` for a live response: the current 20 s interval, or — when the client
    already holds that interval or a later one — its cursor plus random jitter, so CDN cache keys
    keep moving and never cycle."""
    interval = int((time.time() - _CURSOR_EPOCH) // _CURSOR_INTERVAL)
    if not client_cursor or not client_cursor.isdigit() or int(client_cursor) < interval:
        return str(interval)
    jitter = max(1, math.ceil(random.uniform(1, 3600) / _CURSOR_INTERVAL))
    return str(int(client_cursor) + jitter)


def etag(path: str, start: str, end: str, closed: bool) -> bytes:
    encoded = base64.b64encode(path.encode()).decode()
    return f'"{encoded}:{start}:{end}{":c" if closed else ""}"'.encode()


async def disconnected(receive: Receive) -> None:
    """Return once the client has gone away (for racing against a long wait)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def wait_or_disconnect(waiter: Awaitable[None], gone: asyncio.Task[None]) -> bool:
    """Await ``waiter`` unless the client leaves first; True if the client is still there."""
    task = asyncio.ensure_future(waiter)
    done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return not gone.done()
