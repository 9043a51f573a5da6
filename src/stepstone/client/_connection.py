"""How the client reads one live stream: reconnect pacing (:class:`Backoff`) and the two ways a
stream is carried, a streaming GET parsed here (:class:`FetchConnection`) or the browser's own
``EventSource`` (:class:`NativeConnection`). Stdlib + asyncio only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from .._errors import ServerUnavailable
from .._http import EventSourceStream, StreamResponse
from .._sse import SSEMessage, SSEParser

__all__ = ["Backoff", "Connection", "FetchConnection", "Gap", "NativeConnection"]


class Backoff:
    """Reconnect pacing: exponential delays (or the server's ``retry:``), capped, and a give-up
    budget of ``budget`` seconds without reaching the server."""

    def __init__(self, first: float, cap: float, budget: float) -> None:
        self.first, self.cap, self.budget = first, cap, budget
        self.delay = first
        self.hint: float | None = None
        self.failing_since: float | None = None

    def alive(self) -> None:
        """The server sent something (a keep-alive will do): the give-up clock starts over."""
        self.failing_since = None

    def lost(self) -> None:
        """The connection dropped and is being re-established elsewhere (a native EventSource):
        the give-up clock starts, unless it is already running."""
        if self.failing_since is None:
            self.failing_since = asyncio.get_running_loop().time()

    def progressed(self) -> None:
        self.failing_since = None
        self.delay = self.first

    async def wait(self, error: BaseException) -> None:
        """Sleep before the next attempt, or raise ``error`` once the budget is spent."""
        now = asyncio.get_running_loop().time()
        if self.failing_since is None:
            self.failing_since = now
        elif now - self.failing_since >= self.budget:
            raise error
        delay = self.hint if self.hint is not None else self.delay
        self.delay = min(self.delay * 2, self.cap)
        await asyncio.sleep(min(delay, self.cap))


class Gap(Exception):
    """The stream skipped a seq: reconnect from the first missing one."""


def _never() -> bool:
    return False


class Connection(Protocol):
    """One live stream as the client reads it, whichever way it is carried."""

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream carried (an id-only frame too, where it can see one)."""
        ...

    def messages(self, backoff: Backoff, ended: Callable[[], bool] = ...) -> AsyncIterator[SSEMessage]:
        """The stream's messages; ``ended()`` says whether the server would end it here (a run's
        stream after its final event), so that a drop at that point is its end."""
        ...

    async def aclose(self) -> None: ...


class FetchConnection:
    """A streaming GET, parsed here; it ends when the response does, and a silence longer than
    ``idle_timeout`` (the server's keep-alives stopped) counts as a drop."""

    def __init__(self, response: StreamResponse, idle_timeout: float) -> None:
        self._response = response
        self._idle_timeout = idle_timeout
        self._parser = SSEParser()

    @property
    def last_event_id(self) -> str | None:
        return self._parser.last_event_id

    async def messages(self, backoff: Backoff, ended: Callable[[], bool] = _never) -> AsyncIterator[SSEMessage]:
        chunks = self._response.__aiter__()
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ServerUnavailable(f"the event stream was silent for {self._idle_timeout} s") from None
            backoff.alive()
            for message in self._parser.feed(chunk):
                if message.retry is not None:
                    backoff.hint = message.retry / 1000
                yield message

    async def aclose(self) -> None:
        await self._response.aclose()


class NativeConnection:
    """A native EventSource: it parses the stream and, when the connection drops, reconnects by
    itself with ``Last-Event-ID`` (reported as ``"lost"``, then ``"open"``). While it is lost the
    client's give-up clock runs as for its own reconnects: after ``reconnect_timeout`` seconds
    without the server, ServerUnavailable. It ends when the EventSource is refused on reconnecting
    (the client reopens it and so learns the answer: 503, 404, 401). Keep-alives are invisible to
    it, so a stream silent for ``idle_timeout`` counts as a drop and is reopened."""

    def __init__(self, url: str, source: EventSourceStream, idle_timeout: float) -> None:
        self.url = url
        self._source = source
        self._idle_timeout = idle_timeout
        self._last_event_id: str | None = None

    @property
    def last_event_id(self) -> str | None:
        return self._last_event_id

    async def messages(self, backoff: Backoff, ended: Callable[[], bool] = _never) -> AsyncIterator[SSEMessage]:
        items = self._source.__aiter__()
        loop = asyncio.get_running_loop()
        lost_since: float | None = None
        while True:
            # while lost, what is left of the give-up budget; else the idle bound
            limit = self._idle_timeout if lost_since is None else max(0.0, lost_since + backoff.budget - loop.time())
            try:
                async with asyncio.timeout(limit):
                    item = await items.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                if lost_since is None:
                    raise ServerUnavailable(f"the event stream was silent for {self._idle_timeout} s") from None
                raise ServerUnavailable(
                    f"cannot reach the stepstone server at {self.url}: its event stream dropped and "
                    f"did not come back within {backoff.budget:g} s"
                ) from None
            if item == "lost":
                if ended():
                    return  # the server closed the stream where it ends it: the EventSource must not go on
                if lost_since is None:
                    lost_since = loop.time()
                    backoff.lost()
                continue
            lost_since = None
            backoff.alive()
            if isinstance(item, SSEMessage):
                if item.id is not None:
                    self._last_event_id = item.id
                yield item

    async def aclose(self) -> None:
        await self._source.aclose()
