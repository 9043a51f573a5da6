"""The Pyodide transport of the Durable Streams client: the browser's ``fetch`` through
``pyodide.http.pyfetch``, with the ``ReadableStream`` reader of the underlying JS response for SSE
bodies and an ``AbortController`` for timeouts and closing.

Browser-only: the one module of the client that imports ``js`` / ``pyodide``; chosen by
``default_transport`` when running in Pyodide and never imported elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ._transport import Response, TransportError

__all__ = ["FetchTransport"]


def _headers(js_headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in js_headers.entries():
        name, value = pair[0], pair[1]
        out[str(name).lower()] = str(value)
    return out


async def _fetch(url: str, method: str, headers: Mapping[str, str], body: bytes | None, signal: Any) -> Any:
    """``pyfetch`` → the JS ``Response`` (status, headers, body stream)."""
    from pyodide.ffi import to_js
    from pyodide.http import pyfetch

    kwargs: dict[str, Any] = {"method": method, "headers": dict(headers), "signal": signal, "cache": "no-store"}
    if body is not None:
        kwargs["body"] = to_js(body)
    response = await pyfetch(url, **kwargs)
    return response.js_response


class _Streaming:
    def __init__(self, response: Any, controller: Any) -> None:
        self._response = response
        self._controller = controller
        self._reader: Any = None
        self.status: int = int(response.status)
        self.headers: Mapping[str, str] = _headers(response.headers)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._response.body is None:
            return
        self._reader = self._response.body.getReader()
        while True:
            try:
                result = await self._reader.read()
            except Exception as exc:
                raise TransportError(f"the stream broke: {exc}") from exc
            if result.done:
                return
            yield bytes(result.value.to_bytes())

    async def aclose(self) -> None:
        self._controller.abort()
        if self._reader is not None:
            with contextlib.suppress(Exception):  # already aborted: nothing left to release
                await self._reader.cancel()


class FetchTransport:
    """Requests through the page's ``fetch``; same origin rules as any fetch from the page."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        import js

        controller = js.AbortController.new()
        try:
            response = await asyncio.wait_for(
                _fetch(url, method, headers, body, controller.signal), timeout if timeout else 60.0
            )
            data = await response.arrayBuffer()
        except TimeoutError as exc:
            controller.abort()
            raise TransportError(f"{method} {url} timed out") from exc
        except Exception as exc:
            raise TransportError(f"{method} {url} failed: {exc}") from exc
        return Response(int(response.status), _headers(response.headers), bytes(data.to_bytes()))

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> _Streaming:
        import js

        controller = js.AbortController.new()
        try:
            response = await asyncio.wait_for(
                _fetch(url, "GET", headers, None, controller.signal), timeout if timeout else 60.0
            )
        except TimeoutError as exc:
            controller.abort()
            raise TransportError(f"GET {url} timed out") from exc
        except Exception as exc:
            raise TransportError(f"GET {url} failed: {exc}") from exc
        return _Streaming(response, controller)

    async def aclose(self) -> None:
        return None
