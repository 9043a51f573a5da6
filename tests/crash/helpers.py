"""Start, watch and kill real worker processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("worker.py")


def start(db: Path, side: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(side), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"worker did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    return proc


def lines(side: Path) -> list[tuple[str, int, int]]:
    if not side.exists():
        return []
    out = []
    for raw in side.read_text().splitlines():
        run_id, step, pid = raw.split()
        out.append((run_id, int(step), int(pid)))
    return out


def wait_for_lines(side: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(lines(side)) < count:
        assert time.monotonic() < deadline, f"only {len(lines(side))} of {count} step side effects after {timeout}s"
        time.sleep(0.005)


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)


def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise AssertionError("worker did not finish in time") from None
    assert proc.returncode == 0, f"worker exited {proc.returncode}: {stderr}"


def read_db(db: Path) -> tuple[list[tuple[Any, ...]], dict[str, list[tuple[int, str, str]]], dict[str, dict[str, Any]]]:
    import json

    conn = sqlite3.connect(db)
    try:
        runs = conn.execute("SELECT id, status, output, last_seq FROM runs ORDER BY pos").fetchall()
        events: dict[str, list[tuple[int, str, str]]] = {}
        for run_id, seq, type_, data in conn.execute("SELECT run_id, seq, type, data FROM events ORDER BY run_id, seq"):
            events.setdefault(run_id, []).append((seq, type_, data))
        steps: dict[str, dict[str, Any]] = {}
        for run_id, name, output in conn.execute("SELECT run_id, name, output FROM steps WHERE status = 'completed'"):
            steps.setdefault(run_id, {})[name] = json.loads(output)
        return runs, events, steps
    finally:
        conn.close()


def step_counts(side: Path) -> Counter[tuple[str, int]]:
    return Counter((run_id, step) for run_id, step, _ in lines(side))
