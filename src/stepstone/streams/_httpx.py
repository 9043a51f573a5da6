"""The CPython transport of the Durable Streams client, on httpx (imported when first used).

Never imported inside Pyodide (``default_transport`` picks ``_fetch`` there); never imported by
``stepstone/__init__.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from ._transport import Response, TransportError

__all__ = ["HttpxTransport"]


class _Streaming:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.headers.items()}

    async def chunks(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise TransportError(f"the stream broke: {exc!r}") from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxTransport:
    """One pooled ``httpx.AsyncClient``; ``max_connections`` bounds concurrent requests."""

    def __init__(self, client: Any = None, *, max_connections: int = 64) -> None:
        self._client = client
        self._max_connections = max_connections

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise TransportError("the CPython stream client needs httpx: pip install httpx") from exc
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            )
            self._client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        import httpx

        client = self._http()
        try:
            response = await client.request(
                method, url, headers=dict(headers), content=body, timeout=timeout if timeout is not None else 60.0
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {url} failed: {exc!r}") from exc
        return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> _Streaming:
        import httpx

        client = self._http()
        # the body may stay quiet for a whole keep-alive interval: only connecting is bounded
        request = client.build_request(
            "GET",
            url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout if timeout is not None else 60.0, read=None),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransportError(f"GET {url} failed: {exc!r}") from exc
        return _Streaming(response)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
