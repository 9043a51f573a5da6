"""use_job_run and use_job_logs on both sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import stepstone
from stepstone.hooks import use_job_logs, use_job_run


async def test_follows_a_run_and_stops_its_stream_at_the_end(source: Any, gate: Path) -> None:
    run = await source.trigger("steps", {"steps": 3, "gate": str(gate)})
    async with use_job_run(source, run.id) as state:
        done: list[str] = []
        state.on_complete(lambda r: done.append(r.id))
        await state.wait_for(lambda s: s.progress is not None, timeout=10)
        assert state.is_running and state.run is not None and state.run.id == run.id
        assert state.progress == stepstone.Progress(1, 3, "step 1 of 3") and len(state.logs) == 1
        gate.touch()
        await state.wait_for(lambda s: s.is_completed, timeout=10)
        assert state.output == {"steps": 3} and [e.message for e in state.logs] == [f"step {i} done" for i in range(3)]
        assert state.run.status == "completed" and state.run.output == {"steps": 3}
        assert done == [run.id]
        await state.wait_for(lambda s: not s.is_following, timeout=5)  # the stream ended with the run


async def test_a_finished_run_loads_whole_and_fires_nothing(source: Any) -> None:
    run = await source.trigger("steps", {"steps": 2})
    await source.wait(run.id, timeout=10)
    async with use_job_run(source, run.id) as state:
        fired: list[str] = []
        state.on_complete(lambda r: fired.append(r.id))
        await state.ready(timeout=10)
        assert state.is_completed and len(state.logs) == 2 and [s.status for s in state.steps] == ["completed"] * 2
        assert state.last_seq == state.run.last_seq if state.run else False
        assert fired == []


async def test_unknown_run_is_a_clear_error(source: Any) -> None:
    async with use_job_run(source, "no-such-run") as state:
        await state.ready(timeout=10)
        assert state.error_code == "run_not_found" and state.error and "no-such-run" in state.error
        assert state.status is None


async def test_refresh_follows_a_retry(source: Any, tmp_path: Path) -> None:
    heal = tmp_path / "heal"
    run = await source.trigger("steps", {"steps": 2, "fail_at": 1, "heal": str(heal)})
    async with use_job_run(source, run.id) as state:
        completions: list[int] = []
        state.on_complete(lambda r: completions.append(r.attempt))
        await state.wait_for(lambda s: s.is_failed, timeout=10)
        assert state.error == "RuntimeError: boom at step 1"
        heal.touch()
        await source.retry(run.id)
        state.refresh()
        await state.wait_for(lambda s: s.is_completed, timeout=10)
        assert completions == [2] and state.error is None
        assert [s.status for s in state.steps] == ["completed", "completed"]


async def test_set_run_id_switches_runs(source: Any) -> None:
    a = await source.trigger("steps", {"steps": 1})
    b = await source.trigger("steps", {"steps": 2})
    async with use_job_run(source, None) as state:
        await state.ready(timeout=5)
        assert state.status is None and state.logs == []
        state.set_run_id(a.id)
        await state.wait_for(lambda s: s.is_completed, timeout=10)
        assert len(state.logs) == 1
        state.set_run_id(b.id)
        await state.wait_for(lambda s: s.is_completed and s.run_id == b.id, timeout=10)
        assert [e.run_id for e in state.logs] == [b.id, b.id]


async def test_use_job_logs_keeps_the_last_lines(source: Any) -> None:
    run = await source.trigger("steps", {"steps": 5})
    async with use_job_logs(source, run.id, max_logs=2) as logs:
        await logs.wait_for(lambda s: s.is_completed, timeout=10)
        assert [e.message for e in logs.logs] == ["step 3 done", "step 4 done"]
        assert logs.logs[0].level == "info" and logs.logs[0].data == {"index": 3}
        logs.clear_logs()
        assert logs.logs == []


class WindingDown:
    """A source whose run stream ends a while after the run's last event (a server closing it, a
    slow network): its ``get_run`` tells the run as its log stands."""

    def __init__(self, events: list[stepstone.Event]) -> None:
        self.events = events
        self.ended = asyncio.Event()

    async def get_run(self, run_id: str) -> stepstone.Run:
        status = {"run:start": "running", "run:retry": "pending", "run:fail": "failed", "run:complete": "completed"}
        last = [status[e.type] for e in self.events if e.type in status][-1]
        output = next((e.data.get("output") for e in self.events if e.type == "run:complete"), None)
        return stepstone.Run(run_id, "steps", "1", last, output=output,  # type: ignore[arg-type]
                             last_seq=self.events[-1].seq)

    async def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[stepstone.Event]:
        for event in list(self.events):
            if event.seq >= from_seq:
                yield event
        await self.ended.wait()


async def test_a_refresh_asked_while_the_stream_winds_down_is_not_lost() -> None:
    """The run failed and was retried at once (use_job sees the retry on the run-change feed and
    calls refresh) while the failed attempt's stream had not ended yet: once it ends, the state
    follows the new attempt."""
    def event(seq: int, type: str, **data: Any) -> stepstone.Event:
        return stepstone.Event("r1", seq, type, data, 1.0 + seq)

    source: Any = WindingDown([event(0, "run:trigger"), event(1, "run:start", attempt=1),
                               event(2, "run:fail", error="boom")])
    async with use_job_run(source, "r1") as state:
        await state.wait_for(lambda s: s.is_failed and s.is_following, timeout=5)
        state.refresh()  # too early: the stream of attempt 1 is still open
        source.events += [event(3, "run:retry"), event(4, "run:start", attempt=2), event(5, "run:complete", output=7)]
        source.ended.set()
        await state.wait_for(lambda s: s.is_completed, timeout=5)
        assert state.output == 7 and state.run is not None and state.error is None
