"""Cancellation raised inside the job: ``RunCancelled`` at the step it awaits (running or suspended,
this engine or another one), cleanup steps recorded, the run ends ``cancelled`` whatever the job
does, and a cancelled parent takes its unfinished children with it."""

from __future__ import annotations

import asyncio
from typing import Any

import stepstone
from stepstone import Engine

from .test_suspension import BOUND, _engine, until_status


def _jobs(engine: Engine, cleaned: list[str], entered: asyncio.Event) -> None:
    async def careful(step: stepstone.Step, payload: Any) -> Any:
        try:
            await step.run("enter", entered.set)
            if payload.get("sleep"):
                await step.sleep("nap", 3600)
            else:
                await step.run("work", lambda: asyncio.sleep(3600))
        except stepstone.RunCancelled:
            await step.run("cleanup", lambda: cleaned.append("cleanup") or "cleaned")
            raise
        return "finished"

    async def stubborn(step: stepstone.Step, payload: Any) -> Any:
        try:
            await step.run("work", lambda: (entered.set(), asyncio.sleep(3600))[1])
        except stepstone.RunCancelled:
            return "swallowed"  # still ends cancelled
        return "finished"

    engine.register(stepstone.define_job("careful", careful))
    engine.register(stepstone.define_job("stubborn", stubborn))


async def test_a_running_run_gets_run_cancelled_and_its_cleanup_step_is_recorded(store_url: str) -> None:
    engine, cleaned, entered = _engine(store_url), [], asyncio.Event()
    _jobs(engine, cleaned, entered)
    async with engine:
        run = await engine.trigger("careful", {})
        await asyncio.wait_for(entered.wait(), BOUND)
        await asyncio.sleep(0.05)
        cancelled = await engine.cancel(run.id)
        steps = {s.name: s for s in await engine.get_steps(run.id)}
        types = [e.type async for e in engine.subscribe(run.id)]
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    assert cleaned == ["cleanup"] and steps["cleanup"].output == "cleaned"
    assert steps["work"].status == "failed" and "RunCancelled" in (steps["work"].error or ""), "the step it was in ends"
    assert types[-1] == "run:cancel" and "step:cancel" in types


async def test_a_suspended_run_is_woken_to_run_its_cleanup(store_url: str) -> None:
    engine, cleaned, entered = _engine(store_url), [], asyncio.Event()
    _jobs(engine, cleaned, entered)
    async with engine:
        run = await engine.trigger("careful", {"sleep": True})
        await until_status(engine, run.id, "suspended")
        requested = await engine.cancel(run.id)
        assert requested.cancel_requested
        done = await engine.wait(run.id, timeout=BOUND)
    assert done.status == "cancelled" and cleaned == ["cleanup"]


async def test_a_woken_run_cleans_up_however_long_its_store_takes_to_read_its_steps() -> None:
    """The cancel reaches the job at its first step (seen on IndexedDB, whose reads take a while:
    the job was cancelled outright, before its code ran, and the cleanup never ran)."""
    from stepstone.stores.memory import MemoryStore

    class SlowReads(MemoryStore):
        async def get_steps(self, run_id: str) -> list[stepstone.StepRecord]:
            await asyncio.sleep(0.05)
            return await super().get_steps(run_id)

    engine, cleaned, entered = _engine(SlowReads()), [], asyncio.Event()
    _jobs(engine, cleaned, entered)
    async with engine:
        run = await engine.trigger("careful", {"sleep": True})
        await until_status(engine, run.id, "suspended")
        await engine.cancel(run.id)
        done = await engine.wait(run.id, timeout=BOUND)
        steps = [s.name for s in await engine.get_steps(run.id)]
    assert done.status == "cancelled" and cleaned == ["cleanup"] and steps == ["enter", "nap", "cleanup"]


async def test_a_job_that_swallows_run_cancelled_still_ends_cancelled(store_url: str) -> None:
    engine, cleaned, entered = _engine(store_url), [], asyncio.Event()
    _jobs(engine, cleaned, entered)
    async with engine:
        run = await engine.trigger("stubborn")
        await asyncio.wait_for(entered.wait(), BOUND)
        await engine.cancel(run.id)
        done = await engine.wait(run.id, timeout=BOUND)
    assert done.status == "cancelled" and done.output is None


async def test_a_run_executing_in_another_engine_learns_of_its_cancel_at_the_heartbeat(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    worker, cleaned, entered = _engine(url), [], asyncio.Event()
    _jobs(worker, cleaned, entered)
    web = _engine(url, worker=False)
    _jobs(web, [], asyncio.Event())
    async with worker, web:
        run = await web.trigger("careful", {})
        await asyncio.wait_for(entered.wait(), BOUND)
        requested = await web.cancel(run.id)
        assert requested.status == "running" and requested.cancel_requested
        done = await web.wait(run.id, timeout=BOUND)
    assert done.status == "cancelled" and cleaned == ["cleanup"]


async def test_cancelling_a_parent_cancels_its_unfinished_children(store_url: str) -> None:
    engine = _engine(store_url)
    started = asyncio.Event()

    async def child(step: stepstone.Step, payload: Any) -> Any:
        await step.run("go", started.set)
        await step.sleep("forever", 86400)

    async def parent(step: stepstone.Step, payload: Any) -> Any:
        return await asyncio.gather(*(step.invoke(f"c{i}", "child", i) for i in range(3)))

    engine.register(stepstone.define_job("child", child))
    engine.register(stepstone.define_job("parent", parent))
    async with engine:
        run = await engine.trigger("parent")
        await until_status(engine, run.id, "suspended")
        await asyncio.wait_for(started.wait(), BOUND)
        await engine.cancel(run.id)
        done = await engine.wait(run.id, timeout=BOUND)
        children = await engine.get_runs(parent_id=run.id)
        finals = [await engine.wait(c.id, timeout=BOUND) for c in children]
    assert done.status == "cancelled"
    assert len(finals) == 3 and {c.status for c in finals} == {"cancelled"}
