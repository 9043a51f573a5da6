"""SIGKILL real processes while a run sleeps or waits for an event: a new process wakes it on time
(the sleep's clock never restarts), an event sent by a third process is delivered once, and the
step before the wait never runs again. ``stale_threshold`` is 60 s: nothing here waits out a lease."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("waiting_worker.py")


def start(db: Path, side: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(side), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), f"did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    return proc, line.split()[2]


def status(db: Path, run_id: str) -> tuple[str, float | None]:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status, wake_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0], row[1]


def until_suspended(db: Path, run_id: str) -> float | None:
    deadline = time.monotonic() + 20
    while True:
        state, wake_at = status(db, run_id)
        if state == "suspended":
            return wake_at
        assert time.monotonic() < deadline, f"the run never suspended ({state})"
        time.sleep(0.02)


def side_lines(side: Path) -> list[tuple[str, str, int, float]]:
    if not side.exists():
        return []
    return [(r, n, int(p), float(t)) for r, n, p, t in (line.split() for line in side.read_text().splitlines())]


def finish(proc: subprocess.Popen[str]) -> None:
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise AssertionError("the worker did not finish") from None
    assert proc.returncode == 0, err


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


@pytest.mark.slow
def test_a_sleep_survives_sigkill_and_wakes_on_time_without_rerunning_steps(tmp_path: Path) -> None:
    db, side = tmp_path / "jobs.db", tmp_path / "side.txt"
    first, run_id = start(db, side, "--trigger", "sleep", "2.0")
    wake_at = until_suspended(db, run_id)
    assert wake_at is not None
    sigkill(first)
    second, _ = start(db, side)  # starts before the wake time: its timer wakes the run, not a poll
    finish(second)
    lines = side_lines(side)
    assert [n for _, n, _, _ in lines] == ["before", "after"], "the step before the sleep ran once"
    before, after = lines[0][3], lines[1][3]
    assert after >= wake_at, "not a moment early"
    assert after - wake_at < 1.0, f"woke {after - wake_at:.3f} s late"
    assert abs((wake_at - before) - 2.0) < 0.5, "the sleep's clock did not restart in the new process"
    assert status(db, run_id)[0] == "completed"


@pytest.mark.slow
def test_a_wait_survives_sigkill_and_an_event_from_another_process_wakes_it(tmp_path: Path) -> None:
    db, side = tmp_path / "jobs.db", tmp_path / "side.txt"
    first, run_id = start(db, side, "--trigger", "event", "go")
    until_suspended(db, run_id)
    sigkill(first)
    sender = subprocess.run(
        [sys.executable, str(WORKER), str(db), str(side), "--send", run_id, "go", '{"by": "ann"}'],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert sender.returncode == 0, sender.stderr
    second, _ = start(db, side)
    finish(second)
    assert [n for _, n, _, _ in side_lines(side)] == ["before", "after"]
    with sqlite3.connect(db) as conn:
        state, output = conn.execute("SELECT status, output FROM runs WHERE id = ?", (run_id,)).fetchone()
        delivered = conn.execute("SELECT COUNT(*) FROM run_inbox WHERE delivered_at IS NOT NULL").fetchone()[0]
    assert state == "completed" and json.loads(output) == {"got": {"by": "ann"}}
    assert delivered == 1
