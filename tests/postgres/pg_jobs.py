"""Jobs for the multi-server PostgreSQL tests (loaded by ``stepstone serve --jobs pg_jobs``).

Every step body appends ``run step pid`` to the file named by ``$STEPSTONE_TEST_SIDE`` (one
``write`` of one short line with O_APPEND: lines from several processes never interleave), so a
test counts how many times each step body ran, and where.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import stepstone

SIDE = os.environ.get("STEPSTONE_TEST_SIDE", os.devnull)
DELAY = float(os.environ.get("STEPSTONE_TEST_DELAY", "0.01"))


def _record(run_id: str, i: int) -> int:
    fd = os.open(SIDE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{run_id} {i} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return i


@stepstone.job("count")
async def count(step: stepstone.Step, payload: dict[str, Any]) -> dict[str, int]:
    steps = int(payload.get("steps", 3))
    for i in range(steps):

        async def body(i: int = i) -> int:
            await asyncio.sleep(DELAY)
            return _record(step.run_id, i)

        await step.run(f"s{i}", body)
        step.progress(i + 1, steps)
    return {"steps": steps, "pid": os.getpid()}


@stepstone.job("await-go")
async def await_go(step: stepstone.Step, payload: Any) -> dict[str, Any]:
    data = await step.wait_for_event("go")
    await step.run("after", lambda: _record(step.run_id, 0))
    return {"got": data, "pid": os.getpid()}
