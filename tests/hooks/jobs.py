"""Jobs for the client and hook tests, loadable in-process and by ``stepstone serve --jobs tests.hooks.jobs``.

Gates are files, so a test controls a run inside a server process: the run waits before step
``gate_at`` until the file ``gate`` exists; step ``fail_at`` raises unless the file ``heal`` exists.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import stepstone


async def _wait_for_file(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.01)


@stepstone.job("steps")
async def steps_job(step: stepstone.Step, payload: Any) -> dict[str, Any]:
    """``payload``: ``steps`` (3), ``delay`` (s per step), ``gate`` + ``gate_at``, ``fail_at`` + ``heal``."""
    payload = payload or {}
    n = int(payload.get("steps", 3))
    delay = float(payload.get("delay", 0))
    for i in range(n):
        if payload.get("gate") and i == int(payload.get("gate_at", 1)):
            await _wait_for_file(payload["gate"])

        async def body(i: int = i) -> int:
            if delay:
                await asyncio.sleep(delay)
            if payload.get("fail_at") == i and not os.path.exists(payload.get("heal") or "/nonexistent"):
                raise RuntimeError(f"boom at step {i}")
            # logged inside the step: a resumed run (after a crash) does not log it again
            step.log.info(f"step {i} done", index=i)
            return i

        await step.run(f"s{i}", body)
        step.progress(i + 1, n, f"step {i + 1} of {n}")
    return {"steps": n}


@stepstone.job("needs-name", input=lambda value: None if isinstance(value, dict) and "name" in value else _reject())
async def needs_name(step: stepstone.Step, payload: Any) -> dict[str, Any]:
    return {"hello": payload["name"]}


def _reject() -> None:
    raise ValueError("input must be an object with a 'name'")
