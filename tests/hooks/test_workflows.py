"""Hooks and the workflow primitives, on both sources (an in-process Engine, and a Client to a real
server): a suspended run's ``wait`` and waiting steps, ``use_run_actions().send_event``, child runs
(``parent_id``, ``use_runs(parent_id=)``), a sleep cut short by a cancel, a job's own retry, and
``use_job`` finding a suspended run."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone.hooks import MemoryStorage, RunState, use_job, use_job_run, use_run_actions, use_runs


def views(state: RunState) -> list[tuple[str, str, str | None]]:
    return [(v.name, v.status, v.kind) for v in state.steps]


async def test_a_run_waiting_for_an_event_shows_the_wait_and_takes_the_event(source: Any) -> None:
    run = await source.trigger("approval", {})
    async with use_job_run(source, run.id) as state, use_run_actions(source) as actions:
        completed: list[str] = []
        state.on_complete(lambda r: completed.append(r.id))
        await state.wait_for(lambda s: s.is_suspended, timeout=10)
        assert state.is_active and not state.is_terminal and state.is_following
        assert state.wait is not None and state.wait.reason == "event" and state.wait.events == ("approval",)
        assert state.wait.until is None and state.run is not None and state.run.status == "suspended"
        assert views(state) == [("ask", "completed", None), ("event:approval", "waiting", "event")]
        waiting = state.steps[1]
        assert waiting.is_open and waiting.is_waiting and waiting.event == "approval" and waiting.until is None

        loading: list[bool] = []
        actions.subscribe(lambda a: loading.append(a.is_loading))
        await actions.send_event(run.id, "approval", {"by": "ann"})
        assert loading[0] is True and not actions.is_loading and actions.error is None
        await state.wait_for(lambda s: s.is_completed, timeout=10)
        assert state.output == {"approved": True, "data": {"by": "ann"}} and state.wait is None
        taken = state.steps[1]
        assert (taken.status, taken.kind, taken.event) == ("completed", "event", "approval")
        assert taken.duration_ms is not None and taken.duration_ms >= 0
        assert completed == [run.id]


async def test_an_event_wait_with_a_timeout_shows_its_deadline(source: Any) -> None:
    run = await source.trigger("approval", {"timeout": 3600})
    async with use_job_run(source, run.id) as state:
        await state.wait_for(lambda s: s.is_suspended and len(s.steps) == 2, timeout=10)
        assert state.wait is not None and state.wait.until is not None
        assert state.wait.until >= run.created_at + 3590
        assert state.steps[1].until == state.wait.until
        await source.cancel(run.id)
        await state.wait_for(lambda s: s.is_cancelled, timeout=10)
        assert state.wait is None and state.steps[1].status == "cancelled"


async def test_send_event_errors_are_the_same_on_both_sources(source: Any) -> None:
    async with use_run_actions(source) as actions:
        with pytest.raises(stepstone.RunNotFound):
            await actions.send_event("no-such-run", "approval", {})
        assert actions.error_code == "run_not_found" and actions.error and "no-such-run" in actions.error

        done = await source.trigger("tick", None)
        await source.wait(done.id, timeout=10)
        with pytest.raises(stepstone.InvalidRunState):
            await actions.send_event(done.id, "approval", {})
        assert actions.error_code == "invalid_run_state" and actions.error and "completed" in actions.error

        waiting = await source.trigger("approval", {})
        for bad in ({"x": math.nan}, {"x": object()}):
            with pytest.raises(stepstone.InvalidInput):
                await actions.send_event(waiting.id, "approval", bad)
            assert actions.error_code == "invalid_input"
            assert actions.error and "the data of event 'approval' cannot be stored as JSON" in actions.error
        await actions.send_event(waiting.id, "approval", [1, "two"])  # any JSON; clears the error
        assert actions.error is None and not actions.is_loading
        finished = await source.wait(waiting.id, timeout=10)
        assert finished.output == {"approved": True, "data": [1, "two"]}


async def test_a_sleeping_run_shows_its_wake_time_and_a_cancel_cuts_it_short(source: Any) -> None:
    run = await source.trigger("napper", {"seconds": 3600})
    async with use_job_run(source, run.id) as state:
        cancelled: list[str] = []
        state.on_cancel(lambda r: cancelled.append(r.id))
        await state.wait_for(lambda s: s.is_suspended and s.steps, timeout=10)
        wait = state.wait
        assert wait is not None and wait.reason == "sleep" and wait.events == () and wait.children == ()
        assert wait.until is not None and wait.until >= run.created_at + 3590
        nap = state.steps[0]
        assert (nap.name, nap.status, nap.kind, nap.until) == ("nap", "waiting", "sleep", wait.until)
        await source.cancel(run.id)
        await state.wait_for(lambda s: s.is_cancelled, timeout=10)
        assert views(state) == [("nap", "cancelled", "sleep"), ("cleanup", "completed", None)]
        assert cancelled == [run.id] and state.wait is None


async def test_a_parent_waits_for_its_child_and_both_show_the_link(source: Any) -> None:
    parent = await source.trigger("await-approval", {})
    async with use_job_run(source, parent.id) as state:
        await state.wait_for(lambda s: s.is_suspended and s.steps, timeout=10)
        wait = state.wait
        assert wait is not None and wait.reason == "children" and len(wait.children) == 1
        child_id = wait.children[0]
        invoke = state.steps[0]
        assert (invoke.name, invoke.status, invoke.kind, invoke.child_id) == ("child", "waiting", "invoke", child_id)
        assert state.parent_id is None

        async with use_runs(source, parent_id=parent.id) as children, use_job_run(source, child_id) as child:
            await children.wait_for(lambda s: [r.id for r in s.runs] == [child_id], timeout=10)
            assert children.total == 1 and children.runs[0].parent_id == parent.id
            await child.wait_for(lambda s: s.is_suspended, timeout=10)
            assert child.parent_id == parent.id and child.parent_step == "child"
            assert child.wait is not None and child.wait.events == ("approval",)

            await source.send_event(child_id, "approval", {"ok": 1})
            await state.wait_for(lambda s: s.is_completed, timeout=10)
            assert state.output == {"approved": True, "data": {"ok": 1}}
            assert views(state) == [("child", "completed", "invoke")] and state.steps[0].child_id == child_id
            await children.wait_for(lambda s: s.runs and s.runs[0].status == "completed", timeout=10)


async def test_fan_out_children_are_listed_by_parent(source: Any) -> None:
    parent = await source.trigger("fan-out", 3)
    assert (await source.wait(parent.id, timeout=15)).output == [0, 2, 4]
    async with use_runs(source, parent_id=parent.id, live=False) as children:
        await children.ready(timeout=10)
        assert children.total == 3 and {r.job_name for r in children.runs} == {"double"}
        assert {r.parent_step for r in children.runs} == {"d0", "d1", "d2"}
    async with use_job_run(source, parent.id) as state:
        await state.ready(timeout=10)
        assert [(v.name, v.status, v.kind) for v in state.steps] == [
            ("d0", "completed", "invoke"), ("d1", "completed", "invoke"), ("d2", "completed", "invoke")]
        assert all(v.child_id for v in state.steps)


async def test_a_job_retried_by_the_engine_reports_completion_once(source: Any, gate: Path) -> None:
    """run:suspend (retry, attempt 2) then run:resume: the state watched it all, so on_complete
    fires once, for attempt 2."""
    run = await source.trigger("flaky-run", {"gate": str(gate)})
    async with use_job_run(source, run.id) as state:
        completions: list[int] = []
        state.on_complete(lambda r: completions.append(r.attempt))
        await state.ready(timeout=10)
        gate.touch()
        await state.wait_for(lambda s: s.is_completed, timeout=15)
        assert state.output == {"attempt": 2} and state.run is not None and state.run.attempt == 2
        assert completions == [2]


async def test_a_step_retried_shows_its_attempts(source: Any) -> None:
    run = await source.trigger("flaky-step", {"fails": 2})
    assert (await source.wait(run.id, timeout=15)).output == 3
    async with use_job_run(source, run.id) as state:
        await state.ready(timeout=10)
        call = state.steps[0]
        assert (call.name, call.status, call.kind, call.attempt) == ("call", "completed", None, 3)


async def test_use_job_and_use_runs_treat_a_suspended_run_as_unfinished(source: Any) -> None:
    label = {"suite": uuid.uuid4().hex}
    async with use_runs(source, status="suspended", labels=label) as suspended:
        await suspended.ready(timeout=10)
        run = await source.trigger("approval", {}, labels=label)
        await suspended.wait_for(lambda s: [r.id for r in s.runs] == [run.id], timeout=10)
        assert suspended.runs[0].wait is not None and suspended.runs[0].wait.events == ("approval",)

        # a page opened now (nothing in its storage) finds the suspended run and follows it
        async with use_job(source, "approval", storage=MemoryStorage()) as job:
            await job.ready(timeout=10)
            assert job.current_run_id == run.id and job.is_suspended and job.is_active
            assert job.wait is not None and job.wait.reason == "event" and job.parent_id is None
            await source.send_event(run.id, "approval", "yes")
            await job.wait_for(lambda s: s.is_completed, timeout=10)
            assert job.wait is None and job.output == {"approved": True, "data": "yes"}
        await suspended.wait_for(lambda s: s.runs == [] and s.total == 0, timeout=10)
