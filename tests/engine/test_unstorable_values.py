"""A value no store can keep fails alone, where it enters, with an error that names it.

Python strings may hold lone surrogates (``"\\ud800"``, what ``os.fsdecode`` makes of undecodable
bytes); UTF-8 — and so SQLite, PostgreSQL and IndexedDB — cannot. Input, keys and labels holding
one are refused at ``trigger`` (``InvalidInput``); a step result, an output or a streamed value
holding one fails that step or run; log text, progress messages and error texts are best effort
and stored escaped (``\\udXXX`` as six characters). Whatever fails, it fails alone: the other runs
sharing the store's group commit are untouched, and no run is left ``running``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import stepstone
from stepstone import Engine, MemoryStore, NewEvent, Progress
from stepstone._models import Event

BAD = "\ud800"
FS_NAME = os.fsdecode(b"name-\x80")  # "name-\udc80"


def _engine(url: str) -> Engine:
    return stepstone.create_engine(url, polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[Engine]:
    eng = _engine(store_url)
    bodies: list[str] = []

    async def steps(step: stepstone.Step, payload: Any) -> Any:
        for i in range(3):
            await step.run(f"s{i}", lambda i=i: bodies.append(f"{step.run_id}:{i}") or i)
        return {"ok": True}

    async def logs_a_file_name(step: stepstone.Step, payload: Any) -> Any:
        step.log.info(f"opening {FS_NAME}", path=FS_NAME, nested={FS_NAME: [FS_NAME]})
        step.progress(1, 2, f"read {FS_NAME}")
        await step.run("read", lambda: 1)
        return {"ok": True}

    async def returns_a_surrogate(step: stepstone.Step, payload: Any) -> Any:
        return {"v": "\udfff"}

    async def step_returns_a_surrogate(step: stepstone.Step, payload: Any) -> Any:
        try:
            await step.run("bad", lambda: {"name": FS_NAME})
        except stepstone.StepResultNotSerializable as exc:
            return {"caught": str(exc)}
        return {"caught": None}

    async def fails_on_a_file(step: stepstone.Step, payload: Any) -> Any:
        await step.run("open", lambda: open(FS_NAME).read())  # noqa: SIM115 - it does not exist
        return None

    async def streams_a_surrogate(step: stepstone.Step, payload: Any) -> AsyncIterator[Any]:
        yield "fine"
        yield {"v": BAD}

    for name, fn in [
        ("steps", steps),
        ("logs", logs_a_file_name),
        ("bad-output", returns_a_surrogate),
        ("bad-step", step_returns_a_surrogate),
        ("bad-file", fails_on_a_file),
        ("bad-stream", streams_a_surrogate),
    ]:
        eng.register(stepstone.define_job(name, fn))
    eng.bodies = bodies  # type: ignore[attr-defined]
    async with eng:
        yield eng


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input": {"name": BAD}}, "input for job 'steps'"),
        ({"input": {BAD: 1}}, "input for job 'steps'"),
        ({"idempotency_key": f"k{BAD}"}, "idempotency_key"),
        ({"concurrency_key": BAD}, "concurrency_key"),
        ({"labels": {"team": BAD}}, "label 'team'"),
        ({"labels": {BAD: "x"}}, "label"),
    ],
)
async def test_a_lone_surrogate_is_refused_at_trigger_naming_the_field(
    engine: Engine, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = dict(kwargs)  # the parameters are shared by both stores
    payload = kwargs.pop("input", {})
    with pytest.raises(stepstone.InvalidInput, match="lone surrogate") as refused:
        await engine.trigger("steps", payload, **kwargs)
    assert field in str(refused.value)
    assert (await engine.get_runs()).total == 0


async def test_a_bad_trigger_among_concurrent_ones_fails_alone(engine: Engine) -> None:
    results = await asyncio.gather(
        engine.trigger("steps", {"n": 1}),
        engine.trigger("steps", {"name": BAD}),
        engine.trigger("steps", {"n": 2}),
        return_exceptions=True,
    )
    assert isinstance(results[1], stepstone.InvalidInput)
    for result in (results[0], results[2]):
        assert isinstance(result, stepstone.TriggerResult)
        assert (await engine.wait(result.id, timeout=10)).status == "completed"


async def test_log_and_progress_text_is_stored_escaped_and_other_runs_are_untouched(engine: Engine) -> None:
    others = [await engine.trigger("steps", {"n": i}) for i in range(2)]
    logged = await engine.trigger("logs")
    done = await engine.wait(logged.id, timeout=10)
    assert done.status == "completed", done.error
    escaped = "name-\\udc80"
    assert done.progress == Progress(1, 2, f"read {escaped}")
    [log] = [e async for e in _events(engine, logged.id) if e.type == "log:write"]
    assert log.data["message"] == f"opening {escaped}"
    assert log.data["data"] == {"path": escaped, "nested": {escaped: [escaped]}}
    for run in others:
        assert (await engine.wait(run.id, timeout=10)).status == "completed"
    bodies: list[str] = engine.bodies  # type: ignore[attr-defined]
    assert sorted(bodies) == sorted(f"{run.id}:{i}" for run in others for i in range(3)), "a step body ran twice"


async def test_an_output_holding_a_lone_surrogate_fails_the_run_once(engine: Engine) -> None:
    run = await engine.trigger("bad-output")
    done = await engine.wait(run.id, timeout=10)
    assert done.status == "failed" and done.attempt == 1
    assert "InvalidOutput" in (done.error or "") and "lone surrogate" in (done.error or "")
    await asyncio.sleep(0.3)  # a crash loop would re-run it within a few polls
    assert (await engine.get_run(run.id)) == done


async def test_a_step_result_holding_a_lone_surrogate_fails_that_step_only(engine: Engine) -> None:
    run = await engine.trigger("bad-step")
    done = await engine.wait(run.id, timeout=10)
    assert done.status == "completed"
    assert "lone surrogate" in done.output["caught"]
    [step] = await engine.get_steps(run.id)
    assert step.status == "failed" and "lone surrogate" in (step.error or "")


async def test_an_error_message_holding_a_lone_surrogate_is_stored_escaped(engine: Engine) -> None:
    run = await engine.trigger("bad-file")
    done = await engine.wait(run.id, timeout=10)
    assert done.status == "failed"
    assert "FileNotFoundError" in (done.error or "") and "name-\\udc80" in (done.error or "")


async def test_a_streamed_value_holding_a_lone_surrogate_fails_the_run(engine: Engine) -> None:
    run = await engine.trigger("bad-stream")
    done = await engine.wait(run.id, timeout=10)
    assert done.status == "failed" and "stream item 1" in (done.error or "")
    assert (await engine.snapshot(run.id)).items == ["fine"]


async def _events(engine: Engine, run_id: str) -> AsyncIterator[Event]:
    async for event in engine.subscribe(run_id):
        yield event


class RefusingStore(MemoryStore):
    """Refuses (with a non-stepstone error, as a real backend might) any event write holding a marker."""

    async def append_events(
        self, run_id: str, epoch: int | None, events: Sequence[NewEvent], progress: Progress | None = None
    ) -> list[Event]:
        if any("poison" in str(e.data) for e in events):
            raise ValueError("the backend refused this value")
        return await super().append_events(run_id, epoch, events, progress)


async def test_a_run_whose_events_cannot_be_written_ends_failed_not_running() -> None:
    engine = stepstone.create_engine(RefusingStore(), polling_interval=0.05, heartbeat_interval=0.05,
                                     stale_threshold=1.0, event_linger=0.01)  # fmt: skip
    gate = asyncio.Event()

    async def poisoned(step: stepstone.Step, payload: Any) -> Any:
        step.log.info("poison")  # flushed in the background after the linger, and refused
        await gate.wait()  # never set: only the failed write can end this run
        return None

    engine.register(stepstone.define_job("poisoned", poisoned))
    async with engine:
        run = await engine.trigger("poisoned")
        done = await engine.wait(run.id, timeout=10)
    assert done.status == "failed"
    assert "could not be stored" in (done.error or "") and "the backend refused this value" in (done.error or "")


async def test_progress_must_be_finite_and_log_data_keeps_nan_as_text(engine: Engine) -> None:
    seen: dict[str, Any] = {}

    async def numbers(step: stepstone.Step, payload: Any) -> Any:
        for bad in (float("nan"), float("inf"), True, "3"):
            try:
                step.progress(bad)
            except ValueError as exc:
                seen[repr(bad)] = str(exc)
        step.log.info("measured", ratio=float("nan"), limit=float("-inf"))
        return None

    engine.register(stepstone.define_job("numbers", numbers))
    run = await engine.trigger("numbers")
    assert (await engine.wait(run.id, timeout=10)).status == "completed"
    assert sorted(seen) == sorted(["nan", "inf", "True", "'3'"])
    assert all("must be a finite number" in message for message in seen.values())
    [log] = [e async for e in _events(engine, run.id) if e.type == "log:write"]
    assert log.data["data"] == {"ratio": "nan", "limit": "-inf"}
