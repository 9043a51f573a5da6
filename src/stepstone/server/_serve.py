"""Running the server process: uvicorn around :func:`create_app`, with a graceful stop.

On SIGTERM or SIGINT the server, in this order: ends every open SSE stream (clients reconnect
elsewhere with ``Last-Event-ID``), stops the engine (no more claims; running runs get ``grace``
seconds, then are cancelled and their leases released, so another process resumes them at once),
then lets uvicorn close. A second signal exits without waiting.

Server-only (imports uvicorn; ``create_app`` itself does not need it).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Sequence
from types import FrameType

import uvicorn

from .._engine import Engine
from ._app import create_app
from ._head_limit import DEFAULT_MAX_HEAD, head_limited_protocol
from ._routes import Api, Authorize

__all__ = ["serve"]

log = logging.getLogger("stepstone.server")


async def serve(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    site_dir: str | None = None,
    base_path: str = "/api",
    authorize: Authorize | None = None,
    cors: Sequence[str] | None = None,
    max_body: int = 1_000_000,
    keepalive: float = 15.0,
    grace: float = 0.0,
    access_log: bool = False,
    describe: str = "",
    long_poll_timeout: float = 30.0,
    max_head: int = DEFAULT_MAX_HEAD,
) -> None:
    """Serve ``engine`` until SIGTERM/SIGINT, then stop gracefully (see the module docstring).

    ``max_body`` caps request bodies on every endpoint (the jobs API and the Durable Streams),
    ``max_head`` the request line and headers together (431 beyond, the connection closed)."""
    app = create_app(
        engine, base_path=base_path, authorize=authorize, cors=cors, max_body=max_body,
        site_dir=site_dir, keepalive=keepalive, long_poll_timeout=long_poll_timeout,
    )
    api: Api = app.state.stepstone
    protocol, limits = head_limited_protocol(max_head)
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_config=None, access_log=access_log,
        timeout_graceful_shutdown=3, timeout_keep_alive=5, http=protocol, **limits,
    )
    server = _Server(config, engine, api, grace, base_path, describe)
    await engine.init()
    try:
        await server.serve()
    finally:
        api.streams.close_all()
        await engine.stop(grace)
    if server.startup_failed:
        raise SystemExit(1)


def _tune_gc() -> None:
    """Keep the cyclic GC's pauses short with many open streams: freeze what start-up allocated
    (modules, the app) out of the collector's view, so a full collection only walks what requests
    created, and let the young generation grow larger between collections (each SSE write allocates
    a few short-lived coroutines). Only the ``stepstone serve`` process does this; ``create_app``
    inside someone else's process leaves their GC settings alone."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)


class _Server(uvicorn.Server):
    """uvicorn, with the stepstone stop sequence on SIGTERM/SIGINT and one clear start-up line."""

    def __init__(
        self, config: uvicorn.Config, engine: Engine, api: Api, grace: float, base_path: str, describe: str
    ) -> None:
        super().__init__(config)
        self.engine, self.api, self.grace = engine, api, grace
        self.base_path, self.describe = base_path, describe
        self.startup_failed = False
        self._stopping: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn could not bind; it logged why
            self.startup_failed = True
            self.should_exit = True
            return
        if self.started:
            _tune_gc()
            bound = [s.getsockname() for srv in self.servers for s in (srv.sockets or ())]
            h, p = bound[0][:2] if bound else (self.config.host, self.config.port)
            url = f"http://{f'[{h}]' if ':' in str(h) else h}:{p}"
            log.info("stepstone serving on %s (API at %s%s)%s", url, url, self.base_path or "/",
                        f" — {self.describe}" if self.describe else "")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: hand the work to the event loop.
        if self._stopping is not None or self._loop is None:
            self.force_exit = True
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        log.info("stepstone: stopping; handing running runs back")
        self.api.streams.close_all()
        try:
            await self.engine.stop(self.grace)
        except Exception:
            log.exception("stepstone: stopping the engine failed")
        self.should_exit = True

