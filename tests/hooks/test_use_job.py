"""use_job on both sources (an in-process Engine, and a Client to a real server): triggering,
following, surviving a "reload", follow_latest, exactly-once completion callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone.hooks import JobState, MemoryStorage, use_job


def messages(state: JobState) -> list[str]:
    return [entry.message for entry in state.logs]


async def test_trigger_follows_the_run_to_completion(source: Any) -> None:
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False) as job:
        completed: list[stepstone.Run] = []
        job.on_complete(completed.append)
        await job.ready(timeout=10)
        assert job.status is None and job.current_run_id is None
        run = await job.trigger({"steps": 3})
        assert job.current_run_id == run.id and job.status in ("pending", "running")
        await job.wait_for(lambda s: s.is_completed, timeout=10)
        assert job.output == {"steps": 3} and job.error is None and not job.is_running
        assert messages(job) == ["step 0 done", "step 1 done", "step 2 done"]
        assert job.progress == stepstone.Progress(3, 3, "step 3 of 3")
        assert [(s.name, s.status) for s in job.steps] == [("s0", "completed"), ("s1", "completed"),
                                                           ("s2", "completed")]
        assert [r.id for r in completed] == [run.id] and completed[0].output == {"steps": 3}


async def test_trigger_and_wait_returns_the_finished_run(source: Any) -> None:
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False) as job:
        run = await job.trigger_and_wait({"steps": 2}, timeout=10)
        assert run.status == "completed" and run.output == {"steps": 2}
        assert job.is_completed and job.current_run_id == run.id


async def test_reload_mid_run_reattaches_with_no_duplicated_log_line(source: Any, gate: Path) -> None:
    storage = MemoryStorage()
    first = use_job(source, "steps", storage=storage, follow_latest=False)
    run = await first.trigger({"steps": 4, "gate": str(gate), "gate_at": 2})
    await first.wait_for(lambda s: len(s.logs) == 2, timeout=10)
    await first.aclose()  # the page goes away mid-run

    second = use_job(source, "steps", storage=storage, follow_latest=False)  # the reload
    done: list[str] = []
    second.on_complete(lambda r: done.append(r.id))
    await second.ready(timeout=10)
    assert second.current_run_id == run.id and second.is_running
    assert messages(second) == ["step 0 done", "step 1 done"]
    gate.touch()
    await second.wait_for(lambda s: s.is_completed, timeout=10)
    assert messages(second) == [f"step {i} done" for i in range(4)]
    assert [e.seq for e in second.logs] == sorted({e.seq for e in second.logs})
    assert done == [run.id]
    await second.aclose()


async def test_completion_during_the_reload_is_reported_once(source: Any, gate: Path) -> None:
    storage = MemoryStorage()
    first = use_job(source, "steps", storage=storage, follow_latest=False)
    run = await first.trigger({"steps": 2, "gate": str(gate)})
    await first.wait_for(lambda s: s.is_running, timeout=10)
    await first.aclose()
    gate.touch()
    await source.wait(run.id, timeout=10)

    reports: list[str] = []
    for _ in range(2):  # two reloads: the completion is reported by the first one only
        page = use_job(source, "steps", storage=storage, follow_latest=False)
        page.on_complete(lambda r: reports.append(r.id))
        await page.ready(timeout=10)
        assert page.is_completed and page.current_run_id == run.id
        await page.aclose()
    assert reports == [run.id]


async def test_auto_resume_finds_the_active_run_without_storage(source: Any, gate: Path) -> None:
    run = await source.trigger("steps", {"steps": 2, "gate": str(gate)})
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False) as job:
        await job.ready(timeout=10)
        assert job.current_run_id == run.id
        gate.touch()
        await job.wait_for(lambda s: s.is_completed, timeout=10)
    async with use_job(source, "steps", storage=MemoryStorage(), auto_resume=False) as idle:
        await idle.ready(timeout=10)
        assert idle.current_run_id is None


async def test_follow_latest_switches_to_a_run_triggered_elsewhere(source: Any) -> None:
    async with use_job(source, "steps", storage=MemoryStorage()) as job:
        await job.ready(timeout=10)
        own = await job.trigger_and_wait({"steps": 1}, timeout=10)
        other = await source.trigger("steps", {"steps": 2})  # another tab / client
        await job.wait_for(lambda s: s.current_run_id == other.id and s.is_completed, timeout=10)
        assert own.id != other.id and messages(job) == ["step 0 done", "step 1 done"]


async def test_without_follow_latest_the_state_stays_on_its_run(source: Any) -> None:
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False) as job:
        own = await job.trigger_and_wait({"steps": 1}, timeout=10)
        other = await source.trigger("steps", {"steps": 1})
        await source.wait(other.id, timeout=10)
        assert job.current_run_id == own.id


async def test_failed_run_then_retried_elsewhere(source: Any, tmp_path: Path) -> None:
    heal = tmp_path / "heal"
    async with use_job(source, "steps", storage=MemoryStorage()) as job:
        failures: list[str] = []
        completions: list[int] = []
        job.on_fail(lambda r: failures.append(r.error or ""))
        job.on_complete(lambda r: completions.append(r.attempt))
        await job.ready(timeout=10)
        run = await job.trigger({"steps": 3, "fail_at": 1, "heal": str(heal)})
        await job.wait_for(lambda s: s.is_failed, timeout=10)
        assert job.error == "RuntimeError: boom at step 1" and job.error_code == "run_failed"
        heal.touch()
        await source.retry(run.id)  # the dashboard, say
        await job.wait_for(lambda s: s.is_completed, timeout=10)
        assert job.current_run_id == run.id and job.error is None
        assert failures == ["RuntimeError: boom at step 1"] and completions == [2]


async def test_bad_trigger_raises_and_sets_error(source: Any) -> None:
    async with use_job(source, "needs-name", storage=MemoryStorage(), follow_latest=False) as job:
        with pytest.raises(stepstone.InvalidInput):
            await job.trigger({"nope": 1})
        assert job.error is not None and "must be an object with a 'name'" in job.error
        assert job.error_code == "invalid_input" and job.current_run_id is None
        await job.trigger_and_wait({"name": "x"}, timeout=10)
        assert job.error is None and job.output == {"hello": "x"}


async def test_a_bad_trigger_error_goes_away_when_the_state_follows_another_run(source: Any) -> None:
    """The error was about the input given here; once a run triggered elsewhere is shown, it is stale."""
    async with use_job(source, "needs-name", storage=MemoryStorage()) as job:
        await job.ready(timeout=10)
        with pytest.raises(stepstone.InvalidInput):
            await job.trigger({"nope": 1})
        assert job.error_code == "invalid_input"
        other = await source.trigger("needs-name", {"name": "elsewhere"})  # another tab / client
        await job.wait_for(lambda s: s.current_run_id == other.id and s.is_completed, timeout=10)
        assert job.error is None and job.error_code is None


async def test_reset_forgets_the_run(source: Any) -> None:
    storage = MemoryStorage()
    async with use_job(source, "steps", storage=storage, follow_latest=False) as job:
        await job.trigger_and_wait({"steps": 1}, timeout=10)
        assert storage.data
        job.reset()
        assert job.current_run_id is None and job.status is None and job.logs == [] and not storage.data


async def test_initial_run_id_that_already_finished_fires_nothing(source: Any) -> None:
    run = await source.trigger("steps", {"steps": 1})
    await source.wait(run.id, timeout=10)
    async with use_job(source, "steps", initial_run_id=run.id, storage=MemoryStorage(), follow_latest=False) as job:
        fired: list[str] = []
        job.on_complete(lambda r: fired.append(r.id))
        await job.ready(timeout=10)
        assert job.is_completed and job.output == {"steps": 1} and fired == []


async def test_a_deleted_stored_run_is_forgotten(source: Any) -> None:
    storage = MemoryStorage()
    async with use_job(source, "steps", storage=storage, follow_latest=False) as job:
        run = await job.trigger_and_wait({"steps": 1}, timeout=10)
    await source.delete_run(run.id)
    async with use_job(source, "steps", storage=storage, follow_latest=False) as job:
        await job.ready(timeout=10)
        assert job.current_run_id is None and job.error is None and not storage.data


async def test_subscribers_are_told_and_can_unsubscribe(source: Any) -> None:
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False) as job:
        statuses: list[str | None] = []
        stop = job.subscribe(lambda s: statuses.append(s.status))
        await job.trigger_and_wait({"steps": 2}, timeout=10)
        assert statuses[-1] == "completed" and "running" in statuses
        stop()
        count = len(statuses)
        await job.trigger_and_wait({"steps": 1}, timeout=10)
        assert len(statuses) == count
