"""The SQLite group commit (``stores/sqlite/_commit.py``): writes queued in one event-loop tick share
one transaction, each in its own savepoint; a refused write fails alone; keys are published only
after COMMIT. Statements are observed with ``set_trace_callback`` on the store's connection, and
what was committed is checked through a second, fresh connection to the same file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from stepstone import StaleLeaseError
from stepstone._errors import InvalidRunState
from stepstone._models import Event, Progress, Run, StepRecord
from stepstone._notify import Hub
from stepstone.stores import NewEvent, NewRun
from stepstone.stores.sqlite import SqliteStore

BOUND = 2.0


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.init()
    return store


async def running(store: SqliteStore, *run_ids: str) -> dict[str, Run]:
    """Create and claim one run per id; returns the claimed runs (with their epochs)."""
    t = time.time()
    for run_id in run_ids:
        await store.create_run(NewRun(run_id, "job", "1", None, t), NewEvent("run:trigger", {}, t))
    claimed: dict[str, Run] = {}
    for _ in run_ids:
        run = await store.claim_next("worker", ["job"], t, t + 60)
        assert run is not None
        claimed[run.id] = run
    return claimed


@contextmanager
def traced(store: SqliteStore) -> Iterator[list[str]]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store._db.set_trace_callback(None)


def commit(store: SqliteStore, run: Run, name: str, epoch: int | None = None) -> asyncio.Future[list[Event]]:
    t = time.time()
    record = StepRecord(run.id, name, 0, "completed", {"from": name}, None, t, t)
    events = [NewEvent("step:start", {"name": name}, t), NewEvent("step:complete", {"name": name}, t)]
    return asyncio.ensure_future(
        store.commit_step(run.id, run.epoch if epoch is None else epoch, record, events, Progress(1, 1))
    )


def fresh(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path))


def committed_steps(path: Path) -> dict[str, list[str]]:
    with closing(fresh(path)) as db:
        rows = db.execute("SELECT run_id, name FROM steps ORDER BY run_id, name").fetchall()
    out: dict[str, list[str]] = {}
    for run_id, name in rows:
        out.setdefault(run_id, []).append(name)
    return out


def committed_events(path: Path, run_id: str) -> list[str]:
    with closing(fresh(path)) as db:
        rows = db.execute("SELECT type FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    return [r[0] for r in rows]


def committed_runs_version(path: Path) -> int:
    with closing(fresh(path)) as db:
        return int(db.execute("SELECT value FROM stepstone_meta WHERE key = 'runs_version'").fetchone()[0])


async def test_writes_queued_in_one_tick_share_one_transaction(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "jobs.db")
    runs = await running(store, "a", "b", "c")
    with traced(store) as statements:
        writes = [commit(store, run, "s") for run in runs.values()]
        writes.append(asyncio.ensure_future(store.append_events("a", runs["a"].epoch, [NewEvent("log:write", {}, 0)])))
        results = await asyncio.wait_for(asyncio.gather(*writes), BOUND)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert statements.count("SAVEPOINT op") == 4 and statements.count("RELEASE op") == 4
    assert [[e.type for e in r] for r in results[:3]] == [["step:start", "step:complete"]] * 3
    assert committed_steps(tmp_path / "jobs.db") == {"a": ["s"], "b": ["s"], "c": ["s"]}
    assert committed_events(tmp_path / "jobs.db", "a") == ["run:trigger", "step:start", "step:complete", "log:write"]
    await store.close()


async def test_a_fenced_write_fails_alone_and_the_rest_of_its_transaction_commits(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await open_store(path)
    runs = await running(store, "a", "b", "c")
    version_before = committed_runs_version(path)
    with traced(store) as statements:
        results = await asyncio.wait_for(
            asyncio.gather(
                commit(store, runs["a"], "s"),
                commit(store, runs["b"], "s", epoch=runs["b"].epoch - 1),  # stale: refused
                commit(store, runs["c"], "s"),
                return_exceptions=True,
            ),
            BOUND,
        )
    assert isinstance(results[1], StaleLeaseError)
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("COMMIT") == 1
    assert statements.count("ROLLBACK TO op") == 1 and "ROLLBACK" not in statements
    assert committed_steps(path) == {"a": ["s"], "c": ["s"]}
    assert committed_events(path, "b") == ["run:trigger"]
    assert committed_events(path, "c") == ["run:trigger", "step:start", "step:complete"]
    # each accepted commit set progress (one runs_version bump each); the refused one's bump is undone
    assert committed_runs_version(path) == version_before + 2
    # the store still works and the refused run is still held at its real epoch
    await commit(store, runs["b"], "s")
    assert committed_steps(path) == {"a": ["s"], "b": ["s"], "c": ["s"]}
    await store.close()


async def test_a_refused_write_alone_in_its_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await open_store(path)
    runs = await running(store, "a")
    version_before = committed_runs_version(path)
    with traced(store) as statements, pytest.raises(StaleLeaseError):
        # progress makes the write bump runs_version before the fence refuses it
        await store.append_events("a", runs["a"].epoch + 1, [NewEvent("log:write", {}, 0)], Progress(5))
    assert statements.count("BEGIN IMMEDIATE") == 1 and statements.count("ROLLBACK") == 1
    assert "COMMIT" not in statements and "SAVEPOINT op" not in statements
    assert committed_runs_version(path) == version_before
    assert committed_events(path, "a") == ["run:trigger"]
    run = await store.get_run("a")
    assert run is not None and run.progress is None and run.last_seq == 0
    await store.close()


async def test_a_refused_control_write_alone_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await open_store(path)
    t = time.time()
    await store.create_run(NewRun("a", "job", "1", None, t), NewEvent("run:trigger", {}, t))
    await store.cancel_run("a", t, NewEvent("run:cancel", {}, t))
    with traced(store) as statements, pytest.raises(InvalidRunState):
        await store.cancel_run("a", t, NewEvent("run:cancel", {}, t))
    assert "COMMIT" not in statements and statements.count("ROLLBACK") == 1
    assert committed_events(path, "a") == ["run:trigger", "run:cancel"]
    await store.close()


async def test_writes_from_different_ticks_use_different_transactions(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "jobs.db")
    runs = await running(store, "a", "b")
    with traced(store) as statements:
        await commit(store, runs["a"], "one")
        await commit(store, runs["b"], "one")
        await commit(store, runs["a"], "two")
        await commit(store, runs["b"], "two")
    assert statements.count("BEGIN IMMEDIATE") == 4 and statements.count("COMMIT") == 4
    assert "SAVEPOINT op" not in statements  # alone in their transactions: no savepoint needed
    assert committed_steps(tmp_path / "jobs.db") == {"a": ["one", "two"], "b": ["one", "two"]}
    await store.close()


class SpyHub(Hub):
    """Records, for every publish, the key and whether the current transaction had committed."""

    def __init__(self, statements: list[str]) -> None:
        super().__init__()
        self.statements = statements
        self.published: list[tuple[str, bool]] = []

    def publish(self, key: str) -> None:
        last_begin = max((i for i, s in enumerate(self.statements) if s == "BEGIN IMMEDIATE"), default=-1)
        self.published.append((key, "COMMIT" in self.statements[last_begin:]))
        super().publish(key)


async def test_published_keys_wake_waiters_only_after_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jobs.db"
    store = await open_store(path)
    runs = await running(store, "a", "b")
    seen_on_wake: dict[str, list[str]] = {}

    async def watch(run_id: str) -> None:
        await store.wait_events(run_id, 0, 5.0)
        seen_on_wake[run_id] = committed_events(path, run_id)  # a fresh connection sees only commits

    with traced(store) as statements:
        spy = SpyHub(statements)
        monkeypatch.setattr(store, "_hub", spy)
        watchers = {run_id: asyncio.create_task(watch(run_id)) for run_id in ("a", "b")}
        for _ in range(100):  # let both watchers register (no timers involved)
            if spy.waiting("a") + spy.waiting("b") == 2:
                break
            await asyncio.sleep(0)
        assert spy.waiting("a") + spy.waiting("b") == 2
        results = await asyncio.gather(
            commit(store, runs["a"], "s"),
            commit(store, runs["b"], "s", epoch=runs["b"].epoch + 5),  # refused: publishes nothing
            return_exceptions=True,
        )
        assert isinstance(results[1], StaleLeaseError)
        await asyncio.wait_for(watchers["a"], BOUND)
    assert spy.published and all(after_commit for _, after_commit in spy.published), spy.published
    assert "b" not in {key for key, _ in spy.published}
    assert seen_on_wake["a"] == ["run:trigger", "step:start", "step:complete"]
    assert not watchers["b"].done()
    watchers["b"].cancel()
    await asyncio.gather(watchers["b"], return_exceptions=True)
    await store.close()


async def test_a_write_that_cannot_be_encoded_fails_alone_and_the_rest_of_its_transaction_commits(
    tmp_path: Path,
) -> None:
    # Any error of one op (here the strict JSON encoder refusing NaN), not only a fenced-off write,
    # must stay that op's own: another run's step commit in the same tick is not its business.
    path = tmp_path / "jobs.db"
    store = await open_store(path)
    runs = await running(store, "a", "b")
    nan = float("nan")
    bad = NewEvent("run:progress", {"current": nan, "total": None, "message": None, "step": None}, time.time())
    results = await asyncio.wait_for(
        asyncio.gather(
            commit(store, runs["a"], "s"),
            store.append_events("b", runs["b"].epoch, [bad], Progress(nan)),  # not JSON: refused
            return_exceptions=True,
        ),
        BOUND,
    )
    await store.close()
    assert isinstance(results[1], Exception)
    assert not isinstance(results[0], BaseException), f"run a's commit failed because of run b's write: {results[0]!r}"
    assert committed_steps(path) == {"a": ["s"]}
