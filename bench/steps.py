"""Engine throughput and latency: steps/s and ms/step on memory, SQLite and PostgreSQL, trigger → start.

    .venv/bin/python bench/steps.py            # our figures
    .venv/bin/python bench/steps.py --compare  # also @coji/durably from npm (bench/durably/), same shapes
    .venv/bin/python bench/steps.py --postgres # also PostgreSQL (127.0.0.1:5432), beside DBOS Transact
                                               # (pip dbos, in bench/dbos/.venv) on the same server

Shapes: 200 runs x 10 steps and 20 runs x 100 steps; each step is a trivial function, so the
figure is the engine's and the store's own cost (one transaction per step). SQLite is measured in
WAL with synchronous=NORMAL (survives a process crash; the default) and FULL (fsync per commit,
survives power loss). Trigger → start is measured with the default 1 s polling interval.

With ``--postgres``, stepstone runs on a fresh schema of ``--pg``'s database and DBOS on a fresh
database of the same server (both dropped after), the same shapes at the same concurrency, plus a
sequential shape (one run at a time), all with the server's default ``synchronous_commit=on``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stepstone

ROOT = Path(__file__).resolve().parent


def make_job(steps: int) -> stepstone.Job:
    async def run(step: stepstone.Step, payload: Any) -> int:
        total = 0
        for i in range(steps):
            total += await step.run(f"s{i}", lambda i=i: i)
        return total

    return stepstone.define_job(f"bench-{steps}", run)


async def throughput(url: str, runs: int, steps: int, concurrency: int) -> float:
    engine = stepstone.create_engine(url, concurrency=concurrency)
    job = make_job(steps)
    engine.register(job)
    async with engine:
        t0 = time.perf_counter()
        ids = [(await engine.trigger(job.name, {})).id for _ in range(runs)]
        # The last run first: runs are claimed oldest first, so the others are (nearly all) done
        # by then, and this waiter is not woken by every event of every run meanwhile.
        for run_id in [ids[-1], *ids]:
            run = await engine.wait(run_id, timeout=600)
            assert run.status == "completed", run.error
        return time.perf_counter() - t0


async def trigger_to_start(url: str, samples: int) -> list[float]:
    started: dict[str, float] = {}

    async def first(step: stepstone.Step, payload: Any) -> None:
        started[step.run_id] = time.perf_counter()

    engine = stepstone.create_engine(url)  # default polling_interval=1.0
    engine.register(stepstone.define_job("latency", first))
    out = []
    async with engine:
        for _ in range(samples):
            t0 = time.perf_counter()
            run = await engine.trigger("latency")
            await engine.wait(run.id, timeout=10)
            out.append((started[run.id] - t0) * 1000)
    return out


def store_urls(tmp: str) -> dict[str, str]:
    return {
        "memory": "memory:",
        "sqlite (WAL, synchronous=NORMAL)": f"sqlite:///{tmp}/normal.db",
        "sqlite (WAL, synchronous=FULL)": f"sqlite:///{tmp}/full.db?synchronous=full",
    }


def _admin(pg: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(sql)


def _with(pg: str, *, dbname: str | None = None, query: str = "") -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg)
    path = parts.path if dbname is None else "/" + dbname
    return urlunsplit((parts.scheme, parts.netloc, path, "&".join(q for q in (parts.query, query) if q), ""))


def dbos(pg: str, runs: int, steps: int, concurrency: int) -> dict[str, Any] | None:
    """DBOS Transact on the same shape, in its own venv (bench/dbos/.venv) and its own database."""
    here = ROOT / "dbos"
    python = here / ".venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(here / ".venv")], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt"]
        if subprocess.run(pip, cwd=here, check=False).returncode != 0:
            return None
    name = f"stepstone_bench_dbos_{os.getpid()}"
    _admin(pg, f'CREATE DATABASE "{name}"')
    try:
        out = subprocess.run(
            [str(python), "bench.py", _with(pg, dbname=name), str(runs), str(steps), str(concurrency)],
            capture_output=True, text=True, timeout=900, cwd=here,
        )  # fmt: skip
    finally:
        _admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def postgres_rows(pg: str, shapes: list[tuple[int, int, int]]) -> list[tuple[str, str, float, float]]:
    """stepstone and DBOS on PostgreSQL, shape by shape: (runs, steps, concurrency)."""
    rows = []
    for runs, steps, concurrency in shapes:
        schema = f"bench_{os.getpid()}_{runs}_{steps}_{concurrency}"
        try:
            seconds = asyncio.run(throughput(_with(pg, query=f"schema={schema}"), runs, steps, concurrency))
        finally:
            _admin(pg, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        total = runs * steps
        shape = f"{runs} x {steps} c{concurrency}"
        rows.append(("stepstone postgresql (synchronous_commit=on)", shape, total / seconds, seconds * 1000 / total))
        result = dbos(pg, runs, steps, concurrency)
        if result:
            sps = result["stepsPerSecond"]
            rows.append((f"DBOS Transact {result['version']} postgresql", shape, sps, 1000 / sps))
    return rows


def durably(runs: int, steps: int, concurrency: int = 1) -> dict[str, Any] | None:
    script = ROOT / "durably" / "bench.mjs"
    if not (ROOT / "durably" / "node_modules").exists():
        return None
    out = subprocess.run(
        ["node", str(script), str(runs), str(steps), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=script.parent,
    )
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def durably_rows(shapes: list[tuple[int, int]], concurrency: int) -> list[tuple[str, str, float, float]]:
    if shutil.which("npm") and not (ROOT / "durably" / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT / "durably", check=False)
    rows = []
    for runs, steps in shapes:
        result = durably(runs, steps, concurrency)
        if result:
            for label, sps in result["stepsPerSecond"].items():
                rows.append((f"@coji/durably {result['version']} {label}", f"{runs} x {steps}", sps, 1000 / sps))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="also run @coji/durably (npm ci in bench/durably)")
    parser.add_argument("--concurrency", type=int, default=4, help="runs at once, for both engines")
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL, beside DBOS Transact (pip dbos)")
    parser.add_argument("--pg", default=os.environ.get("STEPSTONE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="the PostgreSQL server and database for --postgres")  # fmt: skip
    args = parser.parse_args()
    shapes = [(200, 10), (20, 100)]
    rows = []
    tmp = tempfile.mkdtemp(prefix="stepstone-bench-")
    try:
        for label, url in store_urls(tmp).items():
            for runs, steps in shapes:
                for name in os.listdir(tmp):
                    shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
                    if os.path.isfile(os.path.join(tmp, name)):
                        os.remove(os.path.join(tmp, name))
                seconds = asyncio.run(throughput(url, runs, steps, args.concurrency))
                total = runs * steps
                rows.append((f"stepstone {label}", f"{runs} x {steps}", total / seconds, seconds * 1000 / total))
        lat = asyncio.run(trigger_to_start(f"sqlite:///{tmp}/latency.db", 50))
        lat_mem = asyncio.run(trigger_to_start("memory:", 50))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.compare:
        rows += durably_rows(shapes, args.concurrency)
    if args.postgres:
        pg_shapes = [(100, 10, 1), (1, 1000, 1)] + [(runs, steps, args.concurrency) for runs, steps in shapes]
        rows += postgres_rows(args.pg, pg_shapes)
    print(f"\nconcurrency {args.concurrency} (runs executing at once; cN in a shape: N at once)")
    print(f"{'engine / store':62} {'shape':>10} {'steps/s':>10} {'ms/step':>9}")
    print("-" * 90)
    for name, shape, sps, ms in rows:
        print(f"{name:62} {shape:>10} {sps:>10,.0f} {ms:>9.3f}")
    print("\ntrigger -> run start (ms), default polling_interval=1.0, 50 samples")
    for label, values in (("sqlite", lat), ("memory", lat_mem)):
        q = statistics.quantiles(values, n=100, method="inclusive")
        print(f"  {label:8} median {statistics.median(values):6.2f}   p99 {q[98]:6.2f}   max {max(values):6.2f}")
    if args.compare:
        result = durably(1, 1)
        if result and "triggerToStartMs" in result:
            print(f"  durably  median {result['triggerToStartMs']:6.2f} (its default 1 s poll)")


if __name__ == "__main__":
    main()
