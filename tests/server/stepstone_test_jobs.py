"""Jobs the server tests run inside a real ``stepstone serve`` process (``--jobs stepstone_test_jobs``).

Side effects go to files named in the input, so a test in another process can see exactly which
step bodies ran, and how often.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import stepstone


def _record(path: str | None, line: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


@stepstone.job("echo")
async def echo(step: stepstone.Step, payload: Any) -> Any:
    first = await step.run("first", lambda: {"got": payload})
    await step.run("second", lambda: 2)
    return first


@dataclass
class StepsInput:
    steps: int = 5
    delay: float = 0.05
    sideFile: str | None = None  # camelCase: the wire name


@stepstone.job("steps", input=StepsInput)
async def steps(step: stepstone.Step, payload: StepsInput) -> dict[str, int]:
    for i in range(1, payload.steps + 1):

        async def body(i: int = i) -> int:
            await asyncio.sleep(payload.delay)
            _record(payload.sideFile, f"{step.run_id} {i} {os.getpid()}")
            return i

        await step.run(f"step-{i}", body)
        step.progress(i, payload.steps, f"step {i}")
        step.log.info(f"done {i}", i=i)
    return {"steps": payload.steps}


@stepstone.job("gate")
async def gate(step: stepstone.Step, payload: dict[str, Any]) -> str:
    """Runs until the file ``payload["until"]`` exists (bounded by ``payload["limit"]`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(payload.get("limit", 30))
    step.log.info("waiting")
    while not os.path.exists(payload["until"]):
        if loop.time() > deadline:
            raise TimeoutError("gate never opened")
        await asyncio.sleep(0.02)
    return "opened"


@stepstone.job("flaky")
async def flaky(step: stepstone.Step, payload: Any) -> int:
    await step.run("before", lambda: 1)
    if step.attempt == 1:
        raise RuntimeError("flaky fails on its first attempt")
    return step.attempt


@stepstone.job("chatty")
async def chatty(step: stepstone.Step, payload: dict[str, Any]) -> int:
    """Writes ``count`` log events, ``delay`` seconds apart: a long stream of small events."""
    count, delay = int(payload.get("count", 100)), float(payload.get("delay", 0.005))
    for i in range(count):
        step.log.info(f"line {i}", i=i)
        await asyncio.sleep(delay)
    return count


@stepstone.job("tokens")
async def tokens(step: stepstone.Step, payload: Any) -> Any:
    for word in ["alpha", "beta", "gamma"]:
        await asyncio.sleep(0.01)
        yield word
