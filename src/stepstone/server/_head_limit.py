"""A cap on the request head (request line and headers) for ``stepstone serve``: past
``max_head`` bytes the connection gets ``431 request_header_fields_too_large`` and is closed.

uvicorn's httptools protocol sets no such limit (a 64 MB header is read, buffered and handed to
the app), and the app cannot help: by the time it sees a request, the whole head is in memory. So
the cap lives in the protocol: bytes are counted as they arrive while a head is incomplete (at
most ``max_head`` plus one read is ever buffered), and a head that completed within a read is
measured exactly. It holds for every endpoint: the jobs API, the Durable Streams, the site.
Without httptools, uvicorn's h11 protocol enforces the same size itself (answering 400).

Server-only (imports uvicorn and httptools).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

__all__ = ["DEFAULT_MAX_HEAD", "head_limited_protocol"]

#: The largest request head (request line plus headers) ``stepstone serve`` accepts, in bytes.
DEFAULT_MAX_HEAD = 64 * 1024

#: Seconds a refused connection keeps reading (and dropping) what its client still sends before it
#: is closed: closing with unread data would reset the connection, and the client could lose the
#: 431 answer before it read it.
_LINGER = 2.0


class _HeadTooLarge(Exception):
    pass


def head_limited_protocol(max_head: int) -> tuple[type[asyncio.Protocol] | str, dict[str, Any]]:
    """``(http protocol, extra uvicorn.Config options)`` enforcing ``max_head``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is part of the server extra
        return "h11", {"h11_max_incomplete_event_size": max_head}

    class HeadLimitedProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, answering 431 to a request head over ``max_head`` bytes."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # between the end of a message (or the connection's start) and its headers
            self._head_bytes = 0
            self._head_too_large = False
            self._refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:  # answered and half-closed: drop the rest
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > max_head and not (self._refused or self.transport.is_closing()):
                self._refuse()

        def on_headers_complete(self) -> None:
            self._in_head = False
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > max_head:
                self._head_too_large = True
                raise _HeadTooLarge  # httptools stops parsing; uvicorn answers through send_400_response
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._head_bytes = 0

        def send_400_response(self, msg: str) -> None:
            if self._head_too_large:
                self._refuse()
            else:
                super().send_400_response(msg)

        def _refuse(self) -> None:
            body = json.dumps(
                {
                    "error": {
                        "code": "request_header_fields_too_large",
                        "message": f"the request line and headers are larger than {max_head} bytes",
                    }
                }
            ).encode()
            head = (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n"
            )
            self._refused = True
            self.transport.write(head + body)
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(_LINGER, self.transport.close)
            else:  # pragma: no cover - TCP transports can
                self.transport.close()

    return HeadLimitedProtocol, {}
