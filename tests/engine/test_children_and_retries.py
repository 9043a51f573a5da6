"""Child runs (``step.invoke``), step and run retries with durable backoff, and strict versioning,
through the public names on memory and SQLite."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import stepstone
from stepstone import Engine
from stepstone.testing import TestClock

from .test_suspension import BOUND, _engine, until_status


async def test_an_invoked_child_returns_its_output_and_a_failed_one_raises(store_url: str) -> None:
    engine = _engine(store_url)

    async def double(step: stepstone.Step, payload: Any) -> Any:
        if payload < 0:
            raise ValueError("negative")
        return payload * 2

    async def parent(step: stepstone.Step, payload: Any) -> Any:
        two = await step.invoke("double-1", "double", 1)
        try:
            await step.invoke("double-bad", "double", -1)
        except stepstone.ChildRunFailed as exc:
            return {"two": two, "failed": exc.child_id, "error": exc.error}
        return {"two": two}

    engine.register(stepstone.define_job("double", double))
    engine.register(stepstone.define_job("parent", parent))
    async with engine:
        run = await engine.trigger("parent")
        done = await engine.wait(run.id, timeout=BOUND)
        children = await engine.get_runs(parent_id=run.id)
    assert done.status == "completed", done.error
    assert done.output["two"] == 2 and done.output["error"] == "ValueError: negative"
    assert children.total == 2 and {c.parent_id for c in children} == {run.id}
    assert {c.parent_step for c in children} == {"double-1", "double-bad"}
    assert done.output["failed"] in {c.id for c in children}


async def test_a_hundred_children_fan_out_and_in_with_one_worker_slot(store_url: str) -> None:
    engine = _engine(store_url, concurrency=1)
    executions: Counter[str] = Counter()

    async def square(step: stepstone.Step, payload: Any) -> Any:
        if payload == 13:
            raise RuntimeError("unlucky")
        return await step.run("square", lambda: executions.update([f"child-{payload}"]) or payload * payload)

    async def fan(step: stepstone.Step, payload: Any) -> Any:
        executions.update(["parent-execution"])
        results = await asyncio.gather(
            *(step.invoke(f"sq-{i}", "square", i) for i in range(100)), return_exceptions=True
        )
        failed = [r.child_id for r in results if isinstance(r, stepstone.ChildRunFailed)]
        return {"sum": sum(r for r in results if isinstance(r, int)), "failed": len(failed)}

    engine.register(stepstone.define_job("square", square))
    engine.register(stepstone.define_job("fan", fan))
    async with engine:
        run = await engine.trigger("fan")
        done = await engine.wait(run.id, timeout=60)
    assert done.status == "completed", done.error
    assert done.output == {"sum": sum(i * i for i in range(100)) - 169, "failed": 1}
    assert all(executions[f"child-{i}"] == 1 for i in range(100) if i != 13), "each child body ran once"
    assert executions["parent-execution"] <= 4, "the parent wakes when its children are done, not per child"


async def test_a_step_is_retried_with_backoff_and_each_failure_logged(store_url: str) -> None:
    engine = _engine(store_url)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    async def job(step: stepstone.Step, payload: Any) -> Any:
        return await step.run("call", flaky, retries=3, backoff=0.01)

    engine.register(stepstone.define_job("flaky", job))
    async with engine:
        run = await engine.trigger("flaky")
        done = await engine.wait(run.id, timeout=BOUND)
        events = [e async for e in engine.subscribe(run.id)]
        [step] = await engine.get_steps(run.id)
    assert done.output == "ok" and len(calls) == 3
    retries = [e.data for e in events if e.type == "step:retry"]
    assert [r["attempt"] for r in retries] == [1, 2] and retries[0]["error"] == "ConnectionError: try 1"
    assert all(r["nextAttemptAt"] > 0 for r in retries)
    assert step.status == "completed" and step.attempt == 3


async def test_a_long_step_backoff_suspends_the_run_durably(store_url: str) -> None:
    clock = TestClock()
    engine = _engine(store_url, clock=clock)
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("slow upstream")
        return len(calls)

    async def job(step: stepstone.Step, payload: Any) -> Any:
        return await step.run("call", flaky, retries=2, backoff=lambda attempt: 600.0)

    engine.register(stepstone.define_job("flaky", job))
    async with engine:
        run = await engine.trigger("flaky")
        parked = await until_status(engine, run.id, "suspended")
        assert parked.wait is not None and parked.wait.reason == "retry"
        assert parked.wake_at == clock.now() + 600.0 or abs(parked.wake_at - clock.now() - 600) < 1  # type: ignore[operator]
        clock.advance(600)
        done = await engine.wait(run.id, timeout=BOUND)
    assert done.output == 2 and len(calls) == 2


async def test_a_step_that_exhausts_its_retries_fails_the_run(store_url: str) -> None:
    engine = _engine(store_url)

    async def job(step: stepstone.Step, payload: Any) -> Any:
        return await step.run("never", lambda: 1 / 0, retries=2, backoff=0.0)

    engine.register(stepstone.define_job("never", job))
    async with engine:
        run = await engine.trigger("never")
        done = await engine.wait(run.id, timeout=BOUND)
        [step] = await engine.get_steps(run.id)
    assert done.status == "failed" and done.error == "ZeroDivisionError: division by zero"
    assert step.status == "failed" and step.attempt == 3 and step.retry_at is None


async def test_run_level_retries_requeue_from_the_first_unfinished_step(store_url: str) -> None:
    engine = _engine(store_url)
    firsts: list[int] = []
    attempts: list[int] = []

    @stepstone.job("flaky-run", retries=2, backoff=0.01)
    async def flaky_run(step: stepstone.Step, payload: Any) -> Any:
        await step.run("first", lambda: firsts.append(1))
        attempts.append(step.attempt)
        if step.attempt < 3:
            raise RuntimeError(f"attempt {step.attempt}")
        return step.attempt

    @stepstone.job("hopeless", retries=1, backoff=0.01)
    async def hopeless(step: stepstone.Step, payload: Any) -> Any:
        raise RuntimeError("always")

    engine.register(flaky_run)
    engine.register(hopeless)
    async with engine:
        run = await engine.trigger("flaky-run")
        done = await engine.wait(run.id, timeout=BOUND)
        dead = await engine.wait((await engine.trigger("hopeless")).id, timeout=BOUND)
        dlq = await engine.get_runs(status="failed")
    assert done.status == "completed" and done.output == 3 and done.attempt == 3
    assert firsts == [1] and attempts == [1, 2, 3]
    assert dead.status == "failed" and dead.attempt == 2 and dead.error == "RuntimeError: always"
    assert [r.id for r in dlq] == [dead.id], "the failed list is the dead-letter queue"


async def test_a_worker_runs_only_the_versions_it_registered(store_url: str) -> None:
    ran: list[str] = []

    def version(tag: str) -> stepstone.Job:
        async def run(step: stepstone.Step, payload: Any) -> Any:
            ran.append(tag)
            return tag

        return stepstone.define_job("evolving", run, version=tag)

    shared: Any = stepstone.MemoryStore() if store_url == "memory:" else store_url  # one store, three engines
    engine = _engine(shared)
    engine.register(version("2"))
    engine.register(version("10"))
    async with engine:
        newest = await engine.trigger("evolving")
        assert newest.job_version == "10", "the newest version, in natural order"
        pinned = await engine.trigger("evolving", version="2")
        assert (await engine.wait(newest.id, timeout=BOUND)).output == "10"
        assert (await engine.wait(pinned.id, timeout=BOUND)).output == "2"
    web = _engine(shared, worker=False)  # a process that only triggers: the v1 run waits for a worker
    web.register(version("1"))
    async with web:
        old = await web.trigger("evolving")
    only_v10 = _engine(shared)
    only_v10.register(version("10"))
    async with only_v10:
        await asyncio.sleep(0.3)
        assert (await only_v10.get_run(old.id)).status == "pending", "v10 code never runs a v1 run"  # type: ignore[union-attr]
        only_v10.register(version("1"))
        assert (await only_v10.wait(old.id, timeout=BOUND)).output == "1"


async def test_the_engine_refuses_a_second_job_object_at_the_same_version(store_url: str) -> None:
    engine: Engine = _engine(store_url)

    async def a(step: stepstone.Step, payload: Any) -> Any:
        return None

    engine.register(stepstone.define_job("same", a, version="1"))
    engine.register(stepstone.define_job("same", a, version="2"))
    try:
        engine.register(stepstone.define_job("same", a, version="1"))
    except stepstone.DuplicateJob as exc:
        assert "version '1'" in str(exc)
    else:
        raise AssertionError("a second job at version 1 was accepted")
