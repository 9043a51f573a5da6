"""Jobs for the Durable Streams tests (``stepstone serve --jobs stream_jobs``): a run whose event
log a stream client tails."""

from __future__ import annotations

import asyncio
from typing import Any

import stepstone


@stepstone.job("ticker")
async def ticker(step: stepstone.Step, payload: Any) -> dict[str, int]:
    """``{"count": n, "delay": s, "gate": path}``: n steps, each logging once; waits for the file
    ``gate`` to exist before the first step when given (so a test can attach a reader first)."""
    count = int(payload.get("count", 3))
    delay = float(payload.get("delay", 0.0))
    gate = payload.get("gate")
    if gate:
        import os

        while not os.path.exists(gate):
            await asyncio.sleep(0.02)
    for i in range(count):
        await step.run(f"tick-{i}", lambda i=i: i)
        step.log.info("tick", i=i)
        await asyncio.sleep(delay)
    return {"ticks": count}
