"""SQLite Durable Streams beyond the shared contract: group-committed appends and the append cache
(stream rows and producer states kept from this connection's commits) staying right when another
connection writes the same file, when a stream goes away, and when a commit fails."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from stepstone._errors import ProducerFenced, StoreError, StreamNotFound
from stepstone._stream_models import AppendRequest, NewStream, ProducerRef
from stepstone.stores.sqlite import SqliteStore
from stepstone.stores.sqlite._streams import _Batch

TEXT = "text/plain"


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.init()
    return store


async def append(store: SqliteStore, path: str, data: bytes, producer: ProducerRef | None = None) -> Any:
    return await store.stream_append(path, AppendRequest(data, TEXT, producer=producer), time.time())


async def contents(store: SqliteStore, path: str) -> list[bytes]:
    info = await store.stream_get(path, time.time())
    assert info is not None
    read = await store.stream_read(info.id, (0, 0), 1 << 30)
    return [r.data for r in read.records]


async def test_concurrent_appends_share_one_transaction_and_read_nothing_back(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.stream_create(NewStream("a", TEXT), time.time())
    await append(store, "a", b"warm")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    results = await asyncio.gather(*(append(store, "a", f"{i};".encode()) for i in range(8)))
    store._db.set_trace_callback(None)
    assert [r.tail[0] for r in results] == list(range(2, 10))
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert not [s for s in statements if s.startswith("SELECT")]  # the stream row came from the cache
    assert await contents(store, "a") == [b"warm", *(f"{i};".encode() for i in range(8))]
    await store.close()


async def test_two_connections_appending_to_one_stream_never_lose_or_reorder(tmp_path: Path) -> None:
    a = await open_store(tmp_path / "s.db")
    b = await open_store(tmp_path / "s.db")
    await a.stream_create(NewStream("x", TEXT), time.time())
    expected: list[bytes] = []
    for i in range(30):
        writer = a if i % 3 else b  # runs of two on one connection, then a switch
        data = f"{i};".encode()
        result = await append(writer, "x", data)
        expected.append(data)
        assert result.tail[0] == i + 1, f"append {i} landed at {result.tail}"
    assert await contents(a, "x") == expected
    assert await contents(b, "x") == expected
    await a.close()
    await b.close()


async def test_a_producer_fenced_by_another_connection_is_refused(tmp_path: Path) -> None:
    a = await open_store(tmp_path / "s.db")
    b = await open_store(tmp_path / "s.db")
    await a.stream_create(NewStream("p", TEXT), time.time())
    await append(a, "p", b"0", ProducerRef("w", 0, 0))
    await append(a, "p", b"1", ProducerRef("w", 0, 1))  # the producer's state is cached in `a` now
    await append(b, "p", b"new epoch", ProducerRef("w", 1, 0))
    with pytest.raises(ProducerFenced):
        await append(a, "p", b"2", ProducerRef("w", 0, 2))
    assert await contents(a, "p") == [b"0", b"1", b"new epoch"]
    await a.close()
    await b.close()


async def test_a_stream_deleted_elsewhere_refuses_appends_here(tmp_path: Path) -> None:
    a = await open_store(tmp_path / "s.db")
    b = await open_store(tmp_path / "s.db")
    await a.stream_create(NewStream("d", TEXT), time.time())
    await append(a, "d", b"1")
    await b.stream_delete("d", time.time())
    with pytest.raises(StreamNotFound):
        await append(a, "d", b"2")
    await b.stream_create(NewStream("d", TEXT), time.time())  # a new stream at the same path
    assert (await append(a, "d", b"fresh")).tail[0] == 1
    assert await contents(b, "d") == [b"fresh"]
    await a.close()
    await b.close()


async def test_a_failed_commit_acknowledges_nothing_and_forgets_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.stream_create(NewStream("f", TEXT), time.time())
    await store.stream_create(NewStream("g", TEXT), time.time())
    await append(store, "f", b"kept")  # "f" is cached now, "g" is not
    real_write = _Batch.write
    calls = 0

    def write_then_fail(self: _Batch, db: Any) -> None:
        nonlocal calls
        real_write(self, db)
        calls += 1
        if calls == 2:  # the batch's last write: its first ran before "g" was read
            raise OSError("disk full")

    monkeypatch.setattr(_Batch, "write", write_then_fail)
    results = await asyncio.gather(append(store, "f", b"lost"), append(store, "g", b"lost"), return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results), results
    monkeypatch.setattr(_Batch, "write", real_write)
    assert (await append(store, "f", b"next")).tail[0] == 2  # the failed batch left no trace
    assert (await append(store, "g", b"next")).tail[0] == 1
    assert await contents(store, "f") == [b"kept", b"next"]
    assert await contents(store, "g") == [b"next"]
    await store.close()
