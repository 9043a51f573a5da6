"""A vanished SSE client frees its resources at once: its stream, its share of the run's tail,
its tasks — even on an idle stream whose next write (keep-alive) is a minute away.

Runs uvicorn in this process (a real server on a real socket) so the app's counters and the
event loop's tasks can be inspected.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stepstone
from stepstone.server import create_app
from stepstone.server._routes import Api
from tests.support.serve import serve_app

from .stepstone_test_jobs import chatty, gate


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[int, Api, stepstone.Engine]]:
    engine = stepstone.create_engine("memory:", polling_interval=0.05)
    engine.register(gate)
    engine.register(chatty)
    app = create_app(engine, keepalive=60)
    async with serve_app(app, log_config=None, lifespan="on") as url:
        yield int(url.rsplit(":", 1)[1]), app.state.stepstone, engine


async def open_stream(port: int, target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


def tail_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("stepstone-tail-") and not t.done()]


async def wait_until(condition: object, timeout: float = 10.0) -> None:
    # "At once" here means: long before the 60 s keep-alive would reveal a dead client. The bound
    # leaves room for a loaded 2-core CI machine (2 s was seen to run out once under load).
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < end, "resources were not freed in time"
        await asyncio.sleep(0.01)


async def test_vanished_subscribers_free_their_stream_and_the_shared_tail(
    live: tuple[int, Api, stepstone.Engine], tmp_path: Path
) -> None:
    port, api, engine = live
    run = await engine.trigger("gate", {"until": str(tmp_path / "never"), "limit": 20})
    streams = [await open_stream(port, f"/api/subscribe?runId={run.id}") for _ in range(20)]
    for reader, _ in streams:  # each got the history so far
        assert b"event: run:trigger" in await asyncio.wait_for(reader.readuntil(b"run:trigger"), 5)
    await wait_until(lambda: api.streams.open == 20)
    assert api.tails.active == 1 and len(tail_tasks()) == 1  # one store follower for twenty clients

    for _, writer in streams[:10]:
        writer.close()  # a clean close ...
    for _, writer in streams[10:]:
        writer.transport.abort()  # ... and a reset
    await wait_until(lambda: api.streams.open == 0 and api.tails.active == 0 and not tail_tasks())
    await engine.cancel(run.id)


async def test_vanished_run_change_subscribers_are_freed(live: tuple[int, Api, stepstone.Engine]) -> None:
    port, api, _ = live
    streams = [await open_stream(port, "/api/runs/subscribe") for _ in range(5)]
    await wait_until(lambda: api.streams.open == 5)
    for _, writer in streams:
        writer.transport.abort()
    await wait_until(lambda: api.streams.open == 0)


async def test_a_subscriber_that_stops_reading_does_not_stall_the_others(
    live: tuple[int, Api, stepstone.Engine],
) -> None:
    port, api, engine = live
    run = await engine.trigger("chatty", {"count": 3000, "delay": 0})
    _slow_reader, slow_writer = await open_stream(port, f"/api/subscribe?runId={run.id}")
    slow_writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader, writer = await open_stream(port, f"/api/subscribe?runId={run.id}")
    data = b""
    while b"event: run:complete" not in data:
        data += await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    slow_writer.transport.abort()
    await wait_until(lambda: api.streams.open == 0 and api.tails.active == 0)
