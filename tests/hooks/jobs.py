"""Jobs for the client and hook tests, loadable in-process and by ``stepstone serve --jobs tests.hooks.jobs``.

Gates are files, so a test controls a run inside a server process: the run waits before step
``gate_at`` until the file ``gate`` exists; step ``fail_at`` raises unless the file ``heal`` exists.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import stepstone
from stepstone.demo import demo_approval  # noqa: F401 - served too: the page's demo workflow


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


@stepstone.job("approval")
async def approval(step: stepstone.Step, payload: Any) -> dict[str, Any]:
    """Waits for the event ``approval`` (``payload["timeout"]`` seconds, or for ever)."""
    await step.run("ask", lambda: "asked")
    try:
        got = await step.wait_for_event("approval", timeout=(payload or {}).get("timeout"))
    except stepstone.WaitTimeout:
        return {"approved": False}
    return {"approved": True, "data": got}


@stepstone.job("napper")
async def napper(step: stepstone.Step, payload: Any) -> dict[str, Any]:
    try:
        await step.sleep("nap", float((payload or {}).get("seconds", 1.0)))
    except stepstone.RunCancelled:
        await step.run("cleanup", lambda: "cleaned")
        raise
    return {"slept": True}


@stepstone.job("double")
async def double(step: stepstone.Step, payload: Any) -> int:
    return int(payload) * 2


@stepstone.job("fan-out")
async def fan_out(step: stepstone.Step, payload: Any) -> list[int]:
    return list(await asyncio.gather(*(step.invoke(f"d{i}", "double", i) for i in range(int(payload)))))


@stepstone.job("tick")
async def tick(step: stepstone.Step, payload: Any) -> None:
    return None


@stepstone.job("await-approval")
async def await_approval(step: stepstone.Step, payload: Any) -> Any:
    """Invokes ``approval`` as a child run and returns its output: a parent waiting for a child."""
    return await step.invoke("child", "approval", payload)


_ATTEMPTS: dict[str, int] = {}


@stepstone.job("flaky-step")
async def flaky_step(step: stepstone.Step, payload: Any) -> int:
    """Step ``call`` fails its first ``fails`` attempts (2), retried ``fails`` times ``backoff`` s apart."""
    payload = payload or {}
    fails = int(payload.get("fails", 2))

    def call() -> int:
        _ATTEMPTS[step.run_id] = attempt = _ATTEMPTS.get(step.run_id, 0) + 1
        if attempt <= fails:
            raise RuntimeError(f"attempt {attempt} failed")
        return attempt

    result: int = await step.run("call", call, retries=fails, backoff=float(payload.get("backoff", 0.01)))
    return result


@stepstone.job("flaky-run", retries=1, backoff=0.01)
async def flaky_run(step: stepstone.Step, payload: Any) -> dict[str, int]:
    """Fails on its first attempt (after the file ``gate`` exists, if given); the job retries it."""
    if (payload or {}).get("gate"):
        await _wait_for_file(payload["gate"])
    await step.run("first", lambda: "ok")
    if step.attempt == 1:
        raise RuntimeError("attempt 1 fails")
    return {"attempt": step.attempt}
