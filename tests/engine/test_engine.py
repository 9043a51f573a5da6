"""Engine behaviour through the public API, on every store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import stepstone
from stepstone import Engine


def counting_job(name: str, calls: list[str], steps: int = 3, fail_at: int | None = None) -> stepstone.Job:
    async def run(step: stepstone.Step, payload: Any) -> Any:
        total = 0
        for i in range(steps):

            def body(i: int = i) -> int:
                calls.append(f"s{i}")
                if fail_at == i and payload.get("fail", True):
                    raise RuntimeError(f"boom at {i}")
                return i

            total += await step.run(f"s{i}", body)
            step.progress(i + 1, steps)
        return {"total": total}

    return stepstone.define_job(name, run)


async def test_runs_steps_and_completes(engine: Engine) -> None:
    calls: list[str] = []
    engine.register(counting_job("count", calls))
    await engine.init()
    run = await engine.trigger("count", {})
    assert run.status == "pending" and run.created
    done = await engine.wait(run.id, timeout=5)
    assert done.status == "completed" and done.output == {"total": 3}
    assert done.progress == stepstone.Progress(3, 3)
    assert calls == ["s0", "s1", "s2"]
    steps = await engine.get_steps(run.id)
    assert [(s.name, s.status, s.output) for s in steps] == [
        ("s0", "completed", 0),
        ("s1", "completed", 1),
        ("s2", "completed", 2),
    ]


async def test_trigger_starts_at_once_not_at_the_poll(store_url: str) -> None:
    started = asyncio.Event()

    @stepstone.job("quick")
    async def quick(step: stepstone.Step, payload: Any) -> None:
        started.set()

    engine = stepstone.create_engine(store_url, polling_interval=30.0)
    engine.register(quick)
    async with engine:
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await engine.trigger("quick")
        await asyncio.wait_for(started.wait(), 5)
        assert loop.time() - t0 < 1.0, "in-process trigger must not wait for the 30 s poll"


async def test_failed_run_retries_from_first_unfinished_step(engine: Engine) -> None:
    calls: list[str] = []
    engine.register(counting_job("flaky", calls, steps=4, fail_at=2))
    await engine.init()
    run = await engine.trigger("flaky", {"fail": True})
    failed = await engine.wait(run.id, timeout=5)
    assert failed.status == "failed" and failed.error == "RuntimeError: boom at 2"
    steps = await engine.get_steps(run.id)
    assert [(s.name, s.status) for s in steps] == [("s0", "completed"), ("s1", "completed"), ("s2", "failed")]
    calls.clear()
    retried = await engine.retry(run.id)
    assert retried.status == "pending" and retried.attempt == 2
    # the retried execution reads the same input, so make the step pass this time
    done = await engine.wait(run.id, timeout=5)
    assert done.status == "failed"
    assert calls == ["s2"], "finished steps are not run again"


async def test_retry_succeeds_when_the_cause_is_gone(engine: Engine) -> None:
    state = {"broken": True}
    calls: list[str] = []

    @stepstone.job("heal")
    async def heal(step: stepstone.Step, payload: Any) -> str:
        await step.run("one", lambda: calls.append("one"))

        def two() -> str:
            calls.append("two")
            if state["broken"]:
                raise ConnectionError("down")
            return "ok"

        return str(await step.run("two", two))

    engine.register(heal)
    await engine.init()
    run = await engine.trigger("heal")
    assert (await engine.wait(run.id, timeout=5)).status == "failed"
    state["broken"] = False
    await engine.retry(run.id)
    done = await engine.wait(run.id, timeout=5)
    assert done.status == "completed" and done.output == "ok" and done.attempt == 2
    assert calls == ["one", "two", "two"]


async def test_cancel_stops_a_running_run_and_runs_finally(engine: Engine) -> None:
    entered = asyncio.Event()
    cleaned: list[str] = []

    @stepstone.job("long")
    async def long(step: stepstone.Step, payload: Any) -> None:
        try:
            await step.run("wait", lambda: entered.set())
            await step.run("sleep", lambda: asyncio.sleep(30))
        finally:
            cleaned.append("finally")

    engine.register(long)
    await engine.init()
    run = await engine.trigger("long")
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.sleep(0.05)
    cancelled = await engine.cancel(run.id)
    assert cancelled.status == "cancelled"
    for _ in range(100):
        if cleaned:
            break
        await asyncio.sleep(0.01)
    assert cleaned == ["finally"]
    final = await engine.wait(run.id, timeout=1)
    assert final.status == "cancelled"
    events = [e async for e in engine.subscribe(run.id)]
    assert events[-1].type == "run:cancel"
    assert [e.seq for e in events] == list(range(len(events)))


async def test_cancelled_pending_run_never_starts(store_url: str) -> None:
    ran: list[str] = []

    @stepstone.job("never")
    async def never(step: stepstone.Step, payload: Any) -> None:
        ran.append("ran")

    engine = stepstone.create_engine(store_url, worker=False)
    engine.register(never)
    async with engine:
        run = await engine.trigger("never")
        await engine.cancel(run.id)
    worker = stepstone.create_engine(store_url.replace("memory:", "memory:"), polling_interval=0.05)
    if store_url == "memory:":
        return  # a new memory store is empty; the sqlite case below proves it
    worker.register(never)
    async with worker:
        await asyncio.sleep(0.3)
        assert (await worker.get_run(run.id)).status == "cancelled"
    assert ran == []


async def test_idempotency_key_returns_the_existing_run(engine: Engine) -> None:
    engine.register(counting_job("idem", []))
    await engine.init()
    first = await engine.trigger("idem", {}, idempotency_key="evt-1")
    second = await engine.trigger("idem", {"other": 1}, idempotency_key="evt-1")
    assert first.created and not second.created and second.id == first.id
    assert (await engine.get_runs(job_name="idem")).total == 1


async def test_concurrency_key_serialises_runs_in_order(store_url: str) -> None:
    order: list[str] = []

    @stepstone.job("serial")
    async def serial(step: stepstone.Step, payload: Any) -> None:
        order.append(f"start-{payload['i']}")
        await step.run("work", lambda: asyncio.sleep(0.02))
        order.append(f"end-{payload['i']}")

    engine = stepstone.create_engine(store_url, concurrency=4, polling_interval=0.05)
    engine.register(serial)
    async with engine:
        runs = [await engine.trigger("serial", {"i": i}, concurrency_key="acct") for i in range(4)]
        for run in runs:
            await engine.wait(run.id, timeout=5)
    assert order == [x for i in range(4) for x in (f"start-{i}", f"end-{i}")]


async def test_runs_execute_concurrently_up_to_the_limit(store_url: str) -> None:
    active = 0
    peak = 0

    @stepstone.job("par")
    async def par(step: stepstone.Step, payload: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.1)
        active -= 1

    engine = stepstone.create_engine(store_url, concurrency=3, polling_interval=0.05)
    engine.register(par)
    async with engine:
        runs = await engine.get_job("par").batch_trigger([{}, {}, {}, {}, {}, {}])  # type: ignore[union-attr]
        for run in runs:
            await engine.wait(run.id, timeout=5)
    assert peak == 3


async def test_labels_are_filterable(engine: Engine) -> None:
    engine.register(counting_job("lab", [], steps=1))
    await engine.init()
    a = await engine.trigger("lab", {}, labels={"org": "a", "env": "prod"})
    await engine.trigger("lab", {}, labels={"org": "b", "env": "prod"})
    page = await engine.get_runs(labels={"org": "a"})
    assert [r.id for r in page] == [a.id] and page.total == 1
    assert (await engine.get_runs(labels={"env": "prod"})).total == 2
    assert dict((await engine.get_run(a.id)).labels) == {"org": "a", "env": "prod"}  # type: ignore[union-attr]


async def test_get_runs_pages_and_filters_by_status(engine: Engine) -> None:
    engine.register(counting_job("page", [], steps=1))
    await engine.init()
    ids = [(await engine.trigger("page", {})).id for _ in range(5)]
    for run_id in ids:
        await engine.wait(run_id, timeout=5)
    page = await engine.get_runs(job_name="page", status="completed", limit=2, offset=1)
    assert page.total == 5 and [r.id for r in page] == ids[::-1][1:3]
    assert (await engine.get_runs(status=["failed", "cancelled"])).total == 0
    with pytest.raises(ValueError, match="unknown status"):
        await engine.get_runs(status="done")  # type: ignore[arg-type]


async def test_on_callbacks_see_lifecycle_events(engine: Engine) -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def on_complete(event: stepstone.Event) -> None:
        seen.append(f"async:{event.type}")
        done.set()

    engine.on("*", lambda e: seen.append(e.type))
    off = engine.on("run:complete", on_complete)
    engine.register(counting_job("cb", [], steps=2))
    await engine.init()
    run = await engine.trigger("cb", {})
    await engine.wait(run.id, timeout=5)
    await asyncio.wait_for(done.wait(), 5)
    off()
    assert seen[0] == "run:trigger" and "run:start" in seen and "step:complete" in seen
    assert seen.count("run:complete") == 1 and "async:run:complete" in seen


async def test_subscriber_joining_mid_run_gets_no_gap_or_duplicate(engine: Engine) -> None:
    gate = asyncio.Event()

    @stepstone.job("mid")
    async def mid(step: stepstone.Step, payload: Any) -> None:
        for i in range(6):
            if i == 3:
                await gate.wait()
            await step.run(f"s{i}", lambda i=i: i)
            step.log.info("tick", i=i)

    engine.register(mid)
    await engine.init()
    run = await engine.trigger("mid")
    await asyncio.sleep(0.2)
    seen: list[int] = []

    async def follow(from_seq: int) -> list[int]:
        return [e.seq async for e in engine.subscribe(run.id, from_seq=from_seq)]

    early = asyncio.ensure_future(follow(0))
    late = asyncio.ensure_future(follow(4))
    await asyncio.sleep(0.1)
    gate.set()
    seen = await asyncio.wait_for(early, 5)
    assert seen == list(range(len(seen)))
    assert await asyncio.wait_for(late, 5) == list(range(4, len(seen)))
    final = await engine.get_run(run.id)
    assert final is not None and seen[-1] == final.last_seq


async def test_delete_run_removes_it(engine: Engine) -> None:
    engine.register(counting_job("del", [], steps=1))
    await engine.init()
    run = await engine.trigger("del", {})
    await engine.wait(run.id, timeout=5)
    await engine.delete_run(run.id)
    assert await engine.get_run(run.id) is None
    with pytest.raises(stepstone.RunNotFound):
        await engine.delete_run(run.id)


async def test_retention_sets_expiry_and_sweep_deletes(store_url: str) -> None:
    job = counting_job("ttl", [], steps=1)
    keep = stepstone.define_job("keep", job.run, retention=3600)
    engine = stepstone.create_engine(store_url, retention=0.01, polling_interval=0.05)
    engine.register(job)
    engine.register(keep)
    async with engine:
        a = await engine.trigger("ttl", {})
        b = await engine.trigger("keep", {})
        done_a = await engine.wait(a.id, timeout=5)
        done_b = await engine.wait(b.id, timeout=5)
        assert done_a.expires_at is not None and done_b.expires_at is not None
        assert done_b.expires_at - done_b.finished_at == pytest.approx(3600)  # type: ignore[operator]
        await asyncio.sleep(0.05)
        assert await engine.sweep() == 1
        assert await engine.get_run(a.id) is None and await engine.get_run(b.id) is not None


async def test_periodic_sweep(store_url: str) -> None:
    engine = stepstone.create_engine(store_url, retention=0.01, sweep_interval=0.05, polling_interval=0.05)
    engine.register(counting_job("sweepme", [], steps=1))
    async with engine:
        run = await engine.trigger("sweepme", {})
        await engine.wait(run.id, timeout=5)
        for _ in range(100):
            if await engine.get_run(run.id) is None:
                break
            await asyncio.sleep(0.02)
        assert await engine.get_run(run.id) is None


async def test_wait_times_out_with_a_named_error(engine: Engine) -> None:
    @stepstone.job("slow")
    async def slow(step: stepstone.Step, payload: Any) -> None:
        await asyncio.sleep(5)

    engine.register(slow)
    await engine.init()
    run = await engine.trigger("slow")
    with pytest.raises(stepstone.WaitTimeout, match="still"):
        await engine.wait(run.id, timeout=0.1)
    with pytest.raises(TimeoutError):
        await engine.wait(run.id, timeout=0.05)


async def test_trigger_and_wait_on_a_handle(engine: Engine) -> None:
    handle = engine.register(counting_job("h", [], steps=2))
    await engine.init()
    run = await handle.trigger_and_wait({}, timeout=5)
    assert run.status == "completed" and run.output == {"total": 1}
    assert (await handle.get_run(run.id)) is not None
    assert (await handle.get_runs()).total == 1


async def test_stop_hands_running_runs_back(store_url: str) -> None:
    if store_url == "memory:":
        pytest.skip("needs a store shared by two engines")
    started = asyncio.Event()
    calls: list[str] = []

    @stepstone.job("handover")
    async def handover(step: stepstone.Step, payload: Any) -> str:
        await step.run("first", lambda: calls.append("first"))
        started.set()
        await step.run("second", lambda: asyncio.sleep(0.3 if payload.get("slow") else 0))
        return "done"

    one = stepstone.create_engine(store_url, polling_interval=0.05)
    one.register(handover)
    await one.init()
    run = await one.trigger("handover", {"slow": True})
    await asyncio.wait_for(started.wait(), 5)
    await one.stop()
    two = stepstone.create_engine(store_url, polling_interval=0.05, stale_threshold=60, heartbeat_interval=10)
    two.register(handover)
    async with two:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        done = await two.wait(run.id, timeout=5)
        assert done.status == "completed"
        assert loop.time() - t0 < 2.0, "released at stop: no need to wait out the 60 s lease"
    assert calls == ["first"]


async def test_engine_must_be_started(store_url: str) -> None:
    engine = stepstone.create_engine(store_url)
    engine.register(counting_job("x", []))
    with pytest.raises(stepstone.EngineNotStarted):
        await engine.trigger("x", {})


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="stale_threshold"):
        stepstone.create_engine("memory:", heartbeat_interval=5, stale_threshold=1)
    with pytest.raises(ValueError, match="concurrency"):
        stepstone.create_engine("memory:", concurrency=0)
    with pytest.raises(stepstone.UnsupportedStoreURL):
        stepstone.create_engine("mysql://x")
    with pytest.raises(stepstone.UnsupportedStoreURL):
        stepstone.create_engine("sqlite://relative.db")


async def test_heartbeats_keep_a_long_step_owned(tmp_path: Any) -> None:
    """A step longer than the lease is not stolen while its worker heartbeats."""
    url = f"sqlite:///{tmp_path}/hb.db"
    calls: list[str] = []

    @stepstone.job("long-step")
    async def long_step(step: stepstone.Step, payload: Any) -> None:
        async def body() -> None:
            calls.append("body")
            await asyncio.sleep(1.0)

        await step.run("long", body)

    fast = {"polling_interval": 0.05, "heartbeat_interval": 0.05, "stale_threshold": 0.3}
    one = stepstone.create_engine(url, **fast)
    two = stepstone.create_engine(url, **fast)
    one.register(long_step)
    two.register(long_step)
    async with one, two:
        run = await one.trigger("long-step")
        done = await one.wait(run.id, timeout=5)
    assert done.status == "completed" and calls == ["body"]


async def test_a_worker_never_starts_a_second_execution_of_its_own_run(store_url: str) -> None:
    """Its own lease lapsed (a late heartbeat, a throttled tab): the worker must not claim the run
    again beside the execution it still has."""
    gate = asyncio.Event()
    entered: list[str] = []

    @stepstone.job("lapsed")
    async def lapsed(step: stepstone.Step, payload: Any) -> str:
        entered.append("body")
        await gate.wait()
        return "ok"

    engine = stepstone.create_engine(store_url, polling_interval=0.02, heartbeat_interval=10, stale_threshold=30)
    engine.register(lapsed)
    async with engine:
        run = await engine.trigger("lapsed")
        for _ in range(100):
            if entered:
                break
            await asyncio.sleep(0.01)
        await engine.store.expire_leases(engine.owner, time.time())
        await asyncio.sleep(0.2)
        assert entered == ["body"]
        gate.set()
        done = await engine.wait(run.id, timeout=5)
    assert done.status == "completed" and entered == ["body"]
