"""The workflow primitives through a real server and the Client: events (``send_event``), child runs
(``get_runs(parent_id=)``), suspended runs on the wire, cancelling a sleeping run, versions and the
``/schedules`` API."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import stepstone
from stepstone.client import Client

BOUND = 20.0


async def until(client: Client, run_id: str, status: str) -> stepstone.Run:
    deadline = time.monotonic() + BOUND
    while True:
        run = await client.get_run(run_id)
        assert run is not None
        if run.status == status:
            return run
        assert time.monotonic() < deadline, f"{run_id} is {run.status}, never {status}"
        await asyncio.sleep(0.02)


async def test_an_event_sent_through_the_client_wakes_a_suspended_run(client: Client) -> None:
    run = await client.trigger("approval", {})
    parked = await until(client, run.id, "suspended")
    assert parked.wait is not None and parked.wait.reason == "event" and parked.wait.events == ("approval",)
    await client.send_event(run.id, "approval", {"by": "ann"})
    done = await client.wait(run.id, timeout=BOUND)
    assert done.output == {"approved": True, "data": {"by": "ann"}}
    steps = {s.name: s for s in await client.get_steps(run.id)}
    assert steps["event:approval"].status == "completed"
    with pytest.raises(stepstone.InvalidRunState):
        await client.send_event(run.id, "approval", {})
    with pytest.raises(stepstone.RunNotFound):
        await client.send_event("no-such-run", "approval", {})


async def test_child_runs_are_listed_by_parent(client: Client) -> None:
    run = await client.trigger("fan-out", 5)
    done = await client.wait(run.id, timeout=BOUND)
    assert done.output == [0, 2, 4, 6, 8]
    children = await client.get_runs(parent_id=run.id)
    assert children.total == 5 and {c.parent_id for c in children} == {run.id}


async def test_cancelling_a_sleeping_run_runs_its_cleanup(client: Client) -> None:
    run = await client.trigger("napper", {"seconds": 3600})
    await until(client, run.id, "suspended")
    requested = await client.cancel(run.id)
    assert requested.cancel_requested
    done = await client.wait(run.id, timeout=BOUND)
    assert done.status == "cancelled"
    assert [s.name for s in await client.get_steps(run.id)] == ["nap", "cleanup"]


async def test_a_version_that_is_not_registered_is_refused(client: Client) -> None:
    with pytest.raises(stepstone.JobNotFound, match="no version '2'"):
        await client.trigger("double", 1, version="2")
    run = await client.trigger("double", 21, version="1")
    assert (await client.wait(run.id, timeout=BOUND)).output == 42


async def test_schedules_over_http(client: Client) -> None:
    with pytest.raises(stepstone.InvalidInput, match="the second field: 61 is out of range"):
        await client.schedules.create("bad", "tick", "61 * * * * *")
    created = await client.schedules.create("every-second", "tick", "* * * * * *")
    assert created.name == "every-second" and created.cron == "* * * * * *"
    deadline = time.monotonic() + BOUND
    while (await client.get_runs(job_name="tick", status="completed")).total < 2:
        assert time.monotonic() < deadline, "a one-second schedule fired fewer than twice"
        await asyncio.sleep(0.1)
    [listed] = [s for s in await client.schedules.list() if s.name == "every-second"]
    assert listed.job == "tick"
    paused = await client.schedules.pause("every-second")
    assert paused.paused
    await client.schedules.resume("every-second")
    await client.schedules.delete("every-second")
    assert await client.schedules.get("every-second") is None
    with pytest.raises(stepstone.RunNotFound):
        await client.schedules.delete("every-second")
    fired = (await client.get_runs(job_name="tick")).total
    await asyncio.sleep(1.5)
    assert (await client.get_runs(job_name="tick")).total == fired, "a deleted schedule fires no more"


async def test_fired_ticks_are_each_once(client: Client) -> None:
    await client.schedules.create("twice", "tick", "* * * * * *", input={"n": 1})
    await asyncio.sleep(2.5)
    await client.schedules.delete("twice")
    keys: list[Any] = [r.idempotency_key for r in await client.get_runs(job_name="tick", limit=500)]
    ours = [k for k in keys if k and k.startswith("schedule:twice:")]
    assert ours and len(ours) == len(set(ours))
