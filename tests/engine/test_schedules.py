"""Cron schedules: every tick fires exactly once across engines sharing a store, through restarts,
pauses and missed ticks (skipped or caught up), driven by a TestClock (minutes pass at once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone import Engine
from stepstone.testing import TestClock

BOUND = 20.0
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a minute


def _engine(url: Any, clock: TestClock, fired: Counter[str], **options: Any) -> Engine:
    engine = stepstone.create_engine(url, clock=clock, polling_interval=0.05, heartbeat_interval=0.05,
                                     stale_threshold=1.0, **options)  # fmt: skip

    async def report(step: stepstone.Step, payload: Any) -> None:
        fired[payload["tag"] if isinstance(payload, dict) else "?"] += 1

    engine.register(stepstone.define_job("report", report))
    return engine


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def _parked(engine: Engine, name: str) -> bool:
    schedule = await engine.schedules.get(name)
    return schedule is not None and (schedule.next_fire_at is not None or schedule.paused)


async def _ticks(engine: Engine) -> int:
    return (await engine.get_runs(job_name="report", status="completed", limit=1)).total


async def test_a_minutely_schedule_fires_each_tick_once_across_two_engines_over_100_ticks(tmp_path: Path) -> None:
    clock, fired = TestClock(START), Counter[str]()
    url = f"sqlite:///{tmp_path}/jobs.db"
    first, second = _engine(url, clock, fired), _engine(url, clock, fired)
    async with first, second:
        created = await first.schedules.create("every-minute", "report", "* * * * *", input={"tag": "tick"})
        again = await second.schedules.create("every-minute", "report", "* * * * *", input={"tag": "tick"})
        assert again.run_id == created.run_id, "creating the same schedule twice is one schedule"
        await until(lambda: _parked(first, "every-minute"), "the schedule parks until its first tick")
        for minute in range(1, 101):
            clock.advance(60)
            await until(lambda minute=minute: _has(first, minute), f"tick {minute} fired")
        await asyncio.sleep(0.2)
        assert fired["tick"] == 100
        keys = [r.idempotency_key for r in await first.get_runs(job_name="report", limit=1000)]
        assert len(keys) == 100 and len(set(keys)) == 100


async def _has(engine: Engine, n: int) -> bool:
    return await _ticks(engine) >= n


async def test_a_restart_in_the_middle_neither_loses_nor_doubles_a_tick(tmp_path: Path) -> None:
    clock, fired = TestClock(START), Counter[str]()
    url = f"sqlite:///{tmp_path}/jobs.db"
    engine = _engine(url, clock, fired)
    async with engine:
        await engine.schedules.create("s", "report", "*/5 * * * *", input={"tag": "t"})
        await until(lambda: _parked(engine, "s"), "parked")
        clock.advance(300)
        await until(lambda: _has(engine, 1), "first tick")
    restarted = _engine(url, clock, fired)
    async with restarted:
        clock.advance(300)
        await until(lambda: _has(restarted, 2), "second tick after the restart")
        clock.advance(300)
        await until(lambda: _has(restarted, 3), "third tick")
        await asyncio.sleep(0.2)
    assert fired["t"] == 3


async def _planned_after(engine: Engine, now: float) -> bool:
    schedule = await engine.schedules.get("s")
    return schedule is not None and schedule.next_fire_at is not None and schedule.next_fire_at > now


@pytest.mark.parametrize(("missed", "expected"), [("skip", 1), ("catch_up", 4)])
async def test_ticks_missed_while_nothing_ran_are_skipped_or_caught_up(
    tmp_path: Path, missed: str, expected: int
) -> None:
    clock, fired = TestClock(START), Counter[str]()
    url = f"sqlite:///{tmp_path}/jobs.db"
    engine = _engine(url, clock, fired)
    async with engine:
        await engine.schedules.create("s", "report", "*/5 * * * *", input={"tag": "t"}, missed=missed, catch_up=3)
        await until(lambda: _parked(engine, "s"), "parked")
    clock.advance(32 * 60)  # six ticks pass while nothing runs; the latest is 2 min old: missed too
    restarted = _engine(url, clock, fired)
    async with restarted:
        await until(lambda: _planned_after(restarted, clock.now()), "re-planned")
        await asyncio.sleep(0.2)
        late = fired["t"]
        clock.advance(3 * 60)
        await until(lambda: _has(restarted, late + 1), "the next tick fires on time")
    assert late == expected - 1 and fired["t"] == expected


async def test_a_paused_schedule_fires_nothing_until_resumed(tmp_path: Path) -> None:
    clock, fired = TestClock(START), Counter[str]()
    engine = _engine(f"sqlite:///{tmp_path}/jobs.db", clock, fired)
    async with engine:
        await engine.schedules.create("s", "report", "* * * * *", input={"tag": "t"})
        await until(lambda: _parked(engine, "s"), "parked")
        paused = await engine.schedules.pause("s")
        assert paused.paused
        await until(lambda: _is_paused(engine), "the schedule run waits for resume only")
        clock.advance(5 * 60)
        await asyncio.sleep(0.3)
        assert fired["t"] == 0
        await engine.schedules.resume("s")
        await until(lambda: _parked(engine, "s"), "re-planned after resume")
        clock.advance(60)
        await until(lambda: _has(engine, 1), "fires again")
        await engine.schedules.delete("s")
        assert await engine.schedules.get("s") is None
        clock.advance(600)
        await asyncio.sleep(0.3)
    assert fired["t"] == 1


async def _is_paused(engine: Engine) -> bool:
    schedule = await engine.schedules.get("s")
    return schedule is not None and schedule.paused


async def test_a_job_declared_with_a_schedule_gets_one_and_it_lists_the_next_fire_time(tmp_path: Path) -> None:
    clock, fired = TestClock(START), Counter[str]()

    @stepstone.job("nightly", schedule="30 2 * * *", timezone="Europe/Paris")
    async def nightly(step: stepstone.Step, payload: Any) -> None:
        fired["nightly"] += 1

    engine = _engine(f"sqlite:///{tmp_path}/jobs.db", clock, fired)
    engine.register(nightly)
    async with engine:
        await until(lambda: _parked(engine, "nightly"), "parked")
        [schedule] = await engine.schedules.list()
        assert schedule.name == "nightly" and schedule.cron == "30 2 * * *" and schedule.timezone == "Europe/Paris"
        assert schedule.next_fire_at == 1_800_063_000.0  # 2027-01-16 02:30 Paris = 01:30Z
        clock.advance_to(schedule.next_fire_at)
        await until(lambda: _fired(fired, "nightly"), "fired at 02:30 Paris")


async def _fired(fired: Counter[str], tag: str) -> bool:
    return fired[tag] > 0


async def test_bad_cron_text_is_refused_naming_the_field(tmp_path: Path) -> None:
    engine = _engine("memory:", TestClock(START), Counter())
    async with engine:
        with pytest.raises(stepstone.InvalidInput, match="the hour field: 25 is out of range 0-23"):
            await engine.schedules.create("s", "report", "0 25 * * *")
        with pytest.raises(stepstone.InvalidInput, match="unknown time zone"):
            await engine.schedules.create("s", "report", "0 1 * * *", timezone="Mars/Olympus")
        with pytest.raises(stepstone.JobNotFound, match="no job named 'nope'"):
            await engine.schedules.create("s", "nope", "0 1 * * *")
        assert await engine.schedules.list() == []
    with pytest.raises(ValueError, match="the day of week field"):
        stepstone.define_job("x", _noop, schedule="0 1 * * funday")


async def _noop(step: stepstone.Step, payload: Any) -> None:
    return None


async def test_a_run_handed_over_to_is_not_superseded_by_its_still_finishing_predecessor() -> None:
    """After its last generation a schedule run triggers its successor, then completes; another
    process may plan the successor before that completion is written (seen under load)."""
    from stepstone._cron import Cron
    from stepstone._models import RunList
    from stepstone._schedules import _plan

    def run(run_id: str, created_at: float, **spec: Any) -> stepstone.Run:
        return stepstone.Run(id=run_id, job_name="stepstone.schedule", job_version="", status="running",
                             input={"name": "s", **spec},
                             created_at=created_at, updated_at=created_at)  # fmt: skip

    old, new = run("old", 1.0), run("new", 2.0, predecessor="old")

    class Host:
        async def get_runs(self, *args: Any, **kwargs: Any) -> RunList:
            return RunList([old, new], total=2, limit=100, offset=0)

    spec = {"name": "s", "missed": "skip", "catch_up": 1, "predecessor": "old"}
    plan = await _plan(Host(), Cron.parse("* * * * *", "UTC"), spec, "new", START, START + 61)  # type: ignore[arg-type]
    assert "superseded" not in plan and plan["fire"] == [START + 60]
    without_link = await _plan(Host(), Cron.parse("* * * * *", "UTC"), {**spec, "predecessor": None}, "new",
                               START, START + 61)  # type: ignore[arg-type]  # fmt: skip
    assert without_link == {"superseded": "old"}  # (two schedule runs created at once: the older wins)
