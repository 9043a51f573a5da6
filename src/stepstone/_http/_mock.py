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
Every request is kept in ``transport.requests``. Stdlib only.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ._models import Request, Response

__all__ = ["MockStream", "MockTransport"]


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
