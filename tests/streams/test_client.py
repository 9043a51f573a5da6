"""``stepstone.streams.DurableStream`` against a real ``stepstone serve`` process."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from stepstone.streams import (
    ContentTypeMismatch,
    DurableStream,
    InvalidStreamRequest,
    StreamClosedError,
    StreamConflict,
    StreamHTTPError,
    StreamNotFound,
    StreamSeqConflict,
)

from .helpers import StreamServer

_names = itertools.count()


def _url(server: StreamServer, prefix: str = "c") -> str:
    return server.stream_url(f"{prefix}-{next(_names)}")


async def _collect(stream: DurableStream, offset: str, live: str, until: int) -> list[Any]:
    out: list[Any] = []
    async for message in stream.messages(offset, live=live):
        out.append(message)
        if len(out) >= until:
            break
    return out


async def test_create_append_read_head_and_delete(server: StreamServer) -> None:
    url = _url(server)
    async with await DurableStream.create(url, content_type="application/json", ttl=600) as stream:
        first = await stream.append({"n": 1})
        await stream.append_many([{"n": 2}, "three", [4]])
        chunk = await stream.read()
        assert chunk.json() == [{"n": 1}, {"n": 2}, "three", [4]]
        assert chunk.up_to_date and not chunk.closed
        assert (await stream.read(first)).json() == [{"n": 2}, "three", [4]]
        meta = await stream.head()
        assert meta.content_type == "application/json" and meta.ttl == 600 and meta.next_offset == chunk.offset
        again = await DurableStream.create(url, content_type="application/json", ttl=600, transport=stream.transport)
        assert again.url == stream.url
        with pytest.raises(StreamConflict):
            await DurableStream.create(url, content_type="text/plain")
        await stream.delete()
        with pytest.raises(StreamNotFound):
            await stream.head()
        with pytest.raises(StreamNotFound):
            await DurableStream.connect(url)


async def test_byte_streams_take_bytes_and_text(server: StreamServer) -> None:
    async with await DurableStream.create(_url(server), content_type="application/octet-stream") as stream:
        await stream.append(bytes(range(256)))
        await stream.append("é")
        assert (await stream.read()).data == bytes(range(256)) + "é".encode()
        with pytest.raises(TypeError):
            await stream.append({"not": "bytes"})


async def test_close_is_final_and_reported_on_reads(server: StreamServer) -> None:
    async with await DurableStream.create(_url(server), content_type="text/plain", data="a") as stream:
        final = await stream.close("b")
        assert await stream.close() == final
        with pytest.raises(StreamClosedError) as caught:
            await stream.append("c")
        assert caught.value.tail == final
        chunk = await stream.read_all()
        assert chunk.text() == "ab" and chunk.closed and chunk.offset == final
        assert (await stream.head()).closed


async def test_server_refusals_become_named_exceptions(server: StreamServer) -> None:
    async with await DurableStream.create(_url(server), content_type="application/json") as stream:
        with pytest.raises(InvalidStreamRequest):
            await stream.append(b"{not json")
        with pytest.raises(InvalidStreamRequest):
            await stream.append_many([b"1", b"{"])
        await stream.append(1, seq="b")
        with pytest.raises(StreamSeqConflict):
            await stream.append(2, seq="a")
        text = DurableStream(stream.url, content_type="text/plain", transport=stream.transport)
        with pytest.raises(ContentTypeMismatch):
            await text.append("x")
        with pytest.raises(InvalidStreamRequest):
            await stream.read("not-an-offset")
        assert (await stream.read_all()).json() == [1]


async def test_read_all_pages_through_large_streams(server: StreamServer) -> None:
    async with await DurableStream.create(_url(server), content_type="application/octet-stream") as stream:
        blob = bytes(range(256)) * 4096  # 1 MiB per append; the server pages at 1 MiB
        for _ in range(3):
            await stream.append(blob)
        first = await stream.read()
        assert not first.up_to_date and len(first.data) < 3 * len(blob)
        everything = await stream.read_all()
        assert everything.data == blob * 3 and everything.up_to_date


@pytest.mark.parametrize("live", ["sse", "long-poll"])
async def test_tail_catches_up_then_follows_until_closed(server: StreamServer, live: str) -> None:
    async with await DurableStream.create(_url(server), content_type="application/json") as stream:
        await stream.append_many(list(range(5)))
        reader = DurableStream(stream.url, transport=stream.transport)

        async def write() -> None:
            for i in range(5, 40):
                await stream.append(i)
                if i % 10 == 0:
                    await asyncio.sleep(0.6)  # longer than the server's long-poll timeout
            await stream.close(40)

        writer = asyncio.ensure_future(write())
        seen = [m async for m in reader.messages("-1", live=live)]
        await writer
        await reader.aclose()
        assert seen == list(range(41))


@pytest.mark.parametrize("live", ["sse", "long-poll"])
async def test_tail_from_a_saved_offset_has_no_gap_or_duplicate(server: StreamServer, live: str) -> None:
    async with await DurableStream.create(_url(server), content_type="application/json") as stream:
        offsets = [await stream.append(i) for i in range(10)]
        await stream.close()
        got = [m async for m in stream.messages(offsets[3], live=live)]
        assert got == list(range(4, 10))
        now = [c async for c in stream.tail("now", live=live)]
        assert len(now) == 1 and now[0].closed and now[0].json() == []


async def test_sse_tails_binary_streams_through_base64(server: StreamServer) -> None:
    async with await DurableStream.create(_url(server), content_type="image/png") as stream:
        await stream.append(b"\x00\r\n\xff")
        await stream.close(b"\x89PNG")
        chunks = [c async for c in stream.tail("-1", live="sse")]
        assert b"".join(c.data for c in chunks) == b"\x00\r\n\xff\x89PNG"


async def test_a_run_log_reads_as_a_json_stream(server: StreamServer) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        res = await http.post(f"{server.url}/api/trigger", json={"jobName": "ticker", "input": {"count": 3}})
        run_id = res.json()["runId"]
    log = DurableStream(server.stream_url(f"runs/{run_id}"))
    events = [e async for e in log.messages("-1", live="sse")]  # ends when the run completes
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "run:trigger" and events[-1]["type"] == "run:complete"
    assert sum(1 for e in events if e["type"] == "log:write") == 3
    meta = await log.head()
    assert meta.closed and meta.content_type == "application/json"
    with pytest.raises(StreamHTTPError) as refused:
        await log.append({"x": 1})
    assert refused.value.status == 405
    await log.aclose()


async def test_json_chunks_parse_back_exactly(server: StreamServer) -> None:
    values: list[Any] = [None, True, 1.5, "line\nbreak", {"a": [1, {"b": None}]}, [], {}]
    async with await DurableStream.create(_url(server), content_type="application/json") as stream:
        for value in values:
            await stream.append(value)
        await stream.close()
        assert (await stream.read_all()).json() == values
        sse = [m async for m in stream.messages("-1", live="sse")]
        assert json.dumps(sse) == json.dumps(values)
