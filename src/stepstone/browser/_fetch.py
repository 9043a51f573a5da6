"""``FetchTransport``: the Pyodide transport, on the browser's ``fetch``.

Requests go through ``pyodide.http.pyfetch``. Live streams read the ``fetch`` body's
``ReadableStream`` chunk by chunk (the client parses it with :mod:`stepstone._sse`): EventSource
cannot send an ``Authorization`` header nor be told where to resume, a streaming fetch can.

One of the browser modules: imports ``js`` and ``pyodide``, so it is only imported inside Pyodide
(see :func:`stepstone.client.default_transport`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import js
from pyodide.ffi import to_js
from pyodide.http import pyfetch

from .._errors import ServerUnavailable
from ._transport import Response

__all__ = ["FetchTransport"]


def _unreachable(url: str, exc: BaseException) -> ServerUnavailable:
    reason = str(exc) or type(exc).__name__
    return ServerUnavailable(f"cannot reach the stepstone server at {url}: {reason}")


def _headers(js_headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in js.Object.fromEntries(js_headers.entries()).to_py().items()}


class _FetchStream:
    def __init__(self, url: str, response: Any, controller: Any) -> None:
        self._url = url
        self._response = response
        self._controller = controller
        self._reader: Any = None
        self._closed = False
        self.status = int(response.status)
        self.headers: Mapping[str, str] = _headers(response.headers)

    async def _chunks(self) -> AsyncIterator[bytes | str]:
        if self._response.body is None:
            return
        self._reader = self._response.body.getReader()
        while not self._closed:
            try:
                result = await self._reader.read()
            except Exception as exc:
                if self._closed:
                    return
                raise _unreachable(self._url, exc) from exc
            if result.done:
                return
            yield bytes(result.value.to_bytes())

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._chunks()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Aborting the fetch ends the body stream and frees the connection at once.
        self._controller.abort()
        if self._reader is not None:
            with contextlib.suppress(Exception):  # already released by the abort
                self._reader.releaseLock()


class FetchTransport:
    """Sends requests with the page's ``fetch``: same origin, credentials as the browser keeps them."""

    def __init__(self, **fetch_options: Any) -> None:
        self.fetch_options = {"cache": "no-store", **fetch_options}

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        options: dict[str, Any] = {**self.fetch_options, "method": method, "headers": dict(headers)}
        if body is not None:
            options["body"] = body.decode("utf-8")
        try:
            response = await pyfetch(url, **options)
            content = await response.bytes()
        except Exception as exc:
            raise _unreachable(url, exc) from exc
        return Response(int(response.status), {k.lower(): v for k, v in response.headers.items()}, bytes(content))

    async def stream(self, url: str, headers: Mapping[str, str]) -> _FetchStream:
        controller = js.AbortController.new()
        init = to_js(
            {**self.fetch_options, "method": "GET", "headers": dict(headers), "signal": controller.signal},
            dict_converter=js.Object.fromEntries,
        )
        try:
            response = await js.fetch(url, init)
        except Exception as exc:
            raise _unreachable(url, exc) from exc
        return _FetchStream(url, response, controller)

    async def aclose(self) -> None:
        return None
