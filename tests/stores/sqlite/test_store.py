"""SQLite-specific behaviour beyond the shared contract: group commit, schema versions, errors."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import stepstone
from stepstone import NewEvent, NewRun, StaleLeaseError, StepRecord
from stepstone.stores.sqlite._store import SCHEMA_VERSION, SqliteStore


def ev(type: str = "log:write") -> NewEvent:
    return NewEvent(type, {}, time.time())


async def two_claimed(store: SqliteStore) -> tuple[stepstone.Run, stepstone.Run]:
    for i in range(2):
        new = NewRun(id=f"r{i}", job_name="j", job_version="1", input=None, created_at=time.time())
        await store.create_run(new, ev("run:trigger"))
    a = await store.claim_next("w", ["j"], time.time(), time.time() + 30)
    b = await store.claim_next("w", ["j"], time.time(), time.time() + 30)
    assert a is not None and b is not None
    return a, b


async def test_a_fenced_write_in_a_shared_transaction_fails_alone(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "g.db"))
    await store.init()
    a, b = await two_claimed(store)
    results = await asyncio.gather(
        store.append_events(a.id, a.epoch, [ev()]),
        store.append_events(b.id, b.epoch + 1, [ev()]),
        store.commit_step(a.id, a.epoch, StepRecord(a.id, "s", 0, "completed", 1), [ev("step:complete")]),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["list", "StaleLeaseError", "list"]
    assert [e.seq for e in await store.read_events(a.id, 0)] == [0, 1, 2]
    assert [e.seq for e in await store.read_events(b.id, 0)] == [0]
    assert [s.name for s in await store.get_steps(a.id)] == ["s"]
    with pytest.raises(StaleLeaseError):
        await store.append_events(b.id, 99, [ev()])
    await store.close()


async def test_full_synchronous_is_kept_around_relaxed_writes(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "f.db"), synchronous="full")
    await store.init()
    await two_claimed(store)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    await store.close()


async def test_schema_is_versioned_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    store = SqliteStore(str(path))
    await store.init()
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM stepstone_meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.execute("UPDATE stepstone_meta SET value = 999 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(stepstone.SchemaError, match="newer than this stepstone"):
        await SqliteStore(str(path)).init()


async def test_reopening_keeps_data_and_migrates_nothing_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    for _ in range(2):
        engine = stepstone.create_engine(url, worker=False)

        @stepstone.job("noop")
        async def noop(step: stepstone.Step, payload: object) -> None:
            return None

        engine.register(noop)
        async with engine:
            await engine.trigger("noop")
    engine = stepstone.create_engine(url, worker=False)
    async with engine:
        assert (await engine.get_runs()).total == 2


async def test_bad_paths_and_settings(tmp_path: Path) -> None:
    with pytest.raises(stepstone.StoreError, match="does not exist"):
        await SqliteStore(str(tmp_path / "missing" / "x.db")).init()
    with pytest.raises(stepstone.StoreError, match="synchronous"):
        SqliteStore(str(tmp_path / "x.db"), synchronous="sometimes")
    with pytest.raises(stepstone.StoreError, match="not open"):
        await SqliteStore(str(tmp_path / "y.db")).get_run("x")
