"""GET on a stream: catch-up reads (ETag/304, paging), long-poll and SSE live reads.

Written against :class:`Source`, so a stored stream and a run's event log (read-only) are served
by the same code. Server-only; never imported by ``stepstone/__init__.py`` or the browser path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Protocol

from ..._errors import InvalidStreamRequest, StreamGone, StreamNotFound
from ..._sse import format_event
from ..._stream_models import Offset, ReadResult, format_offset, normalize_content_type, parse_offset
from ._asgi import (
    CORS_HEADERS,
    Headers,
    Request,
    Send,
    disconnected,
    etag,
    make_cursor,
    send_response,
    wait_or_disconnect,
)

__all__ = ["ReadOptions", "Source", "serve_read"]

_UP_TO_DATE = (b"stream-up-to-date", b"true")
_CLOSED = (b"stream-closed", b"true")
_IMMUTABLE = (b"cache-control", b"public, max-age=60, stale-while-revalidate=300")
_REVALIDATE = (b"cache-control", b"no-cache")
_NO_STORE = (b"cache-control", b"no-store")


class Source(Protocol):
    """Something readable as a stream."""

    path: str
    content_type: str
    is_json: bool

    async def state(self) -> tuple[Offset, bool]:
        """``(tail, closed)`` now; raises StreamNotFound / StreamGone when it went away."""

    async def read(self, after: Offset, max_bytes: int) -> ReadResult: ...

    async def wait(self, after: Offset, timeout: float) -> None: ...


class ReadOptions:
    """Server-wide read settings."""

    __slots__ = ("live", "long_poll_timeout", "page_bytes", "sse_max_age")

    def __init__(self, long_poll_timeout: float, page_bytes: int, sse_max_age: float) -> None:
        self.long_poll_timeout = long_poll_timeout
        self.page_bytes = page_bytes
        self.sse_max_age = sse_max_age
        #: live reads (long-polls and SSE responses) in progress: zero once their clients are gone
        self.live = 0


def parse_read_offset(request: Request) -> str | None:
    """The ``offset`` query parameter, validated: None when absent."""
    values = request.query.get("offset")
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidStreamRequest("give the offset parameter once")
    value = values[0]
    if value in ("-1", "now") or parse_offset(value) is not None:
        return value
    raise InvalidStreamRequest(f"{value!r} is not an offset (use -1, now, or a Stream-Next-Offset value)")


def _last(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None


def _start(offset: str | None, tail: Offset) -> Offset:
    if offset is None or offset == "-1":
        return (0, 0)
    if offset == "now":
        return tail
    parsed = parse_offset(offset)
    assert parsed is not None
    return parsed


def _body(source: Source, result: ReadResult) -> bytes:
    if source.is_json:
        return b"[" + b",".join(r.data for r in result.records) + b"]"
    return b"".join(r.data for r in result.records)


async def serve_read(request: Request, send: Send, source: Source, options: ReadOptions) -> None:
    offset = parse_read_offset(request)
    live = _last(request, "live")
    if live is not None and live not in ("long-poll", "sse"):
        raise InvalidStreamRequest(f"live must be long-poll or sse, not {live!r}")
    cursor = _last(request, "cursor")
    if live in ("long-poll", "sse") and offset is None:
        raise InvalidStreamRequest(f"live={live} needs an offset (-1 for the start, now for the tail)")
    tail, _ = await source.state()
    if live == "sse":
        await _serve_sse(request, send, source, _start(offset, tail), cursor, options)
        return
    if offset == "now" and live != "long-poll":
        tail, closed = await source.state()
        headers: Headers = [
            (b"content-type", source.content_type.encode()),
            (b"stream-next-offset", format_offset(tail).encode()),
            _UP_TO_DATE,
            _NO_STORE,
        ]
        if closed:
            headers.append(_CLOSED)
        await send_response(send, 200, headers, b"[]" if source.is_json else b"")
        return
    after = _start(offset, tail)
    result = await source.read(after, options.page_bytes)
    if live == "long-poll" and not result.records:
        if result.closed:
            headers = [(b"stream-next-offset", format_offset(result.tail).encode()), _UP_TO_DATE, _CLOSED]
            await send_response(send, 204, headers)
            return
        waited = await _long_poll(request, source, after, options)
        if waited is None:
            return
        result = waited
        if not result.records:
            headers = [(b"stream-next-offset", format_offset(max(after, result.tail)).encode()), _UP_TO_DATE]
            headers.append(_CLOSED if result.closed else (b"stream-cursor", make_cursor(cursor).encode()))
            await send_response(send, 204, headers)
            return
    await _send_page(request, send, source, offset, result, make_cursor(cursor) if live == "long-poll" else None)


async def _long_poll(request: Request, source: Source, after: Offset, options: ReadOptions) -> ReadResult | None:
    """Wait for data after ``after``; None if the client left meanwhile."""
    gone = asyncio.ensure_future(disconnected(request.receive))
    options.live += 1
    try:
        deadline = time.monotonic() + options.long_poll_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await wait_or_disconnect(source.wait(after, remaining), gone):
                if gone.done():
                    return None
                return await source.read(after, options.page_bytes)
            result = await source.read(after, options.page_bytes)
            if result.records or result.closed:
                return result
    finally:
        options.live -= 1
        gone.cancel()


async def _send_page(
    request: Request, send: Send, source: Source, offset: str | None, result: ReadResult, cursor: str | None
) -> None:
    end = result.next_offset or result.tail
    up_to_date = end >= result.tail
    closed = result.closed and up_to_date
    next_offset = format_offset(end)
    tag = etag(source.path, offset or "-1", next_offset, closed)
    headers: Headers = [(b"etag", tag)]
    if request.header("if-none-match") == tag.decode():
        await send_response(send, 304, headers)
        return
    headers += [
        (b"content-type", source.content_type.encode()),
        (b"stream-next-offset", next_offset.encode()),
        _REVALIDATE if up_to_date else _IMMUTABLE,
    ]
    if up_to_date:
        headers.append(_UP_TO_DATE)
    if closed:
        headers.append(_CLOSED)
    elif cursor is not None:
        headers.append((b"stream-cursor", cursor.encode()))
    await send_response(send, 200, headers, _body(source, result))


# -- SSE -------------------------------------------------------------------------------------------
def _is_text(content_type: str) -> bool:
    media = normalize_content_type(content_type)
    return media.startswith("text/") or media == "application/json"


def _control(next_offset: Offset, cursor: str | None, up_to_date: bool, closed: bool) -> bytes:
    fields: dict[str, object] = {"streamNextOffset": format_offset(next_offset)}
    if closed:
        fields["streamClosed"] = True
        fields["upToDate"] = True
    else:
        fields["streamCursor"] = make_cursor(cursor)
        if up_to_date:
            fields["upToDate"] = True
    return format_event(json.dumps(fields, separators=(",", ":")), event="control", compact=True)


def _data_event(source: Source, result: ReadResult, text: bool) -> bytes:
    raw = _body(source, result)
    payload = raw.decode("utf-8", errors="replace") if text else base64.b64encode(raw).decode("ascii")
    return format_event(payload, event="data", compact=True)


async def _serve_sse(
    request: Request, send: Send, source: Source, after: Offset, cursor: str | None, options: ReadOptions
) -> None:
    text = _is_text(source.content_type)
    headers: Headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    if not text:
        headers.append((b"stream-sse-data-encoding", b"base64"))
    await send({"type": "http.response.start", "status": 200, "headers": headers + CORS_HEADERS})
    gone = asyncio.ensure_future(disconnected(request.receive))
    deadline = time.monotonic() + options.sse_max_age
    client_left = False
    options.live += 1
    try:
        announce = True  # the client needs a control event before it is told anything else
        while True:
            result = await source.read(after, options.page_bytes)
            if result.records:
                end = result.records[-1].end
                at_tail = end >= result.tail
                chunk = _data_event(source, result, text)
                chunk += _control(end, cursor, at_tail, result.closed and at_tail)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                after, announce = end, False
                if result.closed and at_tail:
                    break
                # uvicorn drops writes to a gone client without a word, and neither the read nor
                # the write need suspend: let the disconnect in, and stop catching up for nobody
                await asyncio.sleep(0)
                if gone.done():
                    client_left = True
                    break
                continue
            if result.closed:
                body = _control(max(after, result.tail), cursor, True, True)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                break
            if announce:
                body = _control(max(after, result.tail), cursor, True, False)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                announce = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            timeout = min(options.long_poll_timeout, remaining)
            waited = time.monotonic()
            if not await wait_or_disconnect(source.wait(after, timeout), gone):
                client_left = True
                break
            if time.monotonic() - waited >= timeout:
                announce = True  # a quiet interval: send a keep-alive control event
    except (StreamNotFound, StreamGone):
        pass
    finally:
        options.live -= 1
        gone.cancel()
    if not client_left:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
