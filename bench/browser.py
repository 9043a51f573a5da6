#!/usr/bin/env python3
"""Browser local mode, measured in Debian's Chromium (headless) on the built offline site.

    .venv/bin/python bench/browser.py            # builds dist/site first if it is missing
    .venv/bin/python bench/browser.py --rounds 5 --steps 1000

Prints one table:
- Pyodide boot: a bare page (loadPyodide + the stepstone wheel), and local.html from navigation to
  "engine ready" (PyScript + Pyodide + IndexedDB open + worker started);
- reload -> first resumed step: a demo run is reloaded away after step 3; the time from
  ``page.reload()`` to the resumed ``step:start`` of step 4, next to the time to "engine ready"
  (goal: resume within boot + 300 ms);
- IndexedDB steps/s: a job of N trivial steps executed by the engine on IndexedDB (each step one
  committed transaction), next to the same job on the in-memory store, and raw ``commit_step``
  calls (goal: >= 300 steps/s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.harness import (  # noqa: E402 - after the path set-up above
    LAUNCH,
    boot_pyodide,
    ensure_site,
    guard_offline,
    run_py,
    serve_site,
    wait_for,
)

STEPS_JOB = """
import asyncio, json, time, stepstone
from stepstone import NewEvent, NewRun, StepRecord
from stepstone.stores.indexeddb import IndexedDBStore

async def _steps(step, payload):
    for i in range(payload["n"]):
        await step.run(f"s{{i}}", lambda i=i: i)
    return payload["n"]

async def _engine_rate(store, n, follow=False):
    # n trivial steps, timed from trigger to run:complete; follow: a live subscriber reads
    # every event as it is written (what local.html does)
    engine = stepstone.create_engine(store)  # the store's own timing (IndexedDB: 0.25 s polls)
    engine.register(stepstone.define_job("bench-steps", _steps))
    done = asyncio.Event()
    engine.on("run:complete", lambda event: done.set())
    await engine.init()
    try:
        t0 = time.perf_counter()
        run = await engine.trigger("bench-steps", {{"n": n}})
        if follow:
            async for event in engine.subscribe(run.id):
                pass
        await asyncio.wait_for(done.wait(), 300)
        return n / (time.perf_counter() - t0)
    finally:
        await engine.stop()

async def _raw_rate(store, n):
    await store.init()
    t = time.time()
    await store.create_run(NewRun("raw", "raw", "1", None, t), NewEvent("run:trigger", {{}}, t))
    run = await store.claim_next("bench", ["raw"], t, t + 300)
    t0 = time.perf_counter()
    for i in range(n):
        events = [NewEvent("step:start", {{"i": i}}, t), NewEvent("step:complete", {{"i": i}}, t)]
        await store.commit_step(run.id, run.epoch, StepRecord(run.id, f"s{{i}}", i, "completed", i), events)
    rate = n / (time.perf_counter() - t0)
    await store.close()
    return rate

await _engine_rate(IndexedDBStore("{db}-warm-up"), 50)
json.dumps({{
    "idb": await _engine_rate(IndexedDBStore("{db}-a"), {n}),
    "idb_follow": await _engine_rate(IndexedDBStore("{db}-b"), {n}, follow=True),
    "idb_strict": await _engine_rate(IndexedDBStore("{db}-c", durability="strict"), {n}),
    "memory": await _engine_rate(stepstone.MemoryStore(), {n}),
    "raw": await _raw_rate(IndexedDBStore("{db}-d"), {n}),
}})
"""

RESUMED = """
import __main__, json
_events = await __main__.ENGINE.store.read_events({run_id!r}, 0, 10000)
_starts = [e for e in _events if e.type == "run:start"]
_after = [e for e in _events if e.type == "step:start" and len(_starts) > 1 and e.seq > _starts[1].seq]
json.dumps(_after[0].at if _after else None)
"""


def ready(page: Any) -> None:
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 120)
    if state != "ready":
        raise SystemExit(f"local.html did not start: {page.inner_text('#error')}")


def bench_boot(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """Each measurement in a fresh context (no HTTP cache, no compiled-wasm cache)."""
    bare, local = [], []
    for _ in range(rounds):
        context = browser.new_context()
        outside = guard_offline(context)
        bare.append(boot_pyodide(context.new_page(), base))
        context.close()
        context = browser.new_context()
        outside += guard_offline(context)
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/local.html?db=bench-{uuid.uuid4().hex[:8]}")
        ready(page)
        local.append((time.perf_counter() - t0) * 1000)
        context.close()
        assert not outside, outside
    return {"bare": bare, "local": local}


def bench_resume(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    boot, resume = [], []
    for _ in range(rounds):
        context = browser.new_context()
        outside = guard_offline(context)
        page = context.new_page()
        page.goto(f"{base}/local.html?db=bench-{uuid.uuid4().hex[:8]}")
        ready(page)
        page.fill("#steps-input", "10")
        page.fill("#seconds-input", "0.3")
        page.click("#start")
        run_id = wait_for(page, "document.body.dataset.run", 10)
        wait_for(page, "document.querySelector('#steps li[data-name=\"step-3\"]')?.className === 'completed'", 30)
        t0 = time.time()
        page.reload()
        ready(page)
        ready_at = float(page.evaluate("document.body.dataset.readyAt")) / 1000
        deadline = time.monotonic() + 30
        while (step_at := run_py(page, RESUMED.format(run_id=run_id))) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the run did not resume within 30 s of the reload")
            time.sleep(0.02)
        boot.append((ready_at - t0) * 1000)
        resume.append((step_at - t0) * 1000)
        context.close()
        assert not outside, outside
    return {"boot": boot, "resume": resume}


def bench_steps(browser: Any, base: str, steps: int) -> dict[str, float]:
    context = browser.new_context()
    page = context.new_page()
    boot_pyodide(page, base)
    rates: dict[str, float] = run_py(page, STEPS_JOB.format(db=f"bench-{uuid.uuid4().hex[:8]}", n=steps), timeout=600)
    context.close()
    return rates


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f}  (min {min(values):.0f}, max {max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the boot and resume measurements")
    parser.add_argument("--steps", type=int, default=500, help="steps of the throughput job")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    ensure_site()
    with serve_site() as base, sync_playwright() as pw:
        browser = pw.chromium.launch(**LAUNCH)
        boot = bench_boot(browser, base, args.rounds)
        resume = bench_resume(browser, base, args.rounds)
        rates = bench_steps(browser, base, args.steps)
        browser.close()
    overhead = [r - b for r, b in zip(resume["resume"], resume["boot"], strict=True)]
    print()
    print(f"stepstone browser local mode — Chromium headless, {args.rounds} rounds, medians")
    print(f"{'measure':48} {'value':>8}")
    print("-" * 80)
    print(f"{'Pyodide boot, bare page + wheel, cold (ms)':48} {fmt(boot['bare'])}")
    print(f"{'local.html navigation -> engine ready, cold (ms)':48} {fmt(boot['local'])}")
    print(f"{'reload -> engine ready (ms)':48} {fmt(resume['boot'])}")
    print(f"{'reload -> first resumed step:start (ms)':48} {fmt(resume['resume'])}")
    print(f"{'  resumed step after ready (ms; goal <= 300)':48} {fmt(overhead)}")
    print(f"{'IndexedDB steps/s, engine (goal >= 300)':48} {rates['idb']:8.0f}")
    print(f"{'IndexedDB steps/s, engine + live subscriber':48} {rates['idb_follow']:8.0f}")
    print(f"{'IndexedDB steps/s, engine, durability=strict':48} {rates['idb_strict']:8.0f}")
    print(f"{'IndexedDB commit_step/s, store alone':48} {rates['raw']:8.0f}")
    print(f"{'memory store steps/s, engine (same page)':48} {rates['memory']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
