"""``MockTransport``: answers a client's requests from a Python function, for tests (the jobs
client and the streams client alike).

    def handler(request):
        if request.url.endswith("/run?runId=r1"):
            return Response(404, {"content-type": "application/json"},
                            b'{"error": {"code": "run_not_found", "message": "no run r1"}}')
        ...
    client = Client("http://test/api", transport=MockTransport(handler))

A handler (sync or async) gets a :class:`Request` and returns a :class:`Response`, or a
:class:`MockStream` whose chunks are fed to an SSE reader one by one; it may raise
:class:`~stepstone._errors.TransportError` (or ``ServerUnavailable``) to play a server that is down.
Every request is kept in ``transport.requests``.

:class:`MockEventSourceTransport` also plays the browser's ``EventSource`` (so the client's
EventSource path runs on CPython): it listens only for the event types it is asked for, and when a
stream ends or breaks it reports ``"lost"``, asks the handler again with ``Last-Event-ID`` (the id
of the last event it dispatched) after ``reconnect_delay`` (or the stream's ``retry:``), reports
``"open"`` when that gets a 200 stream and closes for good on any other answer, as a browser does.
Stdlib only.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .._errors import ServerUnavailable
from .._sse import SSEMessage, SSEParser
from ._models import EventSourceSignal, Request, Response

__all__ = ["MockEventSourceTransport", "MockStream", "MockTransport"]


@dataclass
class MockStream:
    """A streaming answer: ``chunks`` (text) are delivered in order, then the stream ends."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    chunks: Iterable[bytes | str] | AsyncIterable[bytes | str] = ()
    closed: bool = False

    async def _iterate(self) -> AsyncIterator[bytes | str]:
        if isinstance(self.chunks, AsyncIterable):
            async for chunk in self.chunks:
                if self.closed:
                    return
                yield chunk
        else:
            for chunk in self.chunks:
                if self.closed:
                    return
                yield chunk

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._iterate()

    async def aclose(self) -> None:
        self.closed = True


Handler = Callable[[Request], "Response | MockStream | Awaitable[Response | MockStream]"]


class MockTransport:
    """A transport that calls ``handler(request)`` instead of the network."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def _answer(self, request: Request) -> Response | MockStream:
        self.requests.append(request)
        result = self.handler(request)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        answer = await self._answer(Request(method, url, dict(headers), body))
        if isinstance(answer, MockStream):
            body = b"".join([c if isinstance(c, bytes) else c.encode() async for c in answer])
            return Response(answer.status, dict(answer.headers), body)
        return answer

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> MockStream:
        answer = await self._answer(Request("GET", url, dict(headers), None))
        if isinstance(answer, Response):
            return MockStream(answer.status, dict(answer.headers), [answer.text] if answer.body else [])
        return answer

    async def aclose(self) -> None:
        self.closed = True


class MockEventSourceTransport(MockTransport):
    """A :class:`MockTransport` that also opens EventSources the way a browser does (see the module
    docstring). ``event_sources`` keeps the ones opened."""

    def __init__(self, handler: Handler, *, reconnect_delay: float = 0.01) -> None:
        super().__init__(handler)
        self.reconnect_delay = reconnect_delay
        self.event_sources: list[_MockEventSource] = []

    async def _connect(self, url: str, last_event_id: str | None) -> MockStream | Response:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if last_event_id:
            headers["last-event-id"] = last_event_id
        answer = await self._answer(Request("GET", url, headers, None))
        if isinstance(answer, Response) and answer.status == 200:
            return MockStream(200, dict(answer.headers), [answer.text] if answer.body else [])
        return answer

    async def event_source(
        self, url: str, event_types: Sequence[str], timeout: float | None = None
    ) -> _MockEventSource | Response:
        answer = await self._connect(url, None)
        if isinstance(answer, MockStream) and answer.status != 200:
            body = b"".join([c if isinstance(c, bytes) else c.encode() async for c in answer])
            return Response(answer.status, dict(answer.headers), body)
        if isinstance(answer, Response):
            return answer
        source = _MockEventSource(self, url, event_types, answer)
        self.event_sources.append(source)
        return source


class _MockEventSource:
    def __init__(self, transport: MockEventSourceTransport, url: str, types: Sequence[str], first: MockStream) -> None:
        self.transport = transport
        self.url = url
        self.types = {"message", *types}
        self.closed = False
        self._stream = first
        self._delay = transport.reconnect_delay

    async def _items(self) -> AsyncIterator[SSEMessage | EventSourceSignal]:
        last_id: str | None = None
        while not self.closed:
            parser = SSEParser()
            try:
                async for chunk in self._stream:
                    for message in parser.feed(chunk):
                        last_id = message.id or last_id  # as a browser: the id of a dispatched event
                        if message.retry is not None:
                            self._delay = message.retry / 1000
                        if message.event in self.types:
                            yield message
            except ServerUnavailable:
                pass  # the connection broke: reconnect, as after a clean end
            while not self.closed:  # the browser: an error event, a pause, a request with Last-Event-ID
                yield "lost"
                await asyncio.sleep(self._delay)
                if self.closed:
                    return
                try:
                    answer = await self.transport._connect(self.url, last_id)
                except ServerUnavailable:  # unreachable: the browser tries again
                    continue
                if answer.status != 200:
                    self.closed = True  # any other answer fails the connection for good
                    return
                assert isinstance(answer, MockStream)
                self._stream = answer
                yield "open"
                break

    def __aiter__(self) -> AsyncIterator[SSEMessage | EventSourceSignal]:
        return self._items()

    async def aclose(self) -> None:
        self.closed = True
        await self._stream.aclose()
