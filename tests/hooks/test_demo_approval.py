"""``demo-approval`` of stepstone.demo (what the dashboard and server.html show waiting) through
``use_job``, on both sources: it sleeps, waits for the event ``approval``, and finishes when it
arrives, or gives up after its timeout."""

from __future__ import annotations

from typing import Any

import pytest

import stepstone
from stepstone.hooks import MemoryStorage, use_job, use_run_actions


async def test_demo_approval_sleeps_waits_and_takes_the_event(source: Any) -> None:
    async with use_job(source, "demo-approval", storage=MemoryStorage(), follow_latest=False) as job:
        await job.ready(timeout=10)
        run = await job.trigger({"delay": 0, "sleep": 0.2, "timeout": 3600})
        await job.wait_for(lambda s: s.wait is not None and s.wait.reason == "event", timeout=15)
        assert job.is_suspended and job.wait is not None and job.wait.events == ("approval",)
        assert [(v.name, v.status, v.kind) for v in job.steps] == [
            ("prepare", "completed", None), ("cool-down", "completed", "sleep"),
            ("event:approval", "waiting", "event")]
        assert any(f"stepstone send-event {run.id} approval" in e.message for e in job.logs)
        async with use_run_actions(source) as actions:
            await actions.send_event(run.id, "approval", {"ok": True, "by": "ann"})
        await job.wait_for(lambda s: s.is_completed, timeout=15)
        assert job.output == {"approved": True, "by": "ann"} and job.logs[-1].message == "approved by ann"
        assert [v.status for v in job.steps] == ["completed"] * 4


async def test_demo_approval_gives_up_after_its_timeout(source: Any) -> None:
    run = await source.trigger("demo-approval", {"delay": 0, "sleep": 0, "timeout": 0.2})
    done = await source.wait(run.id, timeout=15)
    assert done.status == "completed" and done.output == {"approved": False, "reason": "no answer within 0.2 s"}


async def test_demo_approval_input_is_checked_in_plain_words(source: Any) -> None:
    with pytest.raises(stepstone.InvalidInput, match="sleep must be a number of seconds from 0 to 86400, not -1"):
        await source.trigger("demo-approval", {"sleep": -1})
