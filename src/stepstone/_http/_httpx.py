"""``HTTPXTransport``: the CPython transport, on ``httpx.AsyncClient`` (the ``client`` extra).

Imported only when a Client is created outside Pyodide without a transport; never import it from
code that must run in a browser. Connection failures become :class:`~stepstone.ServerUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from .._errors import ServerUnavailable
from ._transport import Response

__all__ = ["HTTPXTransport"]


def _unreachable(url: str, exc: Exception) -> ServerUnavailable:
    reason = str(exc) or type(exc).__name__
    return ServerUnavailable(f"cannot reach the stepstone server at {url}: {reason}")


class _HTTPXStream:
    def __init__(self, response: httpx.Response, url: str) -> None:
        self._response = response
        self._url = url
        self.status = response.status_code
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.headers.items()}

    async def _chunks(self) -> AsyncIterator[bytes | str]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.TransportError as exc:
            raise _unreachable(self._url, exc) from exc

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._chunks()

    async def aclose(self) -> None:
        await self._response.aclose()


class HTTPXTransport:
    """Sends requests with one pooled ``httpx.AsyncClient`` (pass your own to tune it)."""

    def __init__(self, client: httpx.AsyncClient | None = None, **options: Any) -> None:
        # No read timeout: a live stream may legitimately be quiet; the Client bounds silences.
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), **options)

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        try:
            response = await self._client.request(method, url, headers=dict(headers), content=body)
        except httpx.TransportError as exc:
            raise _unreachable(url, exc) from exc
        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    async def stream(self, url: str, headers: Mapping[str, str]) -> _HTTPXStream:
        request = self._client.build_request("GET", url, headers=dict(headers))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _unreachable(url, exc) from exc
        return _HTTPXStream(response, url)

    async def aclose(self) -> None:
        await self._client.aclose()
