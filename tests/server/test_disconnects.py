"""A vanished SSE client frees its resources at once: its stream, its share of the run's tail,
its tasks — even on an idle stream whose next write (keep-alive) is a minute away.

Runs uvicorn in this process (a real server on a real socket) so the app's counters and the
event loop's tasks can be inspected.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import stepstone
from stepstone._notify import RUNS_KEY
from stepstone._stream_models import AppendRequest
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


# -- feeds dropped while runs change ---------------------------------------------------------------
async def drop_abruptly(port: int, target: str) -> None:
    """Send the request, read the response head, then reset the connection (no FIN, no goodbye)."""
    _, writer = await open_stream(port, target)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def churn(engine: stepstone.Engine, stop: asyncio.Event, tmp_path: Path) -> None:
    """Keep runs changing (created, started, finished) until ``stop`` is set."""
    while not stop.is_set():
        run = await engine.trigger("gate", {"until": str(tmp_path), "limit": 5})  # opens at once
        await engine.wait(run.id, timeout=10)


async def drop_feeds_while_runs_change(
    port: int, engine: stepstone.Engine, tmp_path: Path, count: int, target: str = "/api/runs/subscribe"
) -> None:
    stop = asyncio.Event()
    churners = [asyncio.ensure_future(churn(engine, stop, tmp_path)) for _ in range(2)]
    try:
        for start in range(0, count, 50):
            await asyncio.gather(*(drop_abruptly(port, target) for _ in range(min(50, count - start))))
    finally:
        stop.set()
        await asyncio.gather(*churners)


async def test_dropped_run_change_feeds_leave_no_pump_behind(
    live: tuple[int, Api, stepstone.Engine], tmp_path: Path
) -> None:
    port, api, engine = live
    await drop_feeds_while_runs_change(port, engine, tmp_path, 300)
    await wait_until(lambda: api.streams.open == 0 and api.streams.pumps == 0)
    store = engine.store
    assert store._hub.waiting(RUNS_KEY) == 0  # type: ignore[attr-defined]  # no feed is left waiting


async def test_a_feed_whose_source_loses_a_cancellation_still_ends_with_its_client(
    live: tuple[int, Api, stepstone.Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store loses every cancellation that reaches a waiting feed, as asyncio.wait_for on
    # Python 3.11 could when a publish landed in the same tick: the feed's pump must still end,
    # not go on writing run changes into a connection uvicorn silently drops.
    port, api, engine = live
    original = engine.store.wait_run_changes

    async def loses_cancellations(after_version: int, timeout: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await original(after_version, timeout)

    monkeypatch.setattr(engine.store, "wait_run_changes", loses_cancellations)
    stop = asyncio.Event()
    churners = [asyncio.ensure_future(churn(engine, stop, tmp_path)) for _ in range(2)]
    try:
        for _ in range(4):
            await asyncio.gather(*(drop_abruptly(port, "/api/runs/subscribe") for _ in range(25)))
        await wait_until(lambda: api.streams.open == 0 and api.streams.pumps == 0)
    finally:
        stop.set()
        await asyncio.gather(*churners)


async def test_a_dropped_stream_sse_reader_stops_catching_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Durable Stream with a large backlog, read over SSE by a client that leaves after the first
    # bytes: the server must stop reading the backlog for nobody (uvicorn drops the writes silently
    # and neither the store read nor the write need suspend, so nothing else would stop it).
    engine = stepstone.create_engine("memory:", polling_interval=0.05)
    app = create_app(engine, keepalive=60)
    streams = app.streams_app  # type: ignore[attr-defined]
    reads = 0
    async with serve_app(app, log_config=None, lifespan="on") as url:
        async with httpx.AsyncClient() as client:
            created = await client.put(f"{url}/v1/stream/big", headers={"content-type": "text/plain"})
            assert created.status_code == 201
        store = engine.store
        for _ in range(40_000):  # 40 MB: far more than every socket buffer on the way holds
            await store.stream_append("big", AppendRequest(b"x" * 1000, "text/plain"), time.time())  # type: ignore[attr-defined]
        original = engine.store.stream_read  # type: ignore[attr-defined]

        async def counted(stream_id: int, after: object, max_bytes: int) -> object:
            nonlocal reads
            reads += 1
            return await original(stream_id, after, 1000)  # one record per page

        monkeypatch.setattr(engine.store, "stream_read", counted)
        port = int(url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /v1/stream/big?offset=-1&live=sse HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(reader.readexactly(10_000), 5)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        await wait_until(lambda: streams.reads.live == 0)
    assert reads < 20_000, f"the server read {reads} of 40,000 pages for a client that had left"
