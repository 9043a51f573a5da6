"""``stepstone.streams.IdempotentProducer`` against a real ``stepstone serve`` process: batching,
pipelining, exactly-once through lost responses, epoch claims and fencing, refused batches."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Mapping
from typing import Any

import pytest

from stepstone._http._httpx import HTTPXTransport
from stepstone.streams import (
    DurableStream,
    IdempotentProducer,
    InvalidStreamRequest,
    ProducerClosed,
    Response,
    StaleEpochError,
    StreamingResponse,
    TransportError,
)

from .helpers import StreamServer

_names = itertools.count()


class Faulty:
    """A transport that forwards to httpx and fails a share of POSTs, at random (seeded): *after*
    the server handled the request (the response is lost) or *before* sending it; counts
    concurrency."""

    def __init__(self, lose: float = 0.0, refuse: float = 0.0, seed: int = 7) -> None:
        self.inner = HTTPXTransport()
        self.lose, self.refuse = lose, refuse
        self.random = random.Random(seed)
        self.posts = 0
        self.active = 0
        self.peak = 0

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None, timeout: float | None = None
    ) -> Response:
        if method != "POST":
            return await self.inner.request(method, url, headers, body, timeout)
        self.posts += 1
        if self.random.random() < self.refuse:
            raise TransportError("connection refused (simulated)")
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            response = await self.inner.request(method, url, headers, body, timeout)
        finally:
            self.active -= 1
        if self.random.random() < self.lose:
            raise TransportError("connection reset after the request was sent (simulated)")
        return response

    async def stream(self, url: str, headers: Mapping[str, str], timeout: float | None = None) -> StreamingResponse:
        return await self.inner.stream(url, headers, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> Faulty:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _stream(server: StreamServer, transport: Any = None, content_type: str = "application/json") -> DurableStream:
    url = server.stream_url(f"p-{next(_names)}")
    return await DurableStream.create(url, content_type=content_type, transport=transport)


async def test_appends_are_batched_by_linger_and_by_size(server: StreamServer) -> None:
    async with await _stream(server) as stream:
        producer = IdempotentProducer(stream, "lingering", linger=0.05)
        for i in range(100):
            producer.append({"i": i})
        assert producer.pending_count == 100
        await producer.flush()
        assert producer.next_seq == 1 and producer.pending_count == 0
        small = IdempotentProducer(stream, "small", max_batch_bytes=8)
        for i in range(10):
            small.append(f"{i:08d}")  # 10 bytes of JSON each: one batch per message
        await small.close()
        assert small.next_seq == 11  # 10 batches and the close
        messages = (await stream.read_all()).json()
        assert messages[:100] == [{"i": i} for i in range(100)]
        assert messages[100:] == [f"{i:08d}" for i in range(10)]


async def test_batches_go_several_at_a_time_and_land_once_in_order(server: StreamServer) -> None:
    async with Faulty() as transport, await _stream(server, transport) as stream:
        producer = IdempotentProducer(stream, "piped", linger=0, max_batch_bytes=64, max_in_flight=4)
        for i in range(400):
            producer.append(i)
            if i % 7 == 0:
                await asyncio.sleep(0)
        await producer.flush()
        assert 1 < transport.peak <= 4
        assert (await stream.read_all()).json() == list(range(400))


async def test_lost_responses_and_refused_connections_are_retried_without_duplicates(server: StreamServer) -> None:
    async with Faulty(lose=0.3, refuse=0.2) as transport, await _stream(server, transport) as stream:
        producer = IdempotentProducer(stream, "flaky", linger=0, max_batch_bytes=32, max_in_flight=3)
        for i in range(300):
            producer.append(i)
            if i % 5 == 0:
                await asyncio.sleep(0.001)
        final = await producer.close({"done": True})
        assert transport.posts > producer.next_seq  # retries happened
        chunk = await stream.read_all()
        assert chunk.json() == [*range(300), {"done": True}]
        assert chunk.closed and chunk.offset == final
        assert await producer.close() == final  # closing again is a deduplicated no-op


async def test_a_newer_epoch_fences_the_old_producer(server: StreamServer) -> None:
    async with await _stream(server) as stream:
        old = IdempotentProducer(stream, "worker", linger=0)
        old.append("a")
        await old.flush()
        new = IdempotentProducer(stream, "worker", epoch=1, linger=0)
        new.append("b")
        await new.flush()
        old.append("zombie")
        with pytest.raises(StaleEpochError) as fenced:
            await old.flush()
        assert getattr(fenced.value, "current_epoch", None) == 1
        with pytest.raises(StaleEpochError):
            old.append("more")
        await new.close()
        assert (await stream.read_all()).json() == ["a", "b"]


async def test_auto_claim_takes_the_next_epoch_and_resends_what_was_refused(server: StreamServer) -> None:
    async with await _stream(server) as stream:
        other = IdempotentProducer(stream, "shared", epoch=5, linger=0)
        other.append("from epoch 5")
        await other.flush()
        claimer = IdempotentProducer(stream, "shared", auto_claim=True, linger=0, max_in_flight=4)
        for i in range(20):
            claimer.append(i)
        await claimer.flush()
        assert claimer.epoch == 6
        other.append("late")
        with pytest.raises(StaleEpochError):
            await other.flush()
        await claimer.close()
        assert (await stream.read_all()).json() == ["from epoch 5", *range(20)]


async def test_a_refused_batch_is_reported_and_later_batches_still_land(server: StreamServer) -> None:
    errors: list[Exception] = []
    async with await _stream(server) as stream:
        producer = IdempotentProducer(stream, "careful", linger=0, max_batch_bytes=1, on_error=errors.append)
        producer.append(1)
        await producer.flush()
        producer.append(b"{not json")
        producer.append(2)
        producer.append(3)
        await producer.flush()
        assert len(errors) == 1 and isinstance(errors[0], InvalidStreamRequest)
        await producer.close()
        assert (await stream.read_all()).json() == [1, 2, 3]
        with pytest.raises(ProducerClosed):
            producer.append(4)


async def test_flush_raises_refusals_when_there_is_no_on_error(server: StreamServer) -> None:
    async with await _stream(server, content_type="text/plain") as stream:
        producer = IdempotentProducer(stream, "strict", linger=0)
        await stream.close()
        producer.append("after close")
        with pytest.raises(Exception) as caught:
            await producer.flush()
        assert "closed" in str(caught.value)
        await producer.detach()


async def test_byte_stream_batches_concatenate(server: StreamServer) -> None:
    async with await _stream(server, content_type="application/octet-stream") as stream:
        producer = IdempotentProducer(stream, "bytes", linger=0.01)
        for i in range(256):
            producer.append(bytes([i]))
        await producer.close()
        assert (await stream.read_all()).data == bytes(range(256))
