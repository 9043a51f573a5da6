"""``stepstone._writer.RunWriter``: the group commit of one execution's events, against a real
MemoryStore whose write methods are counted (one call = one transaction in a real store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from stepstone import MemoryStore, StaleLeaseError
from stepstone._models import Event, Progress, Run, RunStatus, StepRecord
from stepstone._writer import RunWriter
from stepstone.stores import NewEvent, NewRun

BOUND = 2.0


class CountingStore(MemoryStore):
    """A MemoryStore that records every write the writer makes: (method, event types)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[str]]] = []

    async def append_events(
        self, run_id: str, epoch: int | None, events: Sequence[NewEvent], progress: Progress | None = None
    ) -> list[Event]:
        self.calls.append(("append_events", [e.type for e in events]))
        return await super().append_events(run_id, epoch, events, progress)

    async def commit_step(
        self, run_id: str, epoch: int, step: StepRecord, events: Sequence[NewEvent], progress: Progress | None = None
    ) -> list[Event]:
        self.calls.append(("commit_step", [e.type for e in events]))
        return await super().commit_step(run_id, epoch, step, events, progress)

    async def finish_run(
        self,
        run_id: str,
        epoch: int,
        status: RunStatus,
        output: Any,
        error: str | None,
        now: float,
        expires_at: float | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> tuple[Run, list[Event]]:
        self.calls.append(("finish_run", [e.type for e in events]))
        return await super().finish_run(run_id, epoch, status, output, error, now, expires_at, events, progress)


class Harness:
    """A claimed run and a writer for it; ``dispatched`` and ``fenced`` record the callbacks."""

    def __init__(self, store: CountingStore, run: Run, linger: float) -> None:
        self.store = store
        self.run = run
        self.dispatched: list[list[Event]] = []
        self.fenced: list[BaseException] = []
        self.wrote = asyncio.Event()
        self.fenced_once = asyncio.Event()
        self.writer = RunWriter(store, run.id, run.epoch, self._dispatch, self._on_fenced, linger)

    def _dispatch(self, events: list[Event]) -> None:
        self.dispatched.append(events)
        self.wrote.set()

    def _on_fenced(self, exc: BaseException) -> None:
        self.fenced.append(exc)
        self.fenced_once.set()

    async def log(self) -> list[tuple[int, str]]:
        return [(e.seq, e.type) for e in await self.store.read_events(self.run.id)]


async def claimed(linger: float = 10.0) -> Harness:
    store = CountingStore()
    t = time.time()
    await store.create_run(NewRun("run-1", "job", "1", {"x": 1}, t), NewEvent("run:trigger", {}, t))
    run = await store.claim_next("worker-a", ["job"], t, t + 60)
    assert run is not None and run.status == "running"
    return Harness(store, run, linger)


async def take_over(store: MemoryStore) -> None:
    """Another worker takes the run over (its owner proven dead): the writer's epoch is stale."""
    await store.expire_leases("worker-a", time.time())
    t = time.time()
    assert await store.claim_next("worker-b", ["job"], t, t + 60) is not None


def record(name: str, index: int, output: Any = None) -> StepRecord:
    t = time.time()
    return StepRecord("run-1", name, index, "completed", output, None, t, t)


def step_done(name: str, index: int) -> NewEvent:
    return NewEvent("step:complete", {"name": name, "index": index}, time.time())


def log_data(message: str) -> dict[str, Any]:
    return {"level": "info", "message": message, "data": None, "step": None}


async def test_emitted_events_are_written_with_the_next_step_commit_in_one_store_call() -> None:
    h = await claimed(linger=10.0)  # no linger flush during the test
    h.writer.emit("step:start", {"name": "a", "index": 0})
    h.writer.emit("log:write", log_data("inside"))
    h.writer.emit("run:progress", {"current": 1, "total": 2, "message": None, "step": "a"}, Progress(1, 2))
    assert h.writer.pending_count == 3 and h.store.calls == []
    await h.writer.commit_step(record("a", 0, {"v": 1}), step_done("a", 0))
    assert h.store.calls == [("commit_step", ["step:start", "log:write", "run:progress", "step:complete"])]
    assert h.writer.pending_count == 0
    types = ["run:trigger", "step:start", "log:write", "run:progress", "step:complete"]
    assert await h.log() == list(enumerate(types))
    steps = await h.store.get_steps("run-1")
    assert [(s.name, s.output) for s in steps] == [("a", {"v": 1})]
    run = await h.store.get_run("run-1")
    assert run is not None and run.progress == Progress(1, 2)
    h.writer.close()


async def test_without_a_commit_buffered_events_are_flushed_after_the_linger() -> None:
    h = await claimed(linger=0.05)
    start = time.monotonic()
    h.writer.emit("log:write", log_data("one"))
    h.writer.emit("log:write", log_data("two"))
    assert h.store.calls == []
    await asyncio.wait_for(h.wrote.wait(), BOUND)
    assert time.monotonic() - start >= 0.04, "flushed before the linger passed"
    assert h.store.calls == [("append_events", ["log:write", "log:write"])]
    assert await h.log() == [(0, "run:trigger"), (1, "log:write"), (2, "log:write")]
    assert h.fenced == []
    h.writer.close()


async def test_an_explicit_flush_writes_at_once_and_the_linger_then_writes_nothing_more() -> None:
    h = await claimed(linger=0.02)
    h.writer.emit("log:write", log_data("one"))
    await h.writer.flush()
    assert h.store.calls == [("append_events", ["log:write"])]
    await asyncio.sleep(0.1)  # past the linger: its timer was cancelled by the flush
    assert h.store.calls == [("append_events", ["log:write"])]
    await h.writer.flush()  # nothing pending: no store call at all
    assert len(h.store.calls) == 1
    h.writer.close()


async def test_the_progress_emitted_last_wins() -> None:
    h = await claimed(linger=10.0)
    for i in (1, 2, 3):
        h.writer.emit(
            "run:progress", {"current": i, "total": 3, "message": f"m{i}", "step": None}, Progress(i, 3, f"m{i}")
        )
    h.writer.emit("log:write", log_data("no progress on this one"))
    await h.writer.flush()
    assert h.store.calls == [("append_events", ["run:progress"] * 3 + ["log:write"])]
    run = await h.store.get_run("run-1")
    assert run is not None and run.progress == Progress(3, 3, "m3")
    h.writer.close()


async def test_a_linger_flush_refused_for_a_stale_epoch_calls_on_fenced_and_writes_nothing() -> None:
    h = await claimed(linger=0.01)
    await take_over(h.store)
    h.writer.emit("log:write", log_data("too late"))
    await asyncio.wait_for(h.fenced_once.wait(), BOUND)
    assert len(h.fenced) == 1 and isinstance(h.fenced[0], StaleLeaseError)
    assert h.dispatched == []
    with pytest.raises(StaleLeaseError):
        await h.writer.commit_step(record("a", 0), step_done("a", 0))
    assert await h.log() == [(0, "run:trigger")]
    assert await h.store.get_steps("run-1") == []
    h.writer.close()


async def test_a_refused_step_commit_raises_and_writes_neither_the_step_nor_the_buffer() -> None:
    h = await claimed(linger=10.0)
    await take_over(h.store)
    h.writer.emit("step:start", {"name": "a", "index": 0})
    with pytest.raises(StaleLeaseError):
        await h.writer.commit_step(record("a", 0), step_done("a", 0))
    with pytest.raises(StaleLeaseError):
        await h.writer.finish("completed", None, None, None, NewEvent("run:complete", {}, time.time()))
    assert await h.log() == [(0, "run:trigger")]
    assert await h.store.get_steps("run-1") == []
    assert h.dispatched == [] and h.fenced == []
    h.writer.close()


async def test_close_drops_what_is_pending_and_later_commits_raise_stale_lease() -> None:
    h = await claimed(linger=0.02)
    h.writer.emit("step:start", {"name": "a", "index": 0})
    h.writer.emit("run:progress", {"current": 1, "total": None, "message": None, "step": None}, Progress(1))
    h.writer.close()
    assert h.writer.closed and h.writer.pending_count == 0
    h.writer.emit("log:write", log_data("after close"))  # ignored
    assert h.writer.pending_count == 0
    await asyncio.sleep(0.1)  # well past the linger: nothing may be written by a timer
    await h.writer.flush()  # a no-op once closed
    with pytest.raises(StaleLeaseError):
        await h.writer.commit_step(record("a", 0), step_done("a", 0))
    with pytest.raises(StaleLeaseError):
        await h.writer.finish("completed", {"ok": True}, None, None, NewEvent("run:complete", {}, time.time()))
    assert h.store.calls == [] and h.dispatched == [] and h.fenced == []
    assert await h.log() == [(0, "run:trigger")]
    run = await h.store.get_run("run-1")
    assert run is not None and run.status == "running" and run.progress is None


async def test_close_cancels_a_flush_in_flight_without_calling_on_fenced() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    class SlowStore(CountingStore):
        async def append_events(
            self, run_id: str, epoch: int | None, events: Sequence[NewEvent], progress: Progress | None = None
        ) -> list[Event]:
            entered.set()
            try:
                await asyncio.Event().wait()  # a store round trip that never answers
            except asyncio.CancelledError:
                cancelled.set()
                raise
            raise AssertionError("unreachable")

    store = SlowStore()
    t = time.time()
    await store.create_run(NewRun("run-1", "job", "1", None, t), NewEvent("run:trigger", {}, t))
    run = await store.claim_next("worker-a", ["job"], t, t + 60)
    assert run is not None
    h = Harness(store, run, linger=0.01)
    h.writer.emit("log:write", log_data("slow"))
    await asyncio.wait_for(entered.wait(), BOUND)
    h.writer.close()
    await asyncio.wait_for(cancelled.wait(), BOUND)
    await asyncio.sleep(0)  # let the cancelled flush task finish its except clause
    assert h.fenced == [] and h.dispatched == []
    assert await h.log() == [(0, "run:trigger")]


async def test_dispatch_receives_the_written_events_in_seq_order() -> None:
    h = await claimed(linger=0.01)
    h.writer.emit("run:start", {"attempt": 1})
    h.writer.emit("step:start", {"name": "a", "index": 0})
    await h.writer.commit_step(record("a", 0, 1), step_done("a", 0))
    h.wrote.clear()
    h.writer.emit("log:write", log_data("between"))  # written by the linger
    await asyncio.wait_for(h.wrote.wait(), BOUND)
    h.writer.emit("step:start", {"name": "b", "index": 1})
    await h.writer.commit_step(record("b", 1, 2), step_done("b", 1))
    h.writer.emit("log:write", log_data("last"))
    run = await h.writer.finish(
        "completed", {"sum": 3}, None, None, NewEvent("run:complete", {"output": 3}, time.time())
    )
    assert run.status == "completed" and h.writer.closed
    dispatched = [e for batch in h.dispatched for e in batch]
    assert [e.seq for e in dispatched] == list(range(1, 9))
    assert dispatched == (await h.store.read_events("run-1"))[1:]
    assert [[e.type for e in batch] for batch in h.dispatched] == [
        ["run:start", "step:start", "step:complete"],
        ["log:write"],
        ["step:start", "step:complete"],
        ["log:write", "run:complete"],
    ]
    assert [c[0] for c in h.store.calls] == ["commit_step", "append_events", "commit_step", "finish_run"]
