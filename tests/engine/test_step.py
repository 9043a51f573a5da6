"""step.run, progress, logs and streaming jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stepstone
from stepstone import Engine


async def run_job(engine: Engine, fn: Any, payload: Any = None, name: str = "j") -> stepstone.Run:
    engine.register(stepstone.define_job(name, fn))
    await engine.init()
    run = await engine.trigger(name, payload)
    return await engine.wait(run.id, timeout=5)


async def test_sync_and_async_step_bodies(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> Any:
        async def fetch() -> list[int]:
            await asyncio.sleep(0)
            return [1, 2]

        a = await step.run("sync", lambda: (1, 2))
        b = await step.run("async", fetch)
        return {"a": a, "b": b}

    run = await run_job(engine, job)
    assert run.status == "completed"
    assert run.output == {"a": [1, 2], "b": [1, 2]}, "a tuple comes back as a list, first run and resume alike"


async def test_repeated_step_name_fails_the_run_clearly(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> None:
        await step.run("same", lambda: 1)
        await step.run("same", lambda: 2)

    run = await run_job(engine, job)
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("DuplicateStepError: step 'same' was already run")


async def test_non_json_result_fails_the_run_naming_the_step(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> None:
        await step.run("makes-a-set", lambda: {1, 2})

    run = await run_job(engine, job)
    assert run.status == "failed"
    assert run.error is not None and "step 'makes-a-set' returned a set" in run.error
    steps = await engine.get_steps(run.id)
    assert steps[0].status == "failed" and "not JSON-serialisable" in (steps[0].error or "")


async def test_non_json_output_fails_the_run(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> Any:
        return object()

    run = await run_job(engine, job)
    assert run.status == "failed" and "InvalidOutput" in (run.error or "")


async def test_job_can_catch_a_failed_step(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> str:
        try:
            await step.run("risky", lambda: 1 / 0)
        except ZeroDivisionError:
            return "recovered"
        return "no"

    run = await run_job(engine, job)
    assert run.status == "completed" and run.output == "recovered"
    events = [e async for e in engine.subscribe(run.id)]
    fail = [e for e in events if e.type == "step:fail"]
    assert fail and fail[0].data["error"] == "ZeroDivisionError: division by zero"


async def test_progress_and_logs_are_events(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> None:
        step.log.info("starting", count=3, obj=object)
        await step.run("a", lambda: step.log.warn("inside"))
        step.progress(1, 2, "half")
        step.log.error("bad", code=7)

    run = await run_job(engine, job)
    assert run.progress == stepstone.Progress(1, 2, "half")
    events = [e async for e in engine.subscribe(run.id)]
    logs = [e.data for e in events if e.type == "log:write"]
    assert [(d["level"], d["message"], d["step"]) for d in logs] == [
        ("info", "starting", None),
        ("warn", "inside", "a"),
        ("error", "bad", None),
    ]
    assert logs[0]["data"]["count"] == 3 and "class 'object'" in logs[0]["data"]["obj"]
    prog = [e.data for e in events if e.type == "run:progress"]
    assert prog == [{"current": 1, "total": 2, "message": "half", "step": None}]
    types = [e.type for e in events]
    assert types[0] == "run:trigger" and types[1] == "run:start" and types[-1] == "run:complete"


async def test_slow_step_shows_its_start_before_it_ends(engine: Engine) -> None:
    release = asyncio.Event()

    async def job(step: stepstone.Step, payload: Any) -> None:
        await step.run("slow", release.wait)

    engine.register(stepstone.define_job("slowstart", job))
    await engine.init()
    run = await engine.trigger("slowstart")
    seen: list[str] = []
    async for event in engine.subscribe(run.id):
        seen.append(event.type)
        if event.type == "step:start":
            assert "step:complete" not in seen
            release.set()
    assert seen[-2:] == ["step:complete", "run:complete"]


async def test_streaming_job_writes_stream_events(engine: Engine) -> None:
    async def tokens(step: stepstone.Step, payload: Any) -> AsyncIterator[str]:
        words = await step.run("plan", lambda: ["hello", "durable", "world"])
        for w in words:
            yield w

    engine.register(stepstone.define_job("tok", tokens))
    await engine.init()
    run = await engine.trigger("tok")
    items = [e.data["value"] async for e in engine.subscribe(run.id) if e.type == "stream"]
    assert items == ["hello", "durable", "world"]
    done = await engine.get_run(run.id)
    assert done is not None and done.status == "completed" and done.output == {"streamed": 3}
    snap = await engine.snapshot(run.id)
    assert snap.items == ["hello", "durable", "world"] and snap.run.is_terminal
    assert snap.next_seq == done.last_seq + 1


async def test_streaming_job_resumes_without_duplicating_items(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    gate = asyncio.Event()
    plan_calls: list[int] = []

    async def gen(step: stepstone.Step, payload: Any) -> AsyncIterator[int]:
        n = await step.run("plan", lambda: plan_calls.append(1) or 6)
        for i in range(n):
            if i == 3 and payload.get("pause") and not gate.is_set():
                await asyncio.sleep(30)
            yield i

    job = stepstone.define_job("resumable", gen)
    one = stepstone.create_engine(url, polling_interval=0.05, event_linger=0.001)
    one.register(job)
    await one.init()
    run = await one.trigger("resumable", {"pause": True})
    for _ in range(200):
        snap = await one.snapshot(run.id)
        if len(snap.items) == 3:
            break
        await asyncio.sleep(0.01)
    await one.stop()
    gate.set()
    two = stepstone.create_engine(url, polling_interval=0.05)
    two.register(job)
    async with two:
        done = await two.wait(run.id, timeout=5)
        snap = await two.snapshot(run.id)
    assert done.status == "completed"
    assert snap.items == [0, 1, 2, 3, 4, 5]
    assert plan_calls == [1]


async def test_step_name_must_be_a_string(engine: Engine) -> None:
    async def job(step: stepstone.Step, payload: Any) -> None:
        await step.run("", lambda: 1)

    run = await run_job(engine, job)
    assert run.status == "failed" and "non-empty string" in (run.error or "")


def test_job_definition_errors() -> None:
    with pytest.raises(TypeError, match="async function"):
        stepstone.define_job("sync", lambda step, payload: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="non-empty"):
        stepstone.job("")


async def test_resume_does_not_repeat_logs_and_progress(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/replay.db"
    gate = asyncio.Event()

    async def job(step: stepstone.Step, payload: Any) -> str:
        step.log.info("starting")
        for i in range(4):
            if i == 2 and payload.get("pause") and not gate.is_set():
                await asyncio.sleep(30)
            await step.run(f"s{i}", lambda i=i: step.log.info("inside", i=i) or i)
            step.progress(i + 1, 4)
            step.log.info("finished step", i=i)
        return "ok"

    definition = stepstone.define_job("replay", job)
    one = stepstone.create_engine(url, polling_interval=0.05, event_linger=0.001)
    one.register(definition)
    await one.init()
    run = await one.trigger("replay", {"pause": True})
    for _ in range(300):
        if len(await one.get_steps(run.id)) == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await one.stop()
    gate.set()
    two = stepstone.create_engine(url, polling_interval=0.05)
    two.register(definition)
    async with two:
        await two.wait(run.id, timeout=5)
        events = [e async for e in two.subscribe(run.id)]
    logs = [(e.data["message"], (e.data["data"] or {}).get("i")) for e in events if e.type == "log:write"]
    assert logs == [("starting", None)] + [x for i in range(4) for x in (("inside", i), ("finished step", i))]
    assert [e.data["current"] for e in events if e.type == "run:progress"] == [1, 2, 3, 4]
    assert [e.type for e in events].count("run:start") == 2
