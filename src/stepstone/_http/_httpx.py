"""``HTTPXTransport``: the CPython transport, on one pooled ``httpx.AsyncClient`` (the ``client``
or ``server`` extra).

Imported only by :func:`stepstone._http.default_transport` outside Pyodide (or by a user who asks
for it); never on the browser path. Every failure to get an answer becomes
:class:`~stepstone._errors.TransportError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from .._errors import TransportError
from ._models import Response

__all__ = ["HTTPXTransport"]

#: Bound on getting an answer when the caller gives none.
DEFAULT_TIMEOUT = 60.0


def unreachable(method: str, url: str, exc: BaseException) -> TransportError:
    reason = str(exc) or type(exc).__name__
    return TransportError(f"cannot reach the server at {url} ({method}): {reason}")


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()}


class _HTTPXStream:
    def __init__(self, response: httpx.Response, url: str) -> None:
        self._response = response
        self._url = url
        self.status = response.status_code
        self.headers: Mapping[str, str] = _headers(response)

    async def _chunks(self) -> AsyncIterator[bytes | str]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise unreachable("GET", self._url, exc) from exc

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._chunks()

    async def aclose(self) -> None:
        await self._response.aclose()


class HTTPXTransport:
    """Sends requests with one pooled ``httpx.AsyncClient`` (pass your own to tune it);
    ``max_connections`` bounds concurrent requests when it makes its own."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, max_connections: int = 64, **options: Any) -> None:
        if client is None:
            limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
            # No read timeout by default: a live stream may legitimately be quiet; requests get one.
            client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=None), **options)
        self._client = client

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        try:
            response = await self._client.request(
                method, url, headers=dict(headers), content=body, timeout=timeout or DEFAULT_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise unreachable(method, url, exc) from exc
        return Response(response.status_code, _headers(response), response.content)

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> _HTTPXStream:
        # the body may stay quiet for a whole keep-alive interval: only getting the answer is bounded
        request = self._client.build_request(
            "GET", url, headers=dict(headers), timeout=httpx.Timeout(timeout or DEFAULT_TIMEOUT, read=None)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise unreachable("GET", url, exc) from exc
        return _HTTPXStream(response, url)

    async def aclose(self) -> None:
        await self._client.aclose()
