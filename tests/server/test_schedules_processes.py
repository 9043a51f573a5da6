"""A real one-second schedule in two ``stepstone serve`` processes on one SQLite file: every tick
fires once (not twice, not skipped), through a SIGKILL of one server and its restart."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import httpx

from tests.support.serve import ServeProcess

HERE = Path(__file__).resolve().parent


def _server(db: Path) -> ServeProcess:
    return ServeProcess(db, jobs="stepstone_schedule_jobs", jobs_dir=HERE, polling_interval=0.1)


def _ticks(server: ServeProcess) -> list[float]:
    """The tick of every run the schedule fired (from its idempotency key), in order."""
    runs = httpx.get(f"{server.api_url}/runs", params={"jobName": "every-second", "limit": 1000}).json()["runs"]
    keys = [run["idempotencyKey"] for run in runs]
    assert all(key.startswith("schedule:every-second:") for key in keys), keys
    ticks = [dt.datetime.fromisoformat(key.removeprefix("schedule:every-second:")).timestamp() for key in keys]
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {sorted(keys)}"
    return sorted(ticks)


def _wait_for(server: ServeProcess, count: int, bound: float = 20.0) -> list[float]:
    deadline = time.monotonic() + bound
    while len(ticks := _ticks(server)) < count:
        assert time.monotonic() < deadline, f"only {len(ticks)} ticks after {bound} s"
        time.sleep(0.1)
    return ticks


def _no_gap(ticks: list[float]) -> None:
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 1.0]
    assert not gaps, f"ticks skipped between {gaps}"


def test_two_servers_fire_each_tick_of_a_one_second_schedule_once_through_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with _server(db) as first, _server(db) as second:
        ticks = _wait_for(first, 3)
        _no_gap(ticks)
        first.kill()  # SIGKILL: whatever it was firing, the other server goes on
        after_crash = _wait_for(second, len(ticks) + 3)
        first.start()
        after_restart = _wait_for(first, len(after_crash) + 3)
        second.stop()  # SIGTERM this time
        final = _wait_for(first, len(after_restart) + 2)
    _no_gap(final)  # and no tick twice (checked by _ticks): 11 seconds or more, each fired once
    assert len(final) >= 11
