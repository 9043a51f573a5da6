"""``stepstone.server._fanout.RunTails``: one shared tail per watched run, fanned out to every SSE
subscriber, on a real memory engine. Frames are parsed back with the project's own SSE parser and
every subscriber's events are checked against the run's stored log: from its ``from_seq``, each
event exactly once, in order, ending with the terminal event."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import stepstone
from stepstone import Engine, Run
from stepstone._sse import SSEParser
from stepstone.server._fanout import RunTails

BOUND = 10.0


class Gates:
    """Pauses in a job: ``reached[i]`` is set when the job gets to pause ``i``, ``go[i]`` lets it on."""

    def __init__(self, count: int) -> None:
        self.reached = [asyncio.Event() for _ in range(count)]
        self.go = [asyncio.Event() for _ in range(count)]


def paced_job(name: str, gates: Gates, steps: list[int]) -> stepstone.Job:
    """``steps[0]`` steps, pause 0, ``steps[1]`` steps, pause 1, …, the last group, then complete.
    Each step writes two events (``step:start``, ``step:complete``)."""

    async def run(step: stepstone.Step, payload: Any) -> Any:
        for group, count in enumerate(steps):
            if group > 0:
                gates.reached[group - 1].set()
                await gates.go[group - 1].wait()
            for i in range(count):
                await step.run(f"g{group}-{i}", lambda i=i: i)
        return {"done": True}

    return stepstone.define_job(name, run)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    eng = stepstone.create_engine("memory:", polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)
    yield eng
    await eng.stop()


class Subscriber:
    """Reads ``tails.frames(run, from_seq)`` in a task and parses the frames as they come."""

    def __init__(self, tails: RunTails, run: Run, from_seq: int) -> None:
        self.from_seq = from_seq
        self.events: list[dict[str, Any]] = []
        self.frames = tails.frames(run, from_seq)
        self._progressed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> list[dict[str, Any]]:
        parser = SSEParser()
        async with contextlib.aclosing(self.frames) as frames:
            async for chunk in frames:
                for message in parser.feed(chunk):
                    event = json.loads(message.data)
                    assert message.id == str(event["seq"]) and message.event == event["type"]
                    self.events.append(event)
                self._progressed.set()
        return self.events

    @property
    def next_seq(self) -> int:
        return self.events[-1]["seq"] + 1 if self.events else self.from_seq

    async def until(self, seq: int) -> None:
        """Wait until this subscriber has received the event ``seq``."""
        while self.next_seq <= seq:
            self._progressed.clear()
            await asyncio.wait_for(self._progressed.wait(), BOUND)


async def stored(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in await engine.store.read_events(run_id, 0, 10_000)]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let other tasks run until ``condition`` holds (no timers: every step here is immediate)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def subscribers_of(tails: RunTails, run_id: str) -> int:
    tail = tails._tails.get(run_id)
    return 0 if tail is None else tail.subscribers


async def start_paced(engine: Engine, gates: Gates, steps: list[int]) -> Run:
    engine.register(paced_job("paced", gates, steps))
    await engine.init()
    triggered = await engine.trigger("paced", {})
    await asyncio.wait_for(gates.reached[0].wait(), BOUND)
    run = await engine.get_run(triggered.id)
    assert run is not None
    return run


async def test_many_subscribers_share_one_tail_and_each_gets_every_event_once_in_order(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = Gates(1)
    run = await start_paced(engine, gates, [2, 8])
    assert run.last_seq == 5  # trigger, start, and two steps of two events
    follows: list[str] = []
    real_subscribe = engine.subscribe

    def counting_subscribe(run_id: str, from_seq: int = 0) -> AsyncIterator[stepstone.Event]:
        follows.append(run_id)
        return real_subscribe(run_id, from_seq)

    monkeypatch.setattr(engine, "subscribe", counting_subscribe)
    tails = RunTails(engine)
    subs = [Subscriber(tails, run, i % 8) for i in range(50)]  # 0..5 stored, 6 and 7 still to come
    await until(lambda: subscribers_of(tails, run.id) == 50, "all 50 subscribers joined")
    assert tails.active == 1

    gates.go[0].set()
    await asyncio.wait_for(asyncio.gather(*(s.task for s in subs)), BOUND)
    log = await stored(engine, run.id)
    assert log[-1]["type"] == "run:complete" and len(log) == 23
    for sub in subs:
        assert sub.events == log[sub.from_seq :], f"subscriber from {sub.from_seq}"
    assert follows == [run.id], "the store was followed more than once for one run"
    await until(lambda: tails.active == 0, "the tail was dropped")


async def test_a_late_subscriber_older_than_the_buffer_reads_the_store_with_no_gap_or_duplicate(
    engine: Engine,
) -> None:
    gates = Gates(2)
    run = await start_paced(engine, gates, [2, 10, 6])
    tails = RunTails(engine, buffer=4)
    early = Subscriber(tails, run, 0)
    await early.until(5)
    gates.go[0].set()
    await asyncio.wait_for(gates.reached[1].wait(), BOUND)
    await early.until(25)  # 6 + 20 events of the second group
    tail = tails._tails[run.id]
    assert tail.first > 3, "the buffer was not trimmed; the test would not reach the store path"

    late = Subscriber(tails, run, 3)  # older than the buffer, and older than where the tail began
    gates.go[1].set()  # the tail moves on while the late one is still reading the store
    midway = Subscriber(tails, run, 20)
    await asyncio.wait_for(asyncio.gather(early.task, late.task, midway.task), BOUND)
    log = await stored(engine, run.id)
    assert log[-1]["type"] == "run:complete" and len(log) == 39
    assert early.events == log
    assert late.events == log[3:]
    assert midway.events == log[20:]
    await until(lambda: tails.active == 0, "the tail was dropped")


async def test_when_the_last_subscriber_leaves_early_the_tail_is_dropped_and_its_task_cancelled(
    engine: Engine,
) -> None:
    gates = Gates(1)
    run = await start_paced(engine, gates, [2, 3])
    tails = RunTails(engine)
    closing = tails.frames(run, 0)
    first = await asyncio.wait_for(closing.__anext__(), BOUND)
    assert first.startswith(b"id: 0\n")
    waiting = Subscriber(tails, run, 0)  # will sit waiting on the tail
    await waiting.until(5)
    tail = tails._tails[run.id]
    assert tails.active == 1 and tail.subscribers == 2 and tail.task is not None
    follow = tail.task

    await closing.aclose()  # leaves by closing the generator (an SSE client that disconnected)
    assert tails.active == 1 and not follow.done()
    waiting.task.cancel()  # leaves by cancellation while waiting on the tail
    await asyncio.wait({waiting.task}, timeout=BOUND)
    assert waiting.task.cancelled()
    assert tails.active == 0
    await asyncio.wait({follow}, timeout=BOUND)
    assert follow.cancelled()

    again = Subscriber(tails, run, 0)  # a new subscriber gets a new tail and the whole log
    await until(lambda: tails.active == 1, "a new tail")
    assert tails._tails[run.id] is not tail
    gates.go[0].set()
    await asyncio.wait_for(again.task, BOUND)
    assert again.events == await stored(engine, run.id)
    assert again.events[-1]["type"] == "run:complete"


async def test_a_deleted_run_ends_its_subscribers(engine: Engine) -> None:
    gates = Gates(1)
    run = await start_paced(engine, gates, [2, 3])
    tails = RunTails(engine, buffer=2)
    subs = [Subscriber(tails, run, from_seq) for from_seq in (0, 3, 6, 50)]
    await until(lambda: subscribers_of(tails, run.id) == 4, "all subscribers joined")
    await subs[0].until(5)
    await subs[1].until(5)
    follow = tails._tails[run.id].task
    assert follow is not None

    await engine.delete_run(run.id)
    done, pending = await asyncio.wait([s.task for s in subs], timeout=BOUND)
    assert not pending, "a subscriber of a deleted run never ended"
    assert all(t.exception() is None for t in done)
    assert [[e["seq"] for e in s.events] for s in subs] == [[0, 1, 2, 3, 4, 5], [3, 4, 5], [], []]
    await asyncio.wait({follow}, timeout=BOUND)
    assert follow.done() and tails.active == 0


async def test_a_subscriber_of_a_finished_run_gets_its_whole_log_and_ends(engine: Engine) -> None:
    gates = Gates(1)
    run = await start_paced(engine, gates, [1, 1])
    gates.go[0].set()
    finished = await engine.wait(run.id, timeout=BOUND)
    assert finished.status == "completed"
    tails = RunTails(engine, buffer=2)
    subs = [Subscriber(tails, finished, from_seq) for from_seq in (0, 4, finished.last_seq, finished.last_seq + 1)]
    await asyncio.wait_for(asyncio.gather(*(s.task for s in subs)), BOUND)
    log = await stored(engine, run.id)
    assert [s.events for s in subs] == [log, log[4:], log[-1:], []]
    await until(lambda: tails.active == 0, "the tail was dropped")


async def test_a_run_that_reported_nan_progress_is_still_streamed_to_its_end(engine: Engine) -> None:
    @stepstone.job("nan-progress")
    async def nan_progress(step: stepstone.Step, payload: Any) -> Any:
        await step.run("a", lambda: 1)
        step.progress(float("nan"))
        await step.run("b", lambda: 2)
        return {"ok": True}

    engine.register(nan_progress)
    await engine.init()
    triggered = await engine.trigger("nan-progress", {})
    run = await engine.get_run(triggered.id)
    assert run is not None
    tails = RunTails(engine)
    sub = Subscriber(tails, run, 0)
    await asyncio.wait_for(sub.task, BOUND)
    # whatever the fix (refuse NaN in the job, in the store, or encode it), the subscriber must see
    # the run's whole log, through its terminal event
    log = await engine.store.read_events(run.id, 0, 10_000)
    assert [(e["seq"], e["type"]) for e in sub.events] == [(e.seq, e.type) for e in log]
    assert log[-1].is_terminal
