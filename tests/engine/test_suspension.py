"""Durable sleep and events through the public names, on memory and SQLite: a waiting run is
``suspended``, holds no worker, wakes on time (or at once with a TestClock's time travel), and
replays the steps before the wait without running them again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stepstone
from stepstone import Engine
from stepstone.testing import TestClock

BOUND = 10.0
Clocked = tuple[Engine, TestClock, list[str]]


def _engine(url: Any, **options: Any) -> Engine:
    defaults: dict[str, Any] = {"polling_interval": 0.05, "heartbeat_interval": 0.05, "stale_threshold": 1.0}
    return stepstone.create_engine(url, **{**defaults, **options})


async def until_status(engine: Engine, run_id: str, status: str) -> stepstone.Run:
    deadline = time.monotonic() + BOUND
    while True:
        run = await engine.get_run(run_id)
        assert run is not None
        if run.status == status:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is {run.status}, never {status}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def clocked(store_url: str) -> AsyncIterator[Clocked]:
    clock = TestClock()
    engine = _engine(store_url, clock=clock)
    bodies: list[str] = []

    async def day_nap(step: stepstone.Step, payload: Any) -> Any:
        await step.run("before", lambda: bodies.append("before"))
        await step.sleep("nap", 86400)
        await step.run("after", lambda: bodies.append("after"))
        return {"woke": True}

    async def approval(step: stepstone.Step, payload: Any) -> Any:
        await step.run("ask", lambda: bodies.append("ask"))
        try:
            data = await step.wait_for_event("approval", timeout=payload.get("timeout"))
        except stepstone.WaitTimeout:
            return {"approved": False}
        return {"approved": True, "by": data["by"]}

    async def collect(step: stepstone.Step, payload: Any) -> Any:
        return [await step.wait_for_event("item") for _ in range(payload["n"])]

    for name, fn in (("day-nap", day_nap), ("approval", approval), ("collect", collect)):
        engine.register(stepstone.define_job(name, fn))
    async with engine:
        yield engine, clock, bodies


async def test_a_day_long_sleep_takes_milliseconds_with_a_test_clock(clocked: Clocked) -> None:
    engine, clock, bodies = clocked
    run = await engine.trigger("day-nap")
    parked = await until_status(engine, run.id, "suspended")
    assert parked.wait is not None and parked.wait.reason == "sleep"
    assert parked.wake_at == pytest.approx(clock.now() + 86400, abs=1)
    clock.advance(86399)
    await clock.settle()
    assert (await engine.get_run(run.id)).status == "suspended", "not a second early"  # type: ignore[union-attr]
    started = time.monotonic()
    clock.advance(1)
    done = await engine.wait(run.id, timeout=BOUND)
    assert done.status == "completed" and done.output == {"woke": True}
    assert time.monotonic() - started < 2
    assert bodies == ["before", "after"], "the step before the sleep ran once"
    types = [e.type async for e in engine.subscribe(run.id)]
    assert types.count("run:suspend") == 1 and types.count("run:resume") == 1
    steps = {s.name: s for s in await engine.get_steps(run.id)}
    assert steps["nap"].status == "completed" and steps["nap"].output["until"] == parked.wake_at


async def test_events_sent_before_the_wait_are_taken_in_order_each_once(
    clocked: Clocked,
) -> None:
    engine, _, _ = clocked
    run = await engine.trigger("collect", {"n": 4})
    for i in range(3):
        await engine.send_event(run.id, "item", {"i": i})
    parked = await until_status(engine, run.id, "suspended")
    assert parked.wait is not None and parked.wait.events == ("item",)
    await engine.send_event(run.id, "item", {"i": 3})
    done = await engine.wait(run.id, timeout=BOUND)
    assert done.output == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]


async def test_an_event_wakes_a_waiting_run_and_the_steps_before_do_not_rerun(
    clocked: Clocked,
) -> None:
    engine, _, bodies = clocked
    run = await engine.trigger("approval", {})
    await until_status(engine, run.id, "suspended")
    await engine.send_event(run.id, "approval", {"by": "ann"})
    done = await engine.wait(run.id, timeout=BOUND)
    assert done.output == {"approved": True, "by": "ann"}
    assert bodies == ["ask"]


async def test_a_wait_times_out_inside_the_job_and_a_late_event_is_not_taken(
    clocked: Clocked,
) -> None:
    engine, clock, _ = clocked
    run = await engine.trigger("approval", {"timeout": 3600})
    parked = await until_status(engine, run.id, "suspended")
    assert parked.wait is not None and parked.wait.until == pytest.approx(clock.now() + 3600, abs=1)
    clock.advance(3601)
    done = await engine.wait(run.id, timeout=BOUND)
    assert done.output == {"approved": False}
    with pytest.raises(stepstone.InvalidRunState):
        await engine.send_event(run.id, "approval", {"by": "late"})


async def test_send_event_refuses_unknown_runs_and_bad_data(clocked: Clocked) -> None:
    engine, _, _ = clocked
    with pytest.raises(stepstone.RunNotFound):
        await engine.send_event("no-such-run", "approval", {})
    run = await engine.trigger("collect", {"n": 1})
    with pytest.raises(stepstone.InvalidInput, match="cannot be stored"):
        await engine.send_event(run.id, "item", {"x": {1, 2}})
    with pytest.raises(stepstone.InvalidInput, match="event name"):
        await engine.send_event(run.id, "", {})
    await engine.send_event(run.id, "item", {"ok": True})
    assert (await engine.wait(run.id, timeout=BOUND)).output == [{"ok": True}]


async def test_a_sleep_frees_the_worker_slot(store_url: str) -> None:
    engine = _engine(store_url, concurrency=1)
    order: list[str] = []

    async def sleeper(step: stepstone.Step, payload: Any) -> Any:
        await step.run("start", lambda: order.append("sleeper started"))
        await step.sleep("nap", 0.4)
        await step.run("end", lambda: order.append("sleeper woke"))

    async def quick(step: stepstone.Step, payload: Any) -> Any:
        await step.run("only", lambda: order.append("quick ran"))

    engine.register(stepstone.define_job("sleeper", sleeper))
    engine.register(stepstone.define_job("quick", quick))
    async with engine:
        slow = await engine.trigger("sleeper")
        await until_status(engine, slow.id, "suspended")
        fast = await engine.trigger("quick")
        assert (await engine.wait(fast.id, timeout=BOUND)).status == "completed"
        assert (await engine.get_run(slow.id)).status == "suspended"  # type: ignore[union-attr]
        woke = await engine.wait(slow.id, timeout=BOUND)
    assert woke.status == "completed"
    assert order == ["sleeper started", "quick ran", "sleeper woke"]


async def test_a_short_sleep_wakes_on_time_in_process(store_url: str) -> None:
    engine = _engine(store_url, polling_interval=5.0)  # a wake at the next poll would be 5 s late
    woke_at: list[float] = []

    async def nap(step: stepstone.Step, payload: Any) -> Any:
        await step.sleep_until("nap", payload["until"])
        await step.run("after", lambda: woke_at.append(time.time()))

    engine.register(stepstone.define_job("nap", nap))
    async with engine:
        until = time.time() + 0.3
        run = await engine.trigger("nap", {"until": until})
        await engine.wait(run.id, timeout=BOUND)
    assert until <= woke_at[0] < until + 1.0


async def test_a_run_does_not_suspend_while_a_step_body_is_still_working(store_url: str) -> None:
    engine = _engine(store_url)
    statuses: list[str] = []

    async def mixed(step: stepstone.Step, payload: Any) -> Any:
        async def slow() -> str:
            await asyncio.sleep(0.3)
            run = await engine.get_run(step.run_id)
            statuses.append(run.status if run else "?")
            return "slow done"

        return await asyncio.gather(step.run("slow", slow), step.sleep("nap", 0.05))

    engine.register(stepstone.define_job("mixed", mixed))
    async with engine:
        run = await engine.trigger("mixed")
        done = await engine.wait(run.id, timeout=BOUND)
    assert done.status == "completed" and done.output == ["slow done", None]
    assert statuses == ["running"], "the sleep parked, but the body kept the run executing"


async def test_a_zero_timeout_takes_a_queued_event_or_times_out_at_once(clocked: Clocked) -> None:
    engine, _, _ = clocked
    run = await engine.trigger("approval", {"timeout": 0})
    assert (await engine.wait(run.id, timeout=BOUND)).output == {"approved": False}


async def test_invoking_an_unregistered_job_fails_the_parent_clearly(store_url: str) -> None:
    engine = _engine(store_url)

    async def parent(step: stepstone.Step, payload: Any) -> Any:
        return await step.invoke("c", "no-such-job", {})

    engine.register(stepstone.define_job("parent", parent))
    async with engine:
        done = await engine.wait((await engine.trigger("parent")).id, timeout=BOUND)
    assert done.status == "failed" and "no job named 'no-such-job'" in (done.error or "")
