"""A small project's tests using stepstone's pytest plugin (the ``stepstone_*`` fixtures come from
the ``pytest11`` entry point; this file imports only the public API). Paste and adapt."""

from __future__ import annotations

import asyncio

import pytest

import stepstone
from stepstone.pytest_plugin import StepstoneServer
from stepstone.testing import TestClock

from .jobs import greet, trial


async def test_a_job_completes(stepstone_engine: stepstone.Engine) -> None:
    stepstone_engine.register(greet)
    run = await stepstone_engine.trigger("greet", {"name": "ann"})
    assert (await stepstone_engine.wait(run.id, timeout=5)).output == "hello ann"


async def test_a_week_long_sleep_passes_in_an_instant(
    stepstone_engine: stepstone.Engine, stepstone_clock: TestClock
) -> None:
    stepstone_engine.register(trial)
    run = await stepstone_engine.trigger("trial", {"email": "ann@example.com"})
    async with asyncio.timeout(5):
        while (await stepstone_engine.get_run(run.id)).status != "suspended":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    stepstone_clock.advance(7 * 86400)
    done = await stepstone_engine.wait(run.id, timeout=5)
    assert done.output == {"sent": "nudge mail to ann@example.com"}


@pytest.mark.stepstone(jobs="tests.plugin_example.jobs")
async def test_the_jobs_run_behind_a_real_server(stepstone_server: StepstoneServer) -> None:
    async with stepstone_server.client() as client:
        run = await client.trigger("greet", {"name": "bob"})
        assert (await client.wait(run.id, timeout=10)).output == "hello bob"
