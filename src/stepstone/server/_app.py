"""``create_app``: the jobs API (and optionally the static site) as one Starlette ASGI app.

Server-only (imports starlette). Never imported by ``stepstone/__init__.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .._engine import Engine
from ._errors import error_response
from ._openapi import openapi_document
from ._routes import Api, Authorize
from ._static import SiteFiles
from .streams import streams_mount

__all__ = ["create_app"]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = _HTTP_CODES.get(status, "http_error")
    message = {404: f"no endpoint at {request.url.path}", 405: f"{request.method} is not allowed here"}.get(
        status, exc.detail if isinstance(exc, HTTPException) else "error"
    )
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return error_response(status, code, message, dict(headers) if headers else None)


class _App(Starlette):
    """Starlette, plus a fast path: an HTTP request under the Durable Streams mount goes straight
    to its app, with the scope the Mount would give it, skipping the error and exception
    middleware and the route matching (the streams app answers every error itself; appends are
    the hot path). Anything else, and any request under a ``root_path``, takes the normal way."""

    streams_prefix = ""
    streams_app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.streams_app
        if (
            app is not None
            and scope["type"] == "http"
            and scope["path"].startswith(self.streams_prefix)
            and "\n" not in scope["path"]  # the Mount's pattern (``.*``) stops at a newline
            and not scope.get("root_path")
        ):
            scope["app"] = self
            scope["app_root_path"] = ""
            scope["root_path"] = self.streams_prefix[:-1]
            scope["path_params"] = {"path": scope["path"][len(self.streams_prefix) :]}
            scope["endpoint"] = app
            await app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _normalise_base(base_path: str) -> str:
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if "{" in base or "}" in base:
        raise ValueError(f"base_path must be a plain path, not {base_path!r}")
    return base


def create_app(
    engine: Engine,
    base_path: str = "/api",
    authorize: Authorize | None = None,
    cors: Sequence[str] | str | None = None,
    max_body: int = 1_000_000,
    site_dir: str | None = None,
    keepalive: float = 15.0,
    long_poll_timeout: float = 30.0,
) -> Starlette:
    """The stepstone jobs API for ``engine`` as an ASGI app.

    Serve it with uvicorn, or mount it in your own app (``app.mount("/jobs", create_app(engine))``;
    then initialise and stop the engine in your own lifespan). Run standalone, its lifespan starts
    the engine if it is not started yet, and at shutdown ends every open SSE stream and stops the
    engine it started (handing running runs back at once).

    ``authorize(request)`` (sync or async) guards every API endpoint: truthy allows, falsy answers
    403, raising :class:`~stepstone.server.HTTPError` answers with its status (401 …).
    ``cors`` is a list of allowed origins (``"*"`` for any); None keeps the API same-origin.
    ``site_dir`` serves a static site at ``/`` beside the API. The Durable Streams protocol is
    served at ``/v1/stream`` (see ``stepstone.server.streams``); ``long_poll_timeout`` is how long
    its long-polls wait. ``max_body`` caps request bodies on both (413 beyond, answered from the
    declared ``Content-Length`` before any of the body is read).
    """
    if max_body < 0:
        raise ValueError(f"max_body must be >= 0, not {max_body}")
    if keepalive < 0:
        raise ValueError(f"keepalive must be >= 0 seconds, not {keepalive}")
    base = _normalise_base(base_path)
    if not base and site_dir is not None:
        raise ValueError("serving a site_dir needs a base_path for the API (e.g. '/api')")
    api = Api(engine, authorize=authorize, max_body=max_body, keepalive=keepalive)
    documents: dict[str, dict[str, Any]] = {}

    def openapi(server_url: str) -> dict[str, Any]:
        if server_url not in documents:
            documents[server_url] = openapi_document(server_url)
        return documents[server_url]

    # A bare Router, not a nested Starlette app: one middleware stack fewer on every SSE write.
    # Its 404/405 (HTTPException) reach the outer app's handler below, which answers in JSON.
    api_app: ASGIApp = Router(routes=api.routes(openapi))
    if cors:
        # Only around the jobs API: the Durable Streams mount answers its own CORS (Stream-* and
        # Producer-* headers), which this middleware's preflight would not allow.
        origins = [cors] if isinstance(cors, str) else list(cors)
        api_app = CORSMiddleware(
            api_app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        )

    # The route list, in match order. Other protocols (e.g. Durable Streams under /v1/stream)
    # add their Mount here, before the catch-all static site.
    routes: list[BaseRoute] = [
        Mount(base, app=api_app, name="stepstone-api"),
    ]
    streams = streams_mount(engine, long_poll_timeout=long_poll_timeout, authorize=authorize, max_body=max_body)
    if streams is not None:
        routes.insert(0, streams)
    routes.append(Mount("", app=SiteFiles(site_dir, base), name="stepstone-site"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started_here = not engine.started
        await engine.init()
        try:
            yield
        finally:
            api.streams.close_all()
            if started_here:
                await engine.stop()

    app = _App(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_exception})
    if isinstance(streams, Mount):  # the first route, so the fast path matches exactly what it would
        app.streams_prefix = streams.path + "/"
        app.streams_app = streams.app
    app.state.stepstone = api
    return app
