"""The npm ``@durable-streams/client`` and ``stepstone.streams`` on one real ``stepstone serve``
(SQLite): each side's producer writes 10,000 JSON messages while the other side tails live, and
every message arrives once, in order — also across a server SIGKILL and restart."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stepstone.streams import DurableStream, IdempotentProducer

from ..streams.helpers import StreamServer
from ..support.serve import ROOT

HERE = Path(__file__).resolve().parent
N = 10_000


@pytest.fixture
def server(tmp_path: Path) -> Any:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "@durable-streams" / "client").exists():
        pytest.fail("these tests need node and `npm ci` (node_modules/@durable-streams/client)")
    srv = StreamServer(tmp_path / "interop.db", long_poll_timeout=1.0).start()
    yield srv
    srv.kill()


async def _node(script: str, *args: str, timeout: float = 120.0) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(HERE / script), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode().strip().splitlines()
    assert lines, f"{script} printed nothing; stderr:\n{err.decode()[-3000:]}"
    return proc.returncode or 0, json.loads(lines[-1])


async def _tail(stream: DurableStream, live: str = "sse") -> list[Any]:
    return [m async for m in stream.messages("-1", live=live)]


def _expected(count: int = N, start: int = 0) -> list[dict[str, int]]:
    return [{"i": i} for i in range(start, start + count)]


@pytest.mark.timeout(180)
async def test_npm_producer_writes_while_the_python_client_tails(server: StreamServer) -> None:
    url = server.stream_url("npm-to-python")
    async with await DurableStream.create(url, content_type="application/json") as stream:
        sse = asyncio.ensure_future(_tail(stream, "sse"))
        long_poll = asyncio.ensure_future(_tail(DurableStream(url, transport=stream.transport), "long-poll"))
        await asyncio.sleep(0.2)  # both readers are attached before the first append
        code, result = await _node("npm_producer.mjs", url, "0", str(N), "npm-writer")
        assert code == 0 and result["ok"], result
        assert await asyncio.wait_for(sse, 60) == _expected()
        assert await asyncio.wait_for(long_poll, 60) == _expected()


@pytest.mark.timeout(180)
async def test_python_producer_writes_while_the_npm_client_tails(server: StreamServer) -> None:
    url = server.stream_url("python-to-npm")
    async with await DurableStream.create(url, content_type="application/json") as stream:
        readers = [asyncio.ensure_future(_node("npm_reader.mjs", url, "-1", live)) for live in ("sse", "long-poll")]
        await asyncio.sleep(1.0)  # node has started and attached
        producer = IdempotentProducer(stream, "py-writer", auto_claim=True, max_in_flight=5)
        for i in range(N):
            producer.append({"i": i})
            if i % 250 == 0:
                await asyncio.sleep(0.001)
        final = await producer.close()
        for reader in readers:
            code, result = await asyncio.wait_for(reader, 60)
            assert code == 0 and result["closed"] and result["offset"] == final
            assert result["items"] == _expected()


@pytest.mark.timeout(180)
async def test_a_sigkill_mid_stream_loses_nothing_acknowledged(server: StreamServer) -> None:
    url = server.stream_url("crash")
    async with await DurableStream.create(url, content_type="application/json") as stream:
        tail = asyncio.ensure_future(_tail(DurableStream(url, transport=stream.transport), "sse"))
        producer = IdempotentProducer(stream, "survivor", linger=0.002, max_in_flight=5)
        for i in range(N):
            producer.append({"i": i})
            if i % 50 == 0:
                await asyncio.sleep(0.002)  # keep batches in flight for about a second
            if i == N // 2:
                await producer.flush()  # the first half is acknowledged...
                server.kill()  # ...then the server dies mid-stream, with more being appended
        await asyncio.sleep(0.3)
        server.start()  # same file, same port: the producer's retries and the tail reconnect
        final = await producer.close()
        assert await asyncio.wait_for(tail, 60) == _expected()  # once each, in order, across the restart
        code, result = await _node("npm_reader.mjs", url, "-1", "sse")
        assert code == 0 and result["items"] == _expected() and result["offset"] == final

    # The npm producer does not retry: whatever it saw acknowledged before the kill must survive.
    url = server.stream_url("crash-npm")
    async with await DurableStream.create(url, content_type="application/json") as stream:
        writer = asyncio.ensure_future(_node("npm_producer.mjs", url, "0", str(N), "npm-survivor", "close", "0", "20"))
        for _ in range(200):
            await asyncio.sleep(0.02)
            head = await stream.head()
            if head.next_offset > "0000000000000005":
                break
        server.kill()
        code, result = await asyncio.wait_for(writer, 60)
        server.start()
        stored = (await stream.read_all()).json()
        assert stored == _expected(len(stored)), "a prefix, in order, with no gap or duplicate"
        assert len(stored) > 0
        if result["lastOffset"] is not None:  # every batch it saw acknowledged is still there
            assert (await stream.head()).next_offset >= result["lastOffset"]
        # a new producer session (next epoch) finishes the job on the restarted server
        rest = str(N - len(stored))
        code, result = await _node("npm_producer.mjs", url, str(len(stored)), rest, "npm-survivor", "close", "1")
        assert code == 0 and result["ok"], result
        assert (await stream.read_all()).json() == _expected()
