"""A real process for the suspension crash tests: a job that sleeps or waits for an event between
two steps, on a SQLite file.

    python waiting_worker.py DB SIDE [--trigger sleep SECONDS | --trigger event NAME] [--send RUN NAME JSON]

Each step body appends ``run step pid time`` to SIDE (fsynced). With ``--send`` it only sends the
event (no worker) and exits. Otherwise it prints ``ready PID RUN`` and exits 0 once no run is
unfinished (pending, running or suspended).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import stepstone


def make_job(side: str) -> stepstone.Job:
    async def waiting(step: stepstone.Step, payload: Any) -> dict[str, Any]:
        def record(name: str) -> str:
            with open(side, "a") as fh:
                fh.write(f"{step.run_id} {name} {os.getpid()} {time.time()}\n")
                fh.flush()
                os.fsync(fh.fileno())
            return name

        await step.run("before", lambda: record("before"))
        got: Any = None
        if payload["kind"] == "sleep":
            await step.sleep("nap", payload["seconds"])
        else:
            got = await step.wait_for_event(payload["event"])
        await step.run("after", lambda: record("after"))
        return {"got": got}

    return stepstone.define_job("waiting", waiting)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("side")
    p.add_argument("--trigger", nargs=2)
    p.add_argument("--send", nargs=3)
    args = p.parse_args()
    options: dict[str, Any] = {"polling_interval": 0.2, "heartbeat_interval": 0.2, "stale_threshold": 60.0}
    if args.send:
        engine = stepstone.create_engine(f"sqlite:///{args.db}", worker=False, **options)
        async with engine:
            run_id, name, data = args.send
            await engine.send_event(run_id, name, json.loads(data))
        return
    engine = stepstone.create_engine(f"sqlite:///{args.db}", **options)
    engine.register(make_job(args.side))
    async with engine:
        run_id = "-"
        if args.trigger:
            kind, value = args.trigger
            payload: dict[str, Any] = {"kind": kind}
            payload.update({"seconds": float(value)} if kind == "sleep" else {"event": value})
            run_id = (await engine.trigger("waiting", payload)).id
        print(f"ready {os.getpid()} {run_id}", flush=True)
        while (await engine.get_runs(status=["pending", "running", "suspended"], limit=1)).total:
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
