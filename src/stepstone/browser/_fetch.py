"""``FetchTransport``: the HTTP transport inside Pyodide, on the browser's ``fetch`` and
``EventSource``, for the jobs client and the streams client alike.

Requests go through ``pyodide.http.pyfetch``; a live stream reads the ``fetch`` body's
``ReadableStream`` chunk by chunk (the clients parse it with :mod:`stepstone._sse`) and an
``AbortController`` ends it, or a request that got no answer in time. ``event_source`` opens the
browser's own ``EventSource`` instead (:mod:`._eventsource`), which the jobs client uses for live
streams that send no headers. Same origin rules and credentials as any fetch from the page. Chosen
by :func:`stepstone._http.default_transport` in Pyodide; never imported elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import js
from pyodide.ffi import to_js
from pyodide.http import pyfetch

from .._errors import TransportError
from .._http._models import Response
from ._eventsource import EventSourceStream, open_event_source

__all__ = ["FetchTransport"]

#: Bound on getting an answer when the caller gives none.
DEFAULT_TIMEOUT = 60.0


def _unreachable(method: str, url: str, exc: BaseException) -> TransportError:
    reason = str(exc) or type(exc).__name__
    return TransportError(f"cannot reach the server at {url} ({method}): {reason}")


def _headers(js_headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in js_headers.entries():
        out[str(pair[0]).lower()] = str(pair[1])
    return out


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
                raise _unreachable("GET", self._url, exc) from exc
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
    """Sends requests with the page's ``fetch``; ``fetch_options`` (``credentials``, ``mode``, …)
    go with every request. Live streams without headers may use the page's ``EventSource``
    (:meth:`event_source`; with credentials when ``credentials="include"``)."""

    def __init__(self, **fetch_options: Any) -> None:
        self.fetch_options = {"cache": "no-store", **fetch_options}

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        controller = js.AbortController.new()
        options: dict[str, Any] = {
            **self.fetch_options,
            "method": method,
            "headers": dict(headers),
            "signal": controller.signal,
        }
        if body is not None:
            options["body"] = to_js(body)
        limit = timeout or DEFAULT_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                response = await pyfetch(url, **options)
                content = await response.bytes()
        except TimeoutError:
            controller.abort()
            raise TransportError(f"{method} {url}: no answer within {limit:g} s") from None
        except Exception as exc:
            raise _unreachable(method, url, exc) from exc
        return Response(int(response.status), {k.lower(): v for k, v in response.headers.items()}, bytes(content))

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> _FetchStream:
        controller = js.AbortController.new()
        init = to_js(
            {**self.fetch_options, "method": "GET", "headers": dict(headers), "signal": controller.signal},
            dict_converter=js.Object.fromEntries,
        )
        limit = timeout or DEFAULT_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                response = await js.fetch(url, init)
        except TimeoutError:
            controller.abort()
            raise TransportError(f"GET {url}: no answer within {limit:g} s") from None
        except Exception as exc:
            raise _unreachable("GET", url, exc) from exc
        return _FetchStream(url, response, controller)

    async def event_source(
        self, url: str, event_types: Sequence[str], timeout: float | None = None
    ) -> EventSourceStream | Response:
        """An open ``EventSource`` on ``url`` listening for ``event_types``, or the answer that
        refused it (read again with ``fetch``, since an EventSource shows no status)."""
        with_credentials = self.fetch_options.get("credentials") == "include"
        return await open_event_source(
            url, event_types, timeout or DEFAULT_TIMEOUT, self.stream, with_credentials=with_credentials
        )

    async def aclose(self) -> None:
        return None
