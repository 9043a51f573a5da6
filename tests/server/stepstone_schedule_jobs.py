"""A job with a one-second schedule, for the server tests that run it in several real
``stepstone serve`` processes on one store (``--jobs stepstone_schedule_jobs``)."""

from __future__ import annotations

from typing import Any

import stepstone


@stepstone.job("every-second", schedule="* * * * * *")
async def every_second(step: stepstone.Step, payload: Any) -> str:
    return await step.run("pid", lambda: str(__import__("os").getpid()))
