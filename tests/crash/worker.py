"""A real worker process for the crash and fencing tests.

    python worker.py DB SIDEFILE [--trigger N] [--steps 10] [--delay S] [--stale S] [--heartbeat S]

Runs a job of N steps; each step sleeps ``delay`` (so a kill lands mid-step), then appends
``run step pid`` to SIDEFILE (fsynced) and returns ``{"i", "pid"}``. Exits 0 once no run is active.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import stepstone


def make_job(side: str, steps: int, delay: float, blocking: bool) -> stepstone.Job:
    async def ten(step: stepstone.Step, payload: Any) -> dict[str, Any]:
        for i in range(steps):

            def record(i: int) -> dict[str, int]:
                with open(side, "a") as fh:
                    fh.write(f"{step.run_id} {i} {os.getpid()}\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                return {"i": i, "pid": os.getpid()}

            async def body(i: int = i) -> dict[str, int]:
                await asyncio.sleep(delay)
                return record(i)

            def blocking_body(i: int = i) -> dict[str, int]:
                time.sleep(delay)  # a step that holds the thread: a pause here cannot be pre-empted
                return record(i)

            await step.run(f"step-{i}", blocking_body if blocking else body)
            step.progress(i + 1, steps)
            step.log.info("step done", i=i)
        return {"steps": steps}

    return stepstone.define_job("ten", ten)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("side")
    p.add_argument("--trigger", type=int, default=0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--stale", type=float, default=60.0)
    p.add_argument("--heartbeat", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--blocking", action="store_true")
    args = p.parse_args()
    engine = stepstone.create_engine(
        f"sqlite:///{args.db}",
        polling_interval=0.05,
        heartbeat_interval=args.heartbeat,
        stale_threshold=args.stale,
        concurrency=args.concurrency,
    )
    engine.register(make_job(args.side, args.steps, args.delay, args.blocking))
    async with engine:
        for n in range(args.trigger):
            await engine.trigger("ten", {"n": n})
        print(f"ready {os.getpid()} {engine.owner}", flush=True)
        while (await engine.get_runs(status=["pending", "running"], limit=1)).total:
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
