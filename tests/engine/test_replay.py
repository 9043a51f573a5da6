"""Golden histories (``histories/*.json``), in the manner of Temporal's replay tests.

Each history holds a run as an interrupted execution left it (its event log and step records) and
the full log it must have once resumed to completion. The test writes the interrupted part into a
fresh store through the public Store API only (create, claim, commit steps and append events with
their recorded types and data, then hand the run back or fail it), starts an engine with the job
(``histories/jobs.py``), lets it finish the run, and compares the normalized log (no timestamps,
durations or owner names) with the expected one; it also checks that only unfinished step bodies
ran. ``histories/record.py`` re-records the histories.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone import Progress, StepRecord, Store
from stepstone.stores import NewEvent, NewRun, open_store
from tests.engine.histories.jobs import JOBS, PROBE, normalize

HISTORIES = Path(__file__).resolve().parent / "histories"
NAMES = sorted(p.stem for p in HISTORIES.glob("*.json"))
TERMINAL = ("run:complete", "run:fail", "run:cancel")
REPLAYED = ("log:write", "run:progress", "stream")  # emitted by job code, re-emitted on resume
BOUND = 10.0
RUN_ID = "0190c0de-0000-7000-8000-000000000001"


def load(name: str) -> dict[str, Any]:
    history: dict[str, Any] = json.loads((HISTORIES / f"{name}.json").read_text())
    return history


def step_record(step: dict[str, Any], at: float) -> StepRecord:
    return StepRecord(RUN_ID, step["name"], step["index"], step["status"], step["output"], step["error"], at, at)


async def write_interrupted(store: Store, history: dict[str, Any]) -> None:
    """Put the interrupted run into ``store`` as the engine would have: one commit per step
    outcome with the events buffered before it, the rest appended, then the lease handed back (or
    the run failed, when its log ends with ``run:fail``)."""
    part = history["interrupted"]
    events, steps = part["events"], {s["name"]: s for s in part["steps"]}
    t = time.time()
    first = events[0]
    assert first["seq"] == 0 and first["type"] == "run:trigger"
    new = NewRun(RUN_ID, history["job"], history["version"], history["input"], t)
    _, created = await store.create_run(new, NewEvent(first["type"], first["data"], t))
    assert created
    run = await store.claim_next("history-loader", [history["job"]], t, t + 60)
    assert run is not None and run.id == RUN_ID
    batch: list[NewEvent] = []
    progress: Progress | None = None
    for event in events[1:]:
        batch.append(NewEvent(event["type"], event["data"], t))
        if event["type"] == "run:progress":
            progress = Progress.from_json(event["data"])
        if event["type"] in ("step:complete", "step:fail"):
            record = step_record(steps[event["data"]["name"]], t)
            await store.commit_step(RUN_ID, run.epoch, record, batch, progress)
            batch, progress = [], None
    if batch and batch[-1].type in TERMINAL:
        assert part["status"] == "failed" and batch[-1].type == "run:fail"
        error = batch[-1].data["error"]
        await store.finish_run(RUN_ID, run.epoch, "failed", None, error, t, None, batch, progress)
        return
    if batch:
        await store.append_events(RUN_ID, run.epoch, batch, progress)
    assert await store.release_lease(RUN_ID, run.epoch, t)


async def log_of(store: Store) -> list[dict[str, Any]]:
    return [normalize(e) for e in await store.read_events(RUN_ID, 0, 10_000)]


@pytest.fixture(params=["memory", "sqlite"])
async def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store("memory:" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db")
    await store.init()
    yield store
    await store.close()


@pytest.mark.parametrize("name", NAMES)
def test_a_history_is_well_formed(name: str) -> None:
    history = load(name)
    assert history["description"].strip()
    assert history["job"] in JOBS and JOBS[history["job"]].version == history["version"]
    interrupted, expected = history["interrupted"]["events"], history["expected"]["events"]
    assert [e["seq"] for e in expected] == list(range(len(expected)))
    assert expected[: len(interrupted)] == interrupted, "the resumed log must extend the interrupted one"
    # a terminal event ends the log, and the interrupted part if that run had failed; nowhere else
    terminal = {e["seq"] for e in expected if e["type"] in TERMINAL}
    failed_at = {len(interrupted) - 1} if history["interrupted"]["status"] == "failed" else set()
    assert len(expected) - 1 in terminal and terminal <= {len(expected) - 1} | failed_at


@pytest.mark.parametrize("name", NAMES)
async def test_a_resumed_run_writes_exactly_the_recorded_history(name: str, fresh_store: Store) -> None:
    history = load(name)
    await write_interrupted(fresh_store, history)
    assert await log_of(fresh_store) == history["interrupted"]["events"]
    loaded = await fresh_store.get_run(RUN_ID)
    assert loaded is not None and loaded.status == history["interrupted"]["status"]

    PROBE.reset()
    engine = stepstone.create_engine(fresh_store, polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)
    engine.register(JOBS[history["job"]])
    async with engine:
        if history["resume"] == "retry":
            await engine.retry(RUN_ID)
        final = await engine.wait(RUN_ID, timeout=BOUND)

    expected = history["expected"]
    assert await log_of(fresh_store) == expected["events"]
    assert final.status == expected["status"] and final.output == expected["output"]
    assert (final.progress.to_json() if final.progress else None) == expected["progress"]
    assert PROBE.ran == expected["stepBodiesRun"]
    completed = {s["name"] for s in history["interrupted"]["steps"] if s["status"] == "completed"}
    assert not completed & set(PROBE.ran), "a step completed before the interruption ran again"


@pytest.mark.parametrize("name", NAMES)
def test_no_job_level_event_is_written_twice(name: str) -> None:
    # Guards the fixtures themselves: every job here emits distinct logs, progress and stream
    # values, so a re-recording that wrote one twice on resume would show up as a duplicate.
    events = load(name)["expected"]["events"]
    seen = [
        json.dumps([e["type"], e["data"]], sort_keys=True)
        for e in events
        if e["type"] in REPLAYED and e["data"].get("step") is None
    ]
    assert len(seen) == len(set(seen))


def test_the_histories_cover_the_required_interruptions() -> None:
    jobs = {load(name)["job"]: load(name) for name in NAMES}
    assert {"four-steps", "chatty", "squares", "flaky"} <= set(jobs)
    assert jobs["flaky"]["resume"] == "retry" and jobs["flaky"]["interrupted"]["status"] == "failed"
    assert sum(e["type"] == "stream" for e in jobs["squares"]["interrupted"]["events"]) == 3
    assert sum(e["type"] == "stream" for e in jobs["squares"]["expected"]["events"]) == 6
