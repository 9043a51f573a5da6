"""Latency across processes: a run triggered, or an event sent, by one process and executed by
another — on SQLite (one file) and PostgreSQL (one database).

    .venv/bin/python bench/crossproc.py                  # both stores (PostgreSQL on 127.0.0.1:5432)
    .venv/bin/python bench/crossproc.py --samples 100 --pg postgresql://postgres@127.0.0.1:5432/postgres

The measuring process has an engine with ``worker=False``; a second process runs the worker with
a 1 s polling interval, so what is measured is the notification path (PostgreSQL
LISTEN/NOTIFY; SQLite datagram sockets in ``<db>-owners/``), not a poll. Times come from
``time.monotonic()``, one clock for every process on Linux.

* trigger -> start: ``engine.trigger`` in process A until the job's first line runs in process B.
* event -> resumed: ``engine.send_event`` in A to a run suspended in ``wait_for_event`` until the
  job, claimed again and replayed in B, has the event in hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stepstone

ROOT = Path(__file__).resolve().parent


@stepstone.job("xp-start")
async def xp_start(step: stepstone.Step, payload: Any) -> dict[str, float]:
    return {"at": time.monotonic()}


@stepstone.job("xp-event")
async def xp_event(step: stepstone.Step, payload: Any) -> dict[str, float]:
    await step.wait_for_event("go")
    return {"at": time.monotonic()}


async def worker(url: str) -> None:
    engine = stepstone.create_engine(url, concurrency=8, polling_interval=1.0)  # the poll is not what is measured
    engine.register(xp_start)
    engine.register(xp_event)
    async with engine:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes


async def measure(url: str, samples: int) -> tuple[list[float], list[float]]:
    engine = stepstone.create_engine(url, worker=False)
    engine.register(xp_start)
    engine.register(xp_event)
    proc = subprocess.Popen([sys.executable, __file__, "--worker", url], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    starts: list[float] = []
    events: list[float] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        async with engine:
            for _ in range(3):  # warm up both processes' connections
                await engine.wait((await engine.trigger("xp-start")).id, timeout=30)
            for _ in range(samples):
                t0 = time.monotonic()
                run = await engine.trigger("xp-start")
                done = await engine.wait(run.id, timeout=30)
                starts.append((done.output["at"] - t0) * 1000)
            for _ in range(samples):
                run = await engine.trigger("xp-event")
                while (await engine.get_run(run.id)).status != "suspended":  # type: ignore[union-attr]
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.01)
                t0 = time.monotonic()
                await engine.send_event(run.id, "go", {})
                done = await engine.wait(run.id, timeout=30)
                events.append((done.output["at"] - t0) * 1000)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    return starts, events


def _row(label: str, values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"{label:44} {statistics.median(values):8.2f} {q[89]:8.2f} {q[98]:8.2f} {max(values):8.2f}"


def _pg_url(admin: str) -> tuple[str, str]:
    """A schema of its own for this run."""
    schema = f"bench_{secrets.token_hex(4)}"
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}schema={schema}", schema


def _answers(admin: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin, connect_timeout=3):
            return True
    except Exception:
        return False


def _drop_schema(admin: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(admin.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--pg", default=os.environ.get("STEPSTONE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="stepstone-xp-") as tmp:
        starts, events = asyncio.run(measure(f"sqlite:///{tmp}/xp.db", args.samples))
        rows += [_row("sqlite: trigger -> start (other process)", starts),
                 _row("sqlite: event -> resumed (other process)", events)]  # fmt: skip
    if not args.no_pg and not _answers(args.pg):
        print(f"(PostgreSQL skipped: nothing answers at {args.pg})")
    elif not args.no_pg:
        url, schema = _pg_url(args.pg)
        try:
            starts, events = asyncio.run(measure(url, args.samples))
        finally:
            _drop_schema(args.pg, schema)
        rows += [_row("postgres: trigger -> start (other process)", starts),
                 _row("postgres: event -> resumed (other process)", events)]  # fmt: skip
    print(f"\n{args.samples} samples each; worker in another process, polling_interval=1.0 (ms)")
    print(f"{'':44} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print("-" * 80)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
