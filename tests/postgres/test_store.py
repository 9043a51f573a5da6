"""The PostgreSQL store beyond the shared contract: what only a shared database brings — several
store objects (each its own pool and listener, as separate servers have) on one schema, real
concurrency, notification across them, owner locks that die with their process, and backends
killed under it. Against the real server on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import stepstone
from stepstone import NewEvent, NewRun
from stepstone._stream_models import AppendRequest, NewStream
from stepstone.stores.postgres._schema import SCHEMA_VERSION, migrate

from . import db as pgdb

ROOT = Path(__file__).resolve().parents[2]


def _run(job: str = "job", ckey: str | None = None, version: str = "1") -> NewRun:
    return NewRun(id=stepstone._util.new_id(), job_name=job, job_version=version, input={}, created_at=time.time(),
                  concurrency_key=ckey)  # fmt: skip


def _ev(kind: str = "x") -> NewEvent:
    return NewEvent(kind, {}, time.time())


async def test_servers_starting_at_once_migrate_once(open_store: Callable[..., Any]) -> None:
    schema = pgdb.new_schema()
    conns = [await psycopg.AsyncConnection.connect(pgdb.database_url(), autocommit=True) for _ in range(4)]
    try:
        found = await asyncio.gather(*(migrate(c, schema) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(found) == [0, *[SCHEMA_VERSION] * 3], "one migrated; the others found it done"
    stores = await asyncio.gather(*(open_store(schema) for _ in range(3)))  # and stores opening at once
    run, _ = await stores[0].create_run(_run(), _ev("run:trigger"))
    assert (await stores[2].get_run(run.id)) is not None
    assert pgdb.admin(f'SELECT value FROM "{schema}".stepstone_meta WHERE key = %s', ("schema_version",)) == [
        (SCHEMA_VERSION,)
    ]


async def test_concurrent_claimers_never_share_a_run_serialise_keys_and_versions(
    open_store: Callable[..., Any],
) -> None:
    schema = pgdb.new_schema()
    stores = [await open_store(schema, pool_size=3) for _ in range(4)]
    keys = [None, None, "k1", "k2", "k3"]
    for i in range(150):
        version = "2" if i % 3 == 0 else "1"
        await stores[i % 4].create_run(_run(ckey=keys[i % len(keys)], version=version), _ev("run:trigger"))
    claims: Counter[str] = Counter()
    holding: dict[str, str] = {}  # concurrency key -> the run executing it now
    clashes: list[tuple[str, str, str]] = []
    done = 0

    wrong_version: list[str] = []

    async def claimer(store: Any, name: str, versions: tuple[str, ...]) -> None:
        nonlocal done
        idle = 0
        while idle < 20:
            t = time.time()
            run = await store.claim_next(name, [("job", v) for v in versions], t, t + 60)
            if run is None:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            claims[run.id] += 1
            if run.job_version not in versions:
                wrong_version.append(run.id)
            if run.concurrency_key is not None:
                if run.concurrency_key in holding:
                    clashes.append((run.concurrency_key, holding[run.concurrency_key], run.id))
                holding[run.concurrency_key] = run.id
            await asyncio.sleep(0.002)
            if run.concurrency_key is not None:
                holding.pop(run.concurrency_key, None)
            await store.finish_run(run.id, run.epoch, "completed", None, None, time.time(), None, [_ev("run:complete")])
            done += 1

    # half the claimers run only version 1; the others both versions
    claimers = [claimer(stores[i % 4], f"w{i}", ("1",) if i % 2 else ("1", "2")) for i in range(8)]
    await asyncio.wait_for(asyncio.gather(*claimers), 120)
    assert done == 150 and len(claims) == 150
    assert max(claims.values()) == 1, "no run was claimed twice"
    assert clashes == [], "two runs of one concurrency key ran at once"
    assert wrong_version == [], "a run executed only on code of its own version"


async def test_a_write_through_one_store_wakes_waiters_of_another(open_store: Callable[..., Any]) -> None:
    schema = pgdb.new_schema()
    a, b = await open_store(schema), await open_store(schema)
    run, _ = await a.create_run(_run(), _ev("run:trigger"))
    claimed = await a.claim_next("w", ("job",), time.time(), time.time() + 60)
    woken: list[float] = []
    b.subscribe_claimable(lambda: woken.append(time.monotonic()))

    async def later(write: Any) -> None:
        await asyncio.sleep(0.1)
        await write

    # events of a run
    task = asyncio.ensure_future(later(a.append_events(run.id, claimed.epoch, [_ev()])))
    t0 = time.monotonic()
    await b.wait_events(run.id, run.last_seq + 0, 10)
    assert time.monotonic() - t0 < 3, "woken by the notification, not the timeout"
    await task
    # the run-change feed
    version = await b.runs_version()
    task = asyncio.ensure_future(later(a.create_run(_run(), _ev("run:trigger"))))
    t0 = time.monotonic()
    await b.wait_run_changes(version, 10)
    assert time.monotonic() - t0 < 3
    await task
    assert woken, "a trigger through A told B a run may be claimable"
    # a stream
    info = (await a.stream_create(NewStream("s", "text/plain"), time.time())).info
    task = asyncio.ensure_future(later(a.stream_append("s", AppendRequest(b"x", "text/plain"), time.time())))
    t0 = time.monotonic()
    await b.stream_wait(info.id, info.tail, 10)
    assert time.monotonic() - t0 < 3
    await task


_HOLDER = """
import asyncio, sys
from stepstone.stores.postgres import PostgresStore
async def main():
    store = PostgresStore(sys.argv[1])
    await store.init()
    await store.liveness().hold("doomed-owner")
    print("ready", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_an_owner_whose_process_died_is_proven_dead_at_once(open_store: Callable[..., Any]) -> None:
    schema = pgdb.new_schema()
    store = await open_store(schema)
    store.listener.grace = 0.0
    liveness = store.liveness()
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, pgdb.store_url(schema)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        assert not await liveness.is_dead("doomed-owner"), "alive: its lock is held"
        await liveness.hold("me")
        assert not await liveness.is_dead("me")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while not await liveness.is_dead("doomed-owner"):
            assert time.monotonic() < deadline, "the lock of a killed process was not freed"
            await asyncio.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _terminate_backends() -> int:
    rows = pgdb.admin(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(rows[0][0])  # type: ignore[call-overload]


async def test_killed_backends_are_survived_and_waiters_recheck(open_store: Callable[..., Any]) -> None:
    schema = pgdb.new_schema()
    a, b = await open_store(schema), await open_store(schema)
    run, _ = await a.create_run(_run(), _ev("run:trigger"))
    claimed = await a.claim_next("w", ("job",), time.time(), time.time() + 60)
    waiting = asyncio.ensure_future(b.wait_events(run.id, claimed.last_seq, 30))
    await asyncio.sleep(0.2)
    assert _terminate_backends() >= 4, "pools and listeners of both stores"
    # B's listener reconnects and wakes its waiters to re-check (nothing may have been missed)
    await asyncio.wait_for(waiting, 10)
    # the pools replace their dead connections: writes and reads go on, nothing is lost
    written = await a.append_events(run.id, claimed.epoch, [_ev("after")])
    assert [e.seq for e in written] == [claimed.last_seq + 1]
    assert [e.type for e in await b.read_events(run.id, 0)] == ["run:trigger", "after"]
    # and notifications flow again once the listener is back
    deadline = time.monotonic() + 10
    while b.listener.connected_at is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    task = asyncio.ensure_future(b.wait_events(run.id, written[-1].seq, 10))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await a.append_events(run.id, claimed.epoch, [_ev("again")])
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - t0 < 3


async def test_an_engine_runs_steps_sleeps_events_and_children_on_postgres() -> None:
    bodies: Counter[str] = Counter()

    @stepstone.job("child-pg")
    async def child(step: stepstone.Step, n: int) -> int:
        return int(await step.run("double", lambda: n * 2))

    @stepstone.job("parent-pg")
    async def parent(step: stepstone.Step, payload: dict[str, Any]) -> dict[str, Any]:
        def body() -> int:
            bodies["first"] += 1
            return 1

        first = await step.run("first", body)
        await step.sleep("nap", 0.2)
        approval = await step.wait_for_event("approve")
        kids = await asyncio.gather(*(step.invoke(f"kid-{i}", "child-pg", i) for i in range(3)))
        return {"first": first, "approval": approval, "kids": kids}

    engine = stepstone.create_engine(pgdb.store_url(), polling_interval=5.0)
    engine.register(child)
    engine.register(parent)
    async with engine:
        run = await engine.trigger("parent-pg", {})
        deadline = time.monotonic() + 20
        while "approve" not in getattr((await engine.get_run(run.id)).wait, "events", ()):
            assert time.monotonic() < deadline, "never waited for the event"
            await asyncio.sleep(0.05)
        await engine.send_event(run.id, "approve", {"by": "ann"})
        done = await engine.wait(run.id, timeout=20)
    assert done.status == "completed", done.error
    assert done.output == {"first": 1, "approval": {"by": "ann"}, "kids": [0, 2, 4]}
    assert bodies["first"] == 1, "a recorded step is not run again after the run woke"


async def test_the_store_probes_pass_on_postgres() -> None:
    from stepstone.stores.postgres import PostgresStore
    from stepstone.testing import check_store

    url = pgdb.store_url(pool_size=2)
    results = await check_store(lambda: PostgresStore(url))
    assert all(r.ok for r in results), results


async def test_a_write_retried_after_its_lost_commit_is_applied_once(open_store: Callable[..., Any]) -> None:
    """A connection lost right after COMMIT: the call runs again. Its first attempt is found
    applied (by the run id, or the write token in ``last_write``) instead of repeated."""
    store = await open_store()
    real = store._db.run

    async def committed_then_retried(fn: Any, **kw: Any) -> Any:
        await real(fn, **kw)  # committed; the answer is lost with the connection
        return await real(fn, **kw)

    store._db.run = committed_then_retried
    try:
        new = _run()
        run, created = await store.create_run(new, _ev("run:trigger"))
        assert created and run.id == new.id
        store._db.run = real
        claimed = await store.claim_next("w", ("job",), time.time(), time.time() + 60)
        await store.send_event(run.id, "go", {"n": 1}, time.time())
        store._db.run = committed_then_retried
        step = stepstone.StepRecord(run.id, "s", 0, "completed", 1, None, time.time(), time.time())
        written = await store.commit_step(run.id, claimed.epoch, step, [_ev("step:start"), _ev("step:complete")])
        assert [e.seq for e in written] == [1, 2]
        taken = await store.take_event(run.id, claimed.epoch, "go",
                                       stepstone.StepRecord(run.id, "event:go", 1, "completed", None),
                                       [_ev("step:complete")])  # fmt: skip
        assert taken[0] and taken[1] == {"n": 1} and [e.seq for e in taken[2]] == [3]
    finally:
        store._db.run = real
    assert [e.type for e in await store.read_events(run.id, 0)] == [
        "run:trigger", "step:start", "step:complete", "step:complete"
    ], "nothing appended twice"
    _, total = await store.list_runs(stepstone.RunFilter())
    assert total == 1
