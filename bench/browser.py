#!/usr/bin/env python3
"""The browser modes, measured in Debian's Chromium (headless) on the built offline site.

    .venv/bin/python bench/browser.py            # builds dist/site first if it is missing
    .venv/bin/python bench/browser.py --rounds 5 --steps 1000
    .venv/bin/python bench/browser.py --only throughput,stall
    .venv/bin/python bench/browser.py --boot     # only the boot table below, in a cached profile

Prints one table:
- boot: a bare page (loadPyodide + the stepstone wheel), a bare dedicated worker (the same, in a
  worker), local.html from navigation to "engine ready" (PyScript + Pyodide + IndexedDB open +
  worker started), and worker.html to "ready" (the page's Pyodide and the worker's, in parallel);
- reload -> first resumed step (local mode): a demo run is reloaded away after step 3; the time
  from ``page.reload()`` to the resumed ``step:start`` of step 4, next to the time to "engine
  ready" (goal: resume within boot + 300 ms);
- throughput, steps/s: a job of N trivial steps executed by the engine, one run, and 8 and 16 runs
  at once (concurrency 8 and 16: their step commits share transactions), on ``opfs://`` in a worker (goal >= 2,000),
  on IndexedDB in a worker and in the page (goal >= 1,000), and on the memory store; in a browser
  profile on disk, as a user's is (an incognito-like context keeps OPFS and IndexedDB in memory
  behind IPC, which is slower for OPFS and faster for IndexedDB: the last rows);
- IndexedDB extras (page, incognito-like, one run): with a live subscriber, ``durability=strict``,
  raw ``commit_step`` calls (the previous bench's figures);
- the longest main-thread stall (gap between animation frames) while a job of CPU-bound steps
  (1 s each) runs, in worker mode and in local mode, on worker.html (goal: <= 50 ms in worker mode),
  next to the same 3 s with nothing running (on a loaded machine frames are late on their own).

``--boot`` prints another table, of first and return visits as a person's browser makes them (a
persistent profile with its disk cache, no request interception, which would turn the HTTP cache
off): time from navigation to ready of a bare ``loadPyodide()`` page, the site's loader
(``stepstone-pyodide.mjs``: the memory snapshot) on the same page, ``server.html`` and
``local.html``, the ratio to bare (goal for the pages on return visits: <= 1.3), and, after a reload of
``local.html`` mid-run, the first resumed ``step:start`` after ready (goal: <= 100 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.harness import (  # noqa: E402 - after the path set-up above
    LAUNCH,
    boot_pyodide,
    ensure_site,
    guard_offline,
    run_py,
    serve_site,
    site_config,
    wait_for,
)
from tests.browser.worker_harness import run_py_in_worker, start_worker_python  # noqa: E402

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


def _reload_mid_run(page: Any) -> tuple[float, float, float]:
    """On a ready local.html: a run of 10 steps of 0.3 s, the page reloaded after step 3; the times
    (s since the epoch) of the reload, of ready again and of the resumed ``step:start``."""
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
    return t0, ready_at, step_at


def bench_resume(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    boot, resume = [], []
    for _ in range(rounds):
        context = browser.new_context()
        outside = guard_offline(context)
        page = context.new_page()
        page.goto(f"{base}/local.html?db=bench-{uuid.uuid4().hex[:8]}")
        ready(page)
        t0, ready_at, step_at = _reload_mid_run(page)
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


THROUGHPUT = """
import asyncio, json, time, uuid, stepstone

async def _steps(step, payload):
    for i in range(payload["n"]):
        await step.run(f"s{{i}}", lambda i=i: i)
    return payload["n"]

async def _rate(url, n, runs):
    engine = stepstone.create_engine(url, concurrency=max(4, runs))
    engine.register(stepstone.define_job("bench-steps", _steps))
    finished = asyncio.Event()
    done = []
    engine.on("run:complete", lambda event: (done.append(1), len(done) == runs and finished.set()))
    await engine.init()
    try:
        t0 = time.perf_counter()
        for _ in range(runs):
            await engine.trigger("bench-steps", {{"n": n}})
        await asyncio.wait_for(finished.wait(), 600)
        return n * runs / (time.perf_counter() - t0)
    finally:
        await engine.stop()
        if url.startswith("opfs://"):
            from stepstone.stores.opfs import OPFSStore
            await OPFSStore.destroy(url[len("opfs://"):].partition("?")[0])

def _fresh(url):  # a new database per measurement
    if url == "memory:":
        return url
    name, sep, query = url.partition("?")
    return f"{{name}}-{{uuid.uuid4().hex[:6]}}{{sep}}{{query}}"

_out = {{}}
await _rate({warm!r}, 50, 1)
for _name, _url in {stores!r}:
    _out[_name] = [await _rate(_fresh(_url), {n}, 1), await _rate(_fresh(_url), {n8}, 8),
                   await _rate(_fresh(_url), {n16}, 16)]
json.dumps(_out)
"""


def bench_throughput(context: Any, base: str, steps: int) -> dict[str, list[float]]:
    """Steps/s for one run of ``steps`` steps, 8 runs of ``steps // 4`` and 16 of ``steps // 8`` at
    once, in a worker and in the page."""
    page = context.new_page()
    page.goto(f"{base}/index.html")
    start_worker_python(page)
    in_worker = [
        ("opfs, worker", "opfs://bench"),
        ("opfs strict, worker", "opfs://bench?durability=strict"),
        ("indexeddb, worker", "indexeddb://bench"),
        ("memory, worker", "memory:"),
    ]
    code = THROUGHPUT.format(warm="memory:", stores=in_worker, n=steps, n8=steps // 4, n16=steps // 8)
    rates: dict[str, list[float]] = run_py_in_worker(page, code, timeout=900)
    boot_pyodide(page, base)
    in_page = [("indexeddb, page", "indexeddb://bench"), ("memory, page", "memory:")]
    code = THROUGHPUT.format(warm="memory:", stores=in_page, n=steps, n8=steps // 4, n16=steps // 8)
    rates.update(run_py(page, code, timeout=900))
    page.close()
    return rates


def bench_worker_boot(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """A bare worker's Pyodide, and worker.html to "ready" (page and worker Pyodide in parallel)."""
    bare, page_ready = [], []
    for _ in range(rounds):
        context = browser.new_context()
        outside = guard_offline(context)
        page = context.new_page()
        page.goto(f"{base}/index.html")
        bare.append(start_worker_python(page))
        context.close()
        context = browser.new_context()
        outside += guard_offline(context)
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/worker.html?db=bench-{uuid.uuid4().hex[:8]}")
        state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 120)
        if state != "ready":
            raise SystemExit(f"worker.html did not start: {page.inner_text('#error')}")
        page_ready.append((time.perf_counter() - t0) * 1000)
        context.close()
        assert not outside, outside
    return {"bare": bare, "page": page_ready}


def bench_stall(context: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """The longest gap between animation frames while 3 CPU-bound steps of 1 s run (worker.html)."""
    page = context.new_page()
    page.goto(f"{base}/worker.html?db=bench-{uuid.uuid4().hex[:8]}")
    if wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 120) != "ready":
        raise SystemExit(f"worker.html did not start: {page.inner_text('#error')}")
    out: dict[str, list[float]] = {"idle": [], "worker": [], "page": []}
    for _ in range(rounds):  # the same 3 s with nothing running: what the machine alone costs
        page.evaluate("window.stallMeter.start()")
        page.wait_for_timeout(3000)
        out["idle"].append(float(page.evaluate("window.stallMeter.stop()")))
    for mode in ("worker", "page"):
        page.check(f"#mode-{mode}")
        for _ in range(rounds):
            page.evaluate("(m) => { delete document.body.dataset['stall' + m]; }", mode.title())
            page.fill("#steps-input", "3")
            page.fill("#seconds-input", "1")
            page.select_option("#kind-input", "cpu")
            page.click("#start")
            stall = wait_for(page, f"document.body.dataset.stall{mode.title()}", 120)
            out[mode].append(float(stall))
    page.close()
    return out


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f}  (min {min(values):.0f}, max {max(values):.0f})"


# -- --boot: first and return visits in a cached profile -----------------------------------------
BARE_READY = """async (cfg) => {
  const { loadPyodide } = await import(cfg.pyodide);
  window.pyodide = await loadPyodide({ indexURL: cfg.pyodideIndexURL });
  return performance.now();
}"""

# the site's loader alone (no PyScript): Pyodide restored from the snapshot, stepstone importable
LOADER_READY = """async (cfg) => {
  const { loadPyodide } = await import(cfg.loader);
  window.pyodide = await loadPyodide();
  return performance.now();
}"""


def _visit(context: Any, url: str) -> tuple[Any, float]:
    """Open ``url``; ms from navigation start to ready (a page's ``data-ready-at``, or a bare
    ``loadPyodide()`` resolved on ``/index.html``, or the site loader's on ``/index.html?loader``)."""
    page = context.new_page()
    page.goto(url)
    if url.endswith("/index.html"):
        return page, float(page.evaluate(BARE_READY, site_config()))
    if url.endswith("/index.html?loader"):
        return page, float(page.evaluate(LOADER_READY, site_config()))
    ready(page)
    return page, float(page.evaluate("Number(document.body.dataset.readyAt) - performance.timeOrigin"))


def _watch_origin(context: Any) -> list[str]:
    """Record requests that leave 127.0.0.1 without intercepting any (interception disables the
    HTTP cache); --host-resolver-rules in LAUNCH keeps Chromium itself offline."""
    outside: list[str] = []
    context.on("request", lambda r: urlparse(r.url).hostname in ("127.0.0.1", None) or outside.append(r.url))
    return outside


def bench_boot_cached(pw: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """``rounds`` first visits (each in a new profile) and return visits (one warm profile):
    bare ``loadPyodide()``, server.html and local.html, navigation to ready; and reload of
    local.html mid-run -> ready -> first resumed ``step:start``."""
    out: dict[str, list[float]] = {}
    pages = {"bare": "/index.html", "loader": "/index.html?loader", "server": "/server.html",
             "local": "/local.html?db=boot-{tag}"}  # fmt: skip

    def visit(context: Any, name: str, key: str) -> None:
        page, ms = _visit(context, base + pages[name].format(tag=uuid.uuid4().hex[:8]))
        out.setdefault(key, []).append(ms)
        page.close()

    for _ in range(rounds):  # first visits: nothing cached, nothing compiled
        for name in pages:
            with tempfile.TemporaryDirectory(prefix="stepstone-boot-") as profile:
                context = pw.chromium.launch_persistent_context(profile, **LAUNCH)
                outside = _watch_origin(context)
                visit(context, name, f"first {name}")
                context.close()
                assert not outside, outside
    with tempfile.TemporaryDirectory(prefix="stepstone-boot-") as profile:
        context = pw.chromium.launch_persistent_context(profile, **LAUNCH)
        outside = _watch_origin(context)
        for name in pages:  # the first visit of this profile fills its caches
            visit(context, name, "warm-up")
        for _ in range(rounds):  # interleaved, so that load on the machine hits all alike
            for name in pages:
                visit(context, name, f"return {name}")
            after, from_reload = _resume_after_reload(context, base)
            out.setdefault("resume after ready", []).append(after)
            out.setdefault("reload to resumed step", []).append(from_reload)
        context.close()
        assert not outside, outside
    return out


def _resume_after_reload(context: Any, base: str) -> tuple[float, float]:
    """local.html: a run of 10 steps of 0.3 s, reloaded after step 3; (ms from ready to the
    resumed step:start, ms from the reload to it)."""
    page, _ = _visit(context, f"{base}/local.html?db=resume-{uuid.uuid4().hex[:8]}")
    t0, ready_at, step_at = _reload_mid_run(page)
    page.close()
    return (step_at - ready_at) * 1000, (step_at - t0) * 1000


def print_boot_table(out: dict[str, list[float]], rounds: int) -> None:
    print()
    print(f"stepstone browser boot — Chromium headless, persistent profile, {rounds} rounds, medians")
    print(f"{'navigation -> ready (ms)':54} {'value':>8}")
    print("-" * 86)
    labels = {"bare": "bare loadPyodide()", "loader": "the site's loader (snapshot)", "server": "server.html",
              "local": "local.html"}  # fmt: skip
    for visit in ("first", "return"):
        for name, label in labels.items():
            print(f"{f'{visit} visit, {label}':54} {fmt(out[f'{visit} {name}'])}")
        bare = statistics.median(out[f"{visit} bare"])
        for name in ("loader", "server", "local"):
            ratio = statistics.median(out[f"{visit} {name}"]) / bare
            goal = "  (goal <= 1.3)" if visit == "return" and name != "loader" else ""
            print(f"{f'  {visit} visit, {labels[name]} / bare':54} {ratio:8.2f}{goal}")
    print(f"{'reload local.html mid-run -> resumed step:start':54} {fmt(out['reload to resumed step'])}")
    print(f"{'  resumed step:start after ready (goal <= 100)':54} {fmt(out['resume after ready'])}")
PARTS = ("boot", "resume", "throughput", "stall")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the boot, resume and stall measurements")
    parser.add_argument("--steps", type=int, default=1000, help="steps of the one-run job (8 runs: a quarter each)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--boot", action="store_true", help="only first and return visits in a cached profile")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    from playwright.sync_api import sync_playwright

    ensure_site()
    if args.boot:
        with serve_site() as base, sync_playwright() as pw:
            print_boot_table(bench_boot_cached(pw, base, args.rounds), args.rounds)
        return 0
    results: dict[str, Any] = {}
    with serve_site() as base, sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch(**LAUNCH)
        if "boot" in parts:
            results["boot"] = bench_boot(browser, base, args.rounds)
            results["worker_boot"] = bench_worker_boot(browser, base, args.rounds)
        if "resume" in parts:
            results["resume"] = bench_resume(browser, base, args.rounds)
        if "throughput" in parts:
            results["rates"] = bench_steps(browser, base, min(args.steps, 500))
            incognito = browser.new_context()
            results["incognito"] = bench_throughput(incognito, base, args.steps)
            incognito.close()
        browser.close()
        if "throughput" in parts or "stall" in parts:
            disk = pw.chromium.launch_persistent_context(profile, **LAUNCH)
            outside = guard_offline(disk)
            if "throughput" in parts:
                results["throughput"] = bench_throughput(disk, base, args.steps)
            if "stall" in parts:
                results["stall"] = bench_stall(disk, base, args.rounds)
            disk.close()
            assert not outside, outside
    print_table(results, args)
    return 0


def print_table(results: dict[str, Any], args: Any) -> None:
    print()
    print(f"stepstone in the browser — Chromium headless, {args.rounds} rounds (medians), {args.steps} steps")
    print(f"{'measure':58} {'value':>8}")
    print("-" * 96)
    if "boot" in results:
        boot, worker_boot = results["boot"], results["worker_boot"]
        print(f"{'Pyodide boot, bare page + wheel, cold (ms)':58} {fmt(boot['bare'])}")
        print(f"{'Pyodide boot, bare dedicated worker + wheel, cold (ms)':58} {fmt(worker_boot['bare'])}")
        print(f"{'local.html navigation -> engine ready, cold (ms)':58} {fmt(boot['local'])}")
        print(f"{'worker.html navigation -> ready (page + worker), cold (ms)':58} {fmt(worker_boot['page'])}")
    if "resume" in results:
        resume = results["resume"]
        overhead = [r - b for r, b in zip(resume["resume"], resume["boot"], strict=True)]
        print(f"{'reload -> engine ready (ms)':58} {fmt(resume['boot'])}")
        print(f"{'reload -> first resumed step:start (ms)':58} {fmt(resume['resume'])}")
        print(f"{'  resumed step after ready (ms; goal <= 300)':58} {fmt(overhead)}")
    if "throughput" in results:
        print(f"{'steps/s, engine (profile on disk)':58} {'1 run':>8} {'8 runs':>8} {'16 runs':>8}")
        goals = {"opfs, worker": " (goal >= 2000)", "indexeddb, worker": " (goal >= 1000)",
                 "indexeddb, page": " (goal >= 1000)"}  # fmt: skip
        for name, (one, eight, sixteen) in results["throughput"].items():
            print(f"{'  ' + name + goals.get(name, ''):58} {one:8.0f} {eight:8.0f} {sixteen:8.0f}")
        columns = f"{'1 run':>8} {'8 runs':>8} {'16 runs':>8}"
        print(f"{'steps/s, engine (incognito-like: storage in memory, IPC)':58} {columns}")
        for name, (one, eight, sixteen) in results["incognito"].items():
            print(f"{'  ' + name:58} {one:8.0f} {eight:8.0f} {sixteen:8.0f}")
        rates = results["rates"]
        print(f"{'IndexedDB in the page, incognito-like, one run (steps/s):':58}")
        print(f"{'  engine':58} {rates['idb']:8.0f}")
        print(f"{'  engine + live subscriber':58} {rates['idb_follow']:8.0f}")
        print(f"{'  engine, durability=strict':58} {rates['idb_strict']:8.0f}")
        print(f"{'  commit_step/s, store alone':58} {rates['raw']:8.0f}")
    if "stall" in results:
        stall = results["stall"]
        print(f"{'longest main-thread stall, 3 CPU-bound steps of 1 s (ms):':58}")
        print(f"{'  no run (the same 3 s, idle page: the machine alone)':58} {fmt(stall['idle'])}")
        print(f"{'  engine in the worker (goal <= 50)':58} {fmt(stall['worker'])}")
        print(f"{'  engine in the page (local mode)':58} {fmt(stall['page'])}")


if __name__ == "__main__":
    sys.exit(main())
