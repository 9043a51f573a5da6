"""``DurableStream``: a handle on one Durable Streams URL — create, append, close, delete, head,
catch-up reads from an offset, and live tails (SSE or long-poll) that resume from the last offset
after a dropped connection.

Stdlib + asyncio only; all I/O goes through stepstone's one HTTP seam (:mod:`stepstone._http`), so
the same code runs on CPython (httpx) and in Pyodide (fetch). Must never import httpx, ``js`` or ``pyodide``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .._errors import StreamHTTPError, TransportError
from .._http import Response, Transport, default_transport
from .._sse import SSEParser
from .._stream_models import is_json_type
from ._wire import error_for

__all__ = ["Chunk", "DurableStream", "StreamMeta", "encode_message"]

_RETRY_MAX = 5.0


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What HEAD says about a stream."""

    content_type: str
    next_offset: str
    closed: bool
    ttl: int | None = None
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Data read from a stream, and the offset to resume from after it.

    ``data`` is the raw body: bytes for a byte stream, a JSON array for a JSON stream
    (:meth:`json` parses it). ``up_to_date``: the read reached the tail. ``closed``: the stream is
    closed and nothing follows ``offset``.
    """

    data: bytes
    offset: str
    up_to_date: bool
    closed: bool
    content_type: str

    def json(self) -> list[Any]:
        """The messages of a JSON stream (an empty list for an empty chunk)."""
        if not self.data:
            return []
        value = json.loads(self.data)
        return value if isinstance(value, list) else [value]

    def text(self) -> str:
        return self.data.decode("utf-8")


def encode_message(value: Any, json_mode: bool) -> bytes:
    """One message's bytes. JSON streams: ``bytes`` are taken as JSON text already, anything else
    (``str`` included) is encoded as a JSON value. Byte streams: ``bytes`` as is, ``str`` as UTF-8."""
    if json_mode:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"a byte stream takes bytes or str, not {type(value).__name__}; use a JSON stream for values")


def _join_json(parts: list[bytes]) -> bytes:
    inner = [p.strip()[1:-1].strip() for p in parts]
    return b"[" + b",".join(i for i in inner if i) + b"]"


class DurableStream:
    """A Durable Streams URL, e.g. ``http://127.0.0.1:8000/v1/stream/orders``.

        stream = await DurableStream.create(url, content_type="application/json")
        await stream.append({"type": "order.created"})
        async for message in stream.messages("-1"):   # catch up, then follow live until closed
            ...

    ``headers`` go with every request (e.g. ``Authorization``). ``transport`` defaults to httpx on
    CPython and fetch in Pyodide.
    """

    def __init__(
        self,
        url: str,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.content_type = content_type
        self.headers = dict(headers or {})
        self._owns_transport = transport is None
        self.transport: Transport = transport if transport is not None else default_transport()

    async def __aenter__(self) -> DurableStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the transport if this handle created it."""
        if self._owns_transport:
            await self.transport.aclose()

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    async def create(
        cls,
        url: str,
        *,
        content_type: str = "application/octet-stream",
        ttl: int | None = None,
        expires_at: str | None = None,
        closed: bool = False,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
    ) -> DurableStream:
        """Create the stream (201), or confirm it exists with this configuration (200); a different
        configuration raises StreamConflict. ``data`` is an initial message (JSON) or bytes."""
        stream = cls(url, content_type=content_type, headers=headers, transport=transport)
        extra = {"content-type": content_type}
        if ttl is not None:
            extra["stream-ttl"] = str(ttl)
        if expires_at is not None:
            extra["stream-expires-at"] = expires_at
        if closed:
            extra["stream-closed"] = "true"
        body = None
        if data is not None:
            json_mode = is_json_type(content_type)
            body = b"[" + encode_message(data, True) + b"]" if json_mode else encode_message(data, False)
        try:
            await stream._call("PUT", stream.url, extra, body)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    @classmethod
    async def connect(
        cls, url: str, *, headers: Mapping[str, str] | None = None, transport: Transport | None = None
    ) -> DurableStream:
        """A handle on an existing stream (HEAD; StreamNotFound if there is none)."""
        stream = cls(url, headers=headers, transport=transport)
        try:
            await stream.head()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def head(self) -> StreamMeta:
        response = await self._call("HEAD", self.url, {})
        ttl = response.header("stream-ttl")
        meta = StreamMeta(
            content_type=response.header("content-type") or "application/octet-stream",
            next_offset=response.header("stream-next-offset") or "",
            closed=(response.header("stream-closed") or "").lower() == "true",
            ttl=int(ttl) if ttl and ttl.isdigit() else None,
            expires_at=response.header("stream-expires-at"),
        )
        self.content_type = meta.content_type
        return meta

    async def delete(self) -> None:
        await self._call("DELETE", self.url, {})

    # -- writing -------------------------------------------------------------------------------
    async def _json_mode(self) -> bool:
        if self.content_type is None:
            await self.head()
        return is_json_type(self.content_type)

    async def append(self, data: Any, *, seq: str | None = None) -> str:
        """Append one message (see :func:`encode_message`); returns the new tail offset. Not
        deduplicated on retry — use :class:`~stepstone.streams.IdempotentProducer` for that."""
        json_mode = await self._json_mode()
        body = encode_message(data, json_mode)
        return await self._post(b"[" + body + b"]" if json_mode else body, seq=seq)

    async def append_many(self, messages: list[Any], *, seq: str | None = None) -> str:
        """Append several messages of a JSON stream in one request (one offset for the batch)."""
        if not await self._json_mode():
            raise TypeError("append_many is for JSON streams; append bytes to a byte stream")
        if not messages:
            raise ValueError("append_many needs at least one message")
        return await self._post(b"[" + b",".join(encode_message(m, True) for m in messages) + b"]", seq=seq)

    async def _post(self, body: bytes, *, seq: str | None = None, close: bool = False) -> str:
        extra = {"content-type": self.content_type or "application/octet-stream"}
        if seq is not None:
            extra["stream-seq"] = seq
        if close:
            extra["stream-closed"] = "true"
        response = await self._call("POST", self.url, extra, body)
        return response.header("stream-next-offset") or ""

    async def close(self, data: Any = None) -> str:
        """Close the stream (optionally appending a last message); returns the final offset.
        Closing an already closed stream with no data is fine."""
        if data is None:
            return await self._post(b"", close=True)
        json_mode = await self._json_mode()
        body = encode_message(data, json_mode)
        return await self._post(b"[" + body + b"]" if json_mode else body, close=True)

    # -- reading -------------------------------------------------------------------------------
    def _read_url(self, offset: str, live: str | None = None, cursor: str | None = None) -> str:
        url = f"{self.url}?offset={quote(offset, safe='')}"
        if live:
            url += f"&live={live}"
        if cursor:
            url += f"&cursor={quote(cursor, safe='')}"
        return url

    def _chunk(self, response: Response, fallback: str) -> Chunk:
        content_type = response.header("content-type") or self.content_type or "application/octet-stream"
        self.content_type = content_type
        return Chunk(
            data=response.body,
            offset=response.header("stream-next-offset") or fallback,
            up_to_date=(response.header("stream-up-to-date") or "").lower() == "true",
            closed=(response.header("stream-closed") or "").lower() == "true",
            content_type=content_type,
        )

    async def read(self, offset: str = "-1") -> Chunk:
        """One catch-up read from ``offset`` (``-1``: the start; ``now``: the tail); servers may
        return a partial page — continue from ``chunk.offset`` until ``chunk.up_to_date``."""
        return self._chunk(await self._call("GET", self._read_url(offset), {}), offset)

    async def read_all(self, offset: str = "-1") -> Chunk:
        """Everything from ``offset`` to the current tail, paging as needed, as one chunk."""
        parts: list[bytes] = []
        while True:
            chunk = await self.read(offset)
            parts.append(chunk.data)
            offset = chunk.offset
            if chunk.up_to_date:
                json_mode = is_json_type(chunk.content_type)
                data = _join_json(parts) if json_mode else b"".join(parts)
                return Chunk(data, offset, True, chunk.closed, chunk.content_type)

    async def tail(self, offset: str = "-1", *, live: str = "sse") -> AsyncIterator[Chunk]:
        """Catch up from ``offset``, then follow new data as it arrives, until the stream closes.

        ``live`` is ``"sse"`` (one streaming response) or ``"long-poll"``. A dropped connection or
        a restarting server is retried from the last offset with backoff, so nothing is missed or
        repeated. Stop early by breaking out of the loop.
        """
        if live not in ("sse", "long-poll"):
            raise ValueError(f"live must be 'sse' or 'long-poll', not {live!r}")
        if self.content_type is None:
            await self.head()
        follow = self._sse if live == "sse" else self._long_poll
        delay = 0.05
        state = {"offset": offset, "cursor": ""}
        while True:
            try:
                async for chunk in follow(state):
                    delay = 0.05
                    yield chunk
                    if chunk.closed:
                        return
                continue  # the server ended the response: reconnect from the offset
            except (TransportError, StreamHTTPError) as exc:
                if isinstance(exc, StreamHTTPError) and exc.status < 500:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    async def messages(self, offset: str = "-1", *, live: str = "sse") -> AsyncIterator[Any]:
        """Each message of a JSON stream, from ``offset`` on, live until the stream closes."""
        async for chunk in self.tail(offset, live=live):
            for message in chunk.json():
                yield message

    async def _long_poll(self, state: dict[str, str]) -> AsyncIterator[Chunk]:
        while True:
            url = self._read_url(state["offset"], "long-poll", state["cursor"] or None)
            response = await self._call("GET", url, {}, timeout=300.0)
            state["cursor"] = response.header("stream-cursor") or state["cursor"]
            chunk = self._chunk(response, state["offset"])
            state["offset"] = chunk.offset
            if response.status == 204 and not chunk.closed:
                continue
            yield chunk

    async def _sse(self, state: dict[str, str]) -> AsyncIterator[Chunk]:
        url = self._read_url(state["offset"], "sse", state["cursor"] or None)
        response = await self.transport.stream(url, {"accept": "text/event-stream", **self.headers})
        try:
            if response.status != 200:
                body = b"".join([c.encode() if isinstance(c, str) else c async for c in response])
                raise error_for(Response(response.status, response.headers, body), url)
            content_type = self.content_type or "application/octet-stream"
            b64 = (response.headers.get("stream-sse-data-encoding") or "").lower() == "base64"
            json_mode = is_json_type(content_type)
            parser = SSEParser()
            pending: list[bytes] = []
            async for raw in response:
                for event in parser.feed(raw):
                    if event.event == "data":
                        pending.append(base64.b64decode(event.data) if b64 else event.data.encode())
                    elif event.event == "control":
                        control = json.loads(event.data)
                        state["offset"] = control.get("streamNextOffset", state["offset"])
                        state["cursor"] = control.get("streamCursor", state["cursor"])
                        closed = bool(control.get("streamClosed"))
                        if pending or closed:
                            data = _join_json(pending) if json_mode else b"".join(pending)
                            up_to_date = bool(control.get("upToDate")) or closed
                            yield Chunk(data, state["offset"], up_to_date, closed, content_type)
                            pending = []
        finally:
            await response.aclose()

    # -- plumbing ------------------------------------------------------------------------------
    async def _call(
        self, method: str, url: str, extra: Mapping[str, str], body: bytes | None = None, timeout: float | None = None
    ) -> Response:
        response = await self.transport.request(method, url, {**self.headers, **extra}, body, timeout)
        if response.status >= 400:
            raise error_for(response, url)
        return response
