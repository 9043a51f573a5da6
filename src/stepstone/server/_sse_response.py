"""The SSE response: streams pre-framed SSE bytes to one client, with keep-alive comments, and
stops the moment the client disconnects or the server shuts down.

Starlette's ``StreamingResponse`` only notices a vanished client on its next write when the server
speaks ASGI 2.4, and an idle SSE stream may not write for a long time; so this response always races
the body against ``receive()`` (``http.disconnect``), as Starlette does for older servers. Whichever
ends first cancels the others, and the frame iterator is closed (its ``finally`` blocks run) before
the response returns.

A gone client is never trusted to make itself known through a failed write: uvicorn drops writes to a
closed connection without a word, so a pump that only stopped on a write error would go on feeding
nobody for as long as its source yields. The pump stops at its next chunk once the client is gone,
and the response cancels it again and again until it has really finished, so even a source that
swallows one cancellation (as ``asyncio.wait_for`` could on Python 3.11) cannot outlive its client.
:attr:`StreamRegistry.pumps` counts the pumps still running, for leak checks.

Written on plain asyncio tasks and methods rather than a task group of closures: a stream that ends
leaves no reference cycle behind, so its memory goes back at once instead of waiting for a full GC
pass over every other open stream (which is what made delivery to 1,000 subscribers stall).

Server-only (imported by the starlette app; asyncio servers such as uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from starlette.types import Receive, Scope, Send

from .._sse import format_comment

__all__ = ["SSE_HEADERS", "EventStreamResponse", "StreamRegistry"]

log = logging.getLogger("stepstone.server")

SSE_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
}

_KEEPALIVE = format_comment("keep-alive")


class StreamRegistry:
    """The open SSE streams of one app: counted (for leak checks), and all ended by :meth:`close_all`
    at shutdown so that a graceful stop does not wait on clients that never hang up."""

    def __init__(self) -> None:
        self._streams: set[EventStreamResponse] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def open(self) -> int:
        """How many SSE responses are in progress."""
        return len(self._streams)

    @property
    def pumps(self) -> int:
        """How many frame pumps (the tasks that read a feed and write it out) are still running:
        zero once every client has gone, or something leaks."""
        return len(self._pumps)

    def track(self, pump: asyncio.Task[None]) -> None:
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    def add(self, stream: EventStreamResponse) -> None:
        self._streams.add(stream)
        if self.closed:
            stream.stop()

    def discard(self, stream: EventStreamResponse) -> None:
        self._streams.discard(stream)

    def close_all(self) -> None:
        self.closed = True
        for stream in list(self._streams):
            stream.stop()


class EventStreamResponse:
    """An ASGI response for ``text/event-stream`` bodies made of already-framed SSE bytes."""

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        *,
        keepalive: float,
        registry: StreamRegistry,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.frames = frames
        self.keepalive = keepalive
        self.registry = registry
        self.headers = {**SSE_HEADERS, **(headers or {})}
        self._gone = False
        self._ended = False  # the response is finishing: the pump must not write again
        self._last_write = 0.0
        self._stopped: asyncio.Event | None = None

    def stop(self) -> None:
        """End the stream now (server shutdown); the client reconnects elsewhere by id."""
        if self._stopped is not None:
            self._stopped.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        self._stopped = asyncio.Event()
        self._last_write = time.monotonic()
        pump = asyncio.ensure_future(self._pump(send))
        self.registry.track(pump)
        tasks = [
            pump,
            asyncio.ensure_future(self._watch_client(receive)),
            asyncio.ensure_future(self._stopped.wait()),
        ]
        if self.keepalive > 0:
            tasks.append(asyncio.ensure_future(self._keep_alive(send)))
        self.registry.add(self)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            self._gone = True
        finally:
            self._ended = True
            await _cancel_until_done(tasks)  # the frame iterator's cleanup (aclose) has run when we return
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    log.error("stepstone: an event stream task failed", exc_info=task.exception())
            tasks.clear()
            self.registry.discard(self)
        if not self._gone:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    # No lock between the pump and the keep-alive: each ``send`` writes one whole message (complete
    # SSE frames), so the two can only interleave between frames, never inside one.
    async def _write(self, send: Send, chunk: bytes) -> bool:
        if self._gone or self._ended:  # uvicorn would drop it silently: stop instead
            return False
        self._last_write = time.monotonic()
        try:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the socket went away under us: same as a disconnect
            self._gone = True
            return False
        return True

    async def _pump(self, send: Send) -> None:
        frames = self.frames
        try:
            async for chunk in frames:
                if not await self._write(send, chunk):
                    return
        except Exception:  # the store failed mid-stream: end it; the client resumes by id
            log.exception("stepstone: an event stream failed")
        finally:
            await frames.aclose()

    async def _keep_alive(self, send: Send) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._last_write + self.keepalive - time.monotonic()))
            if time.monotonic() - self._last_write >= self.keepalive and not await self._write(send, _KEEPALIVE):
                return

    async def _watch_client(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone = True


async def _cancel_until_done(tasks: Sequence[asyncio.Future[Any]], patience: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until all have finished, cancelling the stragglers again every
    ``patience`` seconds: one cancellation can be lost (a callee that catches it, or
    ``asyncio.wait_for`` on Python 3.11 when the awaited thing completes in the same tick), and a
    pump that survived its cancellation would feed a gone client forever."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
