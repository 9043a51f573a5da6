"""Suspension: how late sleeping runs wake, how fast an event resumes a waiting run, how fast a
parent fans out to children and back, and what suspended runs cost the worker process.

    .venv/bin/python bench/suspend.py            # SQLite (WAL, synchronous=NORMAL) and memory
    .venv/bin/python bench/suspend.py --quick    # smaller counts

* wake lateness: N runs suspend at once with ``step.sleep_until``, their wake times spread 5 ms
  apart; each measures (time it resumed) - (its wake time). Goal: p99 <= 10 ms on SQLite.
* send_event -> resumed: a run waits in ``step.wait_for_event``; the time from ``send_event`` to
  the job returning from the wait, one run at a time. Goal: p50 <= 5 ms.
* fan-out: one parent ``asyncio.gather``-s N ``step.invoke`` children (one trivial step each);
  (N + 1) runs / wall time from trigger to the parent's completion.
* memory: the worker process's RSS and the Python heap (tracemalloc) before and after M runs are
  suspended (waiting for an event that never comes). Goal: no per-run cost (they are rows).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import tempfile
import time
import tracemalloc
from typing import Any

import stepstone

FAST = {"polling_interval": 0.5, "heartbeat_interval": 5.0, "stale_threshold": 60.0}


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def until_all(engine: stepstone.Engine, status: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while (await engine.get_runs(status=status, limit=1)).total < count:
        assert time.monotonic() < deadline, f"fewer than {count} runs became {status}"
        await asyncio.sleep(0.05)


async def wake_lateness(url: str, runs: int) -> list[float]:
    late: list[float] = []

    async def nap(step: stepstone.Step, payload: Any) -> None:
        await step.sleep_until("nap", payload["until"])
        late.append((time.time() - payload["until"]) * 1000)

    engine = stepstone.create_engine(url, concurrency=64, **FAST)
    engine.register(stepstone.define_job("nap", nap))
    async with engine:
        start = time.time() + 2.0 + runs * 0.004  # every run is parked before the first wakes
        for i in range(runs):
            await engine.trigger("nap", {"until": start + i * 0.005})
        await until_all(engine, "completed", runs)
    return late


async def event_resume(url: str, samples: int) -> list[float]:
    resumed: dict[str, float] = {}

    async def approval(step: stepstone.Step, payload: Any) -> None:
        await step.wait_for_event("go")
        resumed[step.run_id] = time.perf_counter()

    engine = stepstone.create_engine(url, **FAST)
    engine.register(stepstone.define_job("approval", approval))
    out: list[float] = []
    async with engine:
        for _ in range(samples):
            run = await engine.trigger("approval")
            while (await engine.get_run(run.id)).status != "suspended":  # type: ignore[union-attr]
                await asyncio.sleep(0.001)
            t0 = time.perf_counter()
            await engine.send_event(run.id, "go", {"ok": True})
            await engine.wait(run.id, timeout=10)
            out.append((resumed[run.id] - t0) * 1000)
    return out


async def fan_out(url: str, children: int) -> float:
    async def child(step: stepstone.Step, payload: Any) -> Any:
        return await step.run("work", lambda: payload * 2)

    async def parent(step: stepstone.Step, payload: Any) -> Any:
        results = await asyncio.gather(*(step.invoke(f"c{i}", "child", i) for i in range(payload)))
        return sum(results)

    engine = stepstone.create_engine(url, concurrency=16, **FAST)
    engine.register(stepstone.define_job("child", child))
    engine.register(stepstone.define_job("parent", parent))
    async with engine:
        t0 = time.perf_counter()
        run = await engine.trigger("parent", children)
        done = await engine.wait(run.id, timeout=600)
        seconds = time.perf_counter() - t0
    assert done.status == "completed" and done.output == children * (children - 1), done.error
    return (children + 1) / seconds


async def suspended_memory(url: str, runs: int) -> tuple[float, float]:
    async def wait_forever(step: stepstone.Step, payload: Any) -> None:
        await step.wait_for_event("never")

    engine = stepstone.create_engine(url, concurrency=64, **FAST)
    engine.register(stepstone.define_job("forever", wait_forever))
    async with engine:
        await engine.trigger("forever")  # warm every code path once
        await until_all(engine, "suspended", 1)
        gc.collect()
        rss0, (heap0, _) = rss_kib(), tracemalloc.get_traced_memory()
        for _ in range(runs):
            await engine.trigger("forever")
        await until_all(engine, "suspended", runs + 1)
        gc.collect()
        rss1, (heap1, _) = rss_kib(), tracemalloc.get_traced_memory()
    return (rss1 - rss0) * 1024 / runs, (heap1 - heap0) / runs


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI smoke run)")
    args = parser.parse_args()
    sleepers, samples, children, parked = (200, 50, 200, 2000) if args.quick else (1000, 200, 1000, 10000)
    tmp = tempfile.mkdtemp(prefix="stepstone-suspend-")
    tracemalloc.start()
    try:
        rows: list[tuple[str, str, str]] = []
        for label, make in (("sqlite", lambda n: f"sqlite:///{tmp}/{n}.db"), ("memory", lambda n: "memory:")):
            late = asyncio.run(wake_lateness(make("sleep"), sleepers))
            summary = f"p50 {statistics.median(late):.2f}  p99 {pct(late, 99):.2f}  max {max(late):.2f}"
            rows.append((label, f"wake lateness, {sleepers} sleeping runs (ms)", summary))
            resume = asyncio.run(event_resume(make("events"), samples))
            rows.append((label, f"send_event -> resumed, {samples} samples (ms)",
                         f"p50 {statistics.median(resume):.2f}  p99 {pct(resume, 99):.2f}"))  # fmt: skip
            rate = asyncio.run(fan_out(make("fanout"), children))
            rows.append((label, f"fan-out of {children} children (runs/s)", f"{rate:,.0f}"))
            if label == "sqlite":
                per_rss, per_heap = asyncio.run(suspended_memory(make("memory"), parked))
                rows.append((label, f"memory per suspended run, {parked} runs",
                             f"RSS {per_rss:,.0f} B  heap {per_heap:,.0f} B"))  # fmt: skip
    finally:
        tracemalloc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'store':8} {'measure':52} result")
    print("-" * 100)
    for store, measure, result in rows:
        print(f"{store:8} {measure:52} {result}")


if __name__ == "__main__":
    main()
