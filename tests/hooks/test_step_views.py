"""Step views (``RunState.steps``) from recorded event logs, and live on both sources.

The logs in ``histories/`` were recorded from a real ``stepstone serve`` running the demo jobs
(``stepstone tail RUN --json``): a run cancelled while its second step ran, a server SIGKILLed
while a step ran and the run resumed by the next server, and a cancelled run retried. Each is
replayed whole and cut short, through a source that serves the log and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone import Event, Run
from stepstone.hooks import RunState, use_job_run
from tests.hooks.conftest import make_engine

HISTORIES = Path(__file__).parent / "histories"
_STATUS = {"run:start": "running", "run:retry": "pending", "run:complete": "completed", "run:fail": "failed",
           "run:cancel": "cancelled", "run:suspend": "suspended", "run:resume": "running"}


def history(name: str) -> list[Event]:
    lines = (HISTORIES / f"{name}.jsonl").read_text().splitlines()
    return [Event.from_json(json.loads(line)) for line in lines]


class Recorded:
    """A source that knows one run: its recorded log up to ``upto`` (a seq), then silence. Its
    ``get_run`` tells the run as it stood at ``snapshot`` (default: ``upto``), so a test can have
    the state learn the rest from the events."""

    def __init__(self, events: list[Event], upto: int | None = None, snapshot: int | None = None) -> None:
        self.events = [e for e in events if upto is None or e.seq <= upto]
        known = [e for e in self.events if snapshot is None or e.seq <= snapshot]
        status = "pending"
        for event in known:
            status = _STATUS.get(event.type, status)
        first = self.events[0]
        self.run = Run(first.run_id, "demo-steps", "1", status, last_seq=known[-1].seq,  # type: ignore[arg-type]
                       created_at=first.at)

    async def get_run(self, run_id: str) -> Run | None:
        return self.run if run_id == self.run.id else None

    async def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        for event in self.events:
            if event.seq >= from_seq:
                yield event


async def steps_of(events: list[Event], upto: int | None = None) -> list[tuple[str, int, str]]:
    source: Any = Recorded(events, upto)
    async with use_job_run(source, source.run.id) as state:
        await state.wait_for(lambda s: not s.is_following, timeout=5)
        assert state.status == source.run.status
        return [(view.name, view.index, view.status) for view in state.steps]


async def test_a_step_running_when_its_run_is_cancelled_shows_cancelled() -> None:
    events = history("cancelled-mid-step")
    assert await steps_of(events, upto=6) == [("step-1", 0, "completed"), ("step-2", 1, "running")]
    assert await steps_of(events) == [("step-1", 0, "completed"), ("step-2", 1, "cancelled")]


async def test_a_cancelled_step_says_how_long_it_ran() -> None:
    events = history("cancelled-mid-step")
    source: Any = Recorded(events)
    async with use_job_run(source, source.run.id) as state:
        await state.wait_for(lambda s: not s.is_following, timeout=5)
        view = state.steps[1]
        assert view.duration_ms == pytest.approx((events[7].at - events[6].at) * 1000, abs=0.01)
        assert not view.is_open and state.steps[0].duration_ms == 1501.077


async def test_a_step_cut_off_by_a_crash_is_interrupted_then_one_step_again_when_resumed() -> None:
    events = history("crashed-mid-step")
    assert [e.type for e in events[6:9]] == ["step:start", "run:start", "step:start"]  # the crash, the resume
    assert (await steps_of(events, upto=7))[1] == ("step-2", 1, "interrupted")
    assert await steps_of(events) == [("step-1", 0, "completed"), ("step-2", 1, "completed"),
                                      ("step-3", 2, "completed")]


async def test_a_cancelled_step_stays_cancelled_until_a_retry_runs_it_again() -> None:
    events = history("cancelled-then-retried")
    assert (await steps_of(events, upto=9))[1] == ("step-2", 1, "cancelled")  # retried, not re-run yet
    assert (await steps_of(events, upto=10))[1] == ("step-2", 1, "running")
    assert await steps_of(events) == [("step-1", 0, "completed"), ("step-2", 1, "completed")]


async def test_cancelling_mid_step_ends_the_step_live(source: Any) -> None:
    """Both sources: cancel while a step sleeps; the followed state shows that step cancelled."""
    run = await source.trigger("steps", {"steps": 3, "delay": 30})
    async with use_job_run(source, run.id) as state:
        await state.wait_for(lambda s: [v.status for v in s.steps] == ["running"], timeout=10)
        await source.cancel(run.id)
        await state.wait_for(lambda s: s.is_cancelled, timeout=10)
        assert [(v.name, v.status) for v in state.steps] == [("s0", "cancelled")]


# -- the workflow primitives: logs recorded from an in-process engine running tests/hooks/jobs.py ----
async def record(job: str, payload: Any, event: tuple[str, Any] | None = None) -> list[Event]:
    """Run ``job`` to its end on a memory engine and return its whole log; ``event`` (name, data)
    is sent to the run's child (or the run) once it waits for it."""
    async with make_engine() as engine:
        run = await engine.trigger(job, payload)
        if event is not None:
            async with use_job_run(engine, run.id) as state:
                await state.wait_for(lambda s: s.is_suspended, timeout=10)
                target = state.wait.children[0] if state.wait and state.wait.children else run.id
            await engine.send_event(target, *event)  # kept for the child if it does not wait yet
        await engine.wait(run.id, timeout=10)
        return [e async for e in engine.subscribe(run.id)]


async def state_of(events: list[Event], upto: int, snapshot: int | None = None) -> RunState:
    source: Any = Recorded(events, upto, snapshot)
    state = use_job_run(source, source.run.id)
    await state.wait_for(lambda s: not s.is_following, timeout=5)
    await state.aclose()
    return state


def seq_of(events: list[Event], type: str, nth: int = 0) -> int:
    return [e.seq for e in events if e.type == type][nth]


async def test_a_retried_step_shows_each_attempt() -> None:
    events = await record("flaky-step", {"fails": 2})
    first_retry = next(e for e in events if e.type == "step:retry")
    view = (await state_of(events, first_retry.seq)).steps[0]
    assert (view.status, view.attempt, view.error) == ("retrying", 1, "RuntimeError: attempt 1 failed")
    assert view.until == first_retry.data["nextAttemptAt"] and view.is_open and not view.is_waiting
    view = (await state_of(events, seq_of(events, "step:start", 1))).steps[0]
    assert (view.status, view.attempt, view.error) == ("running", 2, None)
    view = (await state_of(events, events[-1].seq)).steps[0]
    assert (view.status, view.attempt, view.until) == ("completed", 3, None)


async def test_a_run_the_job_retries_is_suspended_until_its_next_attempt() -> None:
    events = await record("flaky-run", {})
    assert [e.type for e in events if e.type.startswith("run:")] == [
        "run:trigger", "run:start", "run:suspend", "run:resume", "run:complete"]
    suspend = next(e for e in events if e.type == "run:suspend")
    state = await state_of(events, suspend.seq, snapshot=0)  # learnt from the events, not the snapshot
    assert state.is_suspended and state.is_active and state.wait is not None
    assert (state.wait.reason, state.wait.until) == ("retry", suspend.data["until"])
    assert state.run is not None and state.run.attempt == 2 and state.error == "RuntimeError: attempt 1 fails"
    state = await state_of(events, seq_of(events, "run:resume"), 0)
    assert state.is_running and state.wait is None and state.run is not None and state.run.attempt == 2
    assert [(v.name, v.status) for v in state.steps] == [("first", "completed")]


async def test_a_parent_suspended_for_its_child_names_it_from_the_log() -> None:
    events = await record("await-approval", {}, event=("approval", "ok"))
    start = next(e for e in events if e.type == "step:start")
    assert start.data["kind"] == "invoke"
    suspend = seq_of(events, "run:suspend")
    state = await state_of(events, suspend, snapshot=0)
    assert state.wait == stepstone.Wait("children", None, (), (start.data["childId"],))
    assert [(v.name, v.status, v.child_id) for v in state.steps] == [("child", "waiting", start.data["childId"])]
    state = await state_of(events, events[-1].seq, snapshot=0)
    assert state.is_completed and state.wait is None and state.output == {"approved": True, "data": "ok"}
    assert [(v.name, v.status, v.kind) for v in state.steps] == [("child", "completed", "invoke")]


async def test_a_sleep_stays_waiting_through_a_resume_and_completes_with_how_long_it_waited() -> None:
    events = await record("napper", {"seconds": 0.6})
    types = [e.type for e in events]
    assert types.index("run:suspend") < types.index("run:resume") < types.index("step:complete")
    state = await state_of(events, seq_of(events, "run:resume"), snapshot=0)
    nap, start = state.steps[0], events[types.index("step:start")]
    assert (nap.status, nap.kind, nap.until) == ("waiting", "sleep", start.data["until"])
    nap = (await state_of(events, events[-1].seq)).steps[0]
    assert nap.status == "completed" and nap.until is not None and nap.duration_ms is not None
    assert nap.duration_ms == pytest.approx((events[types.index("step:complete")].at
                                             - events[types.index("step:start")].at) * 1000, abs=0.01)
