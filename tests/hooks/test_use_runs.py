"""use_runs (paging, filters, live updates) and use_run_actions, on both sources."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone.hooks import use_run_actions, use_runs


async def test_pages_newest_first_with_total(source: Any) -> None:
    label = {"suite": uuid.uuid4().hex}
    ids = [(await source.trigger("steps", {"steps": 1}, labels=label)).id for _ in range(5)]
    async with use_runs(source, labels=label, page_size=2, live=False) as runs:
        await runs.ready(timeout=10)
        assert runs.total == 5 and runs.page_count == 3 and not runs.has_prev and runs.has_next
        assert [r.id for r in runs.runs] == ids[::-1][:2]
        runs.next_page()
        await runs.wait_for(lambda s: not s.is_loading and s.runs and s.runs[0].id == ids[2], timeout=10)
        runs.go_to(2)
        await runs.wait_for(lambda s: not s.is_loading and [r.id for r in s.runs] == ids[:1], timeout=10)
        assert not runs.has_next and runs.has_prev
        runs.prev_page()
        assert runs.page == 1
    for run_id in ids:
        await source.wait(run_id, timeout=10)


async def test_live_updates_new_runs_progress_and_deletes(source: Any, gate: Path) -> None:
    label = {"suite": uuid.uuid4().hex}
    async with use_runs(source, labels=label, page_size=10) as runs:
        await runs.ready(timeout=10)
        assert runs.runs == [] and runs.total == 0
        run = await source.trigger("steps", {"steps": 3, "gate": str(gate)}, labels=label)
        await runs.wait_for(lambda s: [r.id for r in s.runs] == [run.id], timeout=10)
        await runs.wait_for(lambda s: s.runs[0].progress == stepstone.Progress(1, 3, "step 1 of 3"), timeout=10)
        gate.touch()
        await runs.wait_for(lambda s: s.runs[0].status == "completed", timeout=10)
        await source.delete_run(run.id)
        await runs.wait_for(lambda s: s.runs == [] and s.total == 0, timeout=10)


async def test_status_filter_follows_runs_in_and_out(source: Any, gate: Path) -> None:
    label = {"suite": uuid.uuid4().hex}
    async with use_runs(source, status=("pending", "running"), labels=label) as active:
        await active.ready(timeout=10)
        run = await source.trigger("steps", {"steps": 2, "gate": str(gate)}, labels=label)
        await active.wait_for(lambda s: [r.id for r in s.runs] == [run.id], timeout=10)
        gate.touch()
        await active.wait_for(lambda s: s.runs == [] and s.total == 0, timeout=10)
        active.set_filter(status="completed", labels=label)
        await active.wait_for(lambda s: [r.id for r in s.runs] == [run.id], timeout=10)
        with pytest.raises(ValueError, match="unknown status"):
            active.set_filter(status="finished")  # type: ignore[arg-type]


async def test_run_actions_retry_cancel_delete(source: Any, tmp_path: Path, gate: Path) -> None:
    heal = tmp_path / "heal"
    actions = use_run_actions(source)
    seen_loading: list[bool] = []
    actions.subscribe(lambda s: seen_loading.append(s.is_loading))
    failing = await source.trigger("steps", {"steps": 2, "fail_at": 0, "heal": str(heal)})
    await source.wait(failing.id, timeout=10)
    heal.touch()
    retried = await actions.retry(failing.id)
    assert retried.status == "pending" and retried.attempt == 2
    assert True in seen_loading and actions.is_loading is False and actions.error is None
    assert (await source.wait(failing.id, timeout=10)).status == "completed"
    steps = await actions.get_steps(failing.id)
    assert [s.name for s in steps] == ["s0", "s1"]

    with pytest.raises(stepstone.InvalidRunState):
        await actions.retry(failing.id)
    assert actions.error_code == "invalid_run_state" and actions.error and "completed" in actions.error

    waiting = await source.trigger("steps", {"steps": 2, "gate": str(gate)})
    assert (await actions.cancel(waiting.id)).status == "cancelled"
    assert actions.error is None
    await actions.delete_run(waiting.id)
    assert await actions.get_run(waiting.id) is None
    with pytest.raises(stepstone.RunNotFound):
        await actions.delete_run(waiting.id)
    assert actions.error_code == "run_not_found"
    await actions.aclose()
