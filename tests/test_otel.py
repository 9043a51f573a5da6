"""stepstone.otel: a span per run attempt and per step, retries/suspensions/resumes as events, the
trigger's trace carried into every attempt — across a SIGKILL and a new process — and log records
tagged with the run and step. Uses the SDK's in-memory exporter (or a file, across processes) and
never a global TracerProvider."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import stepstone
import stepstone.otel
from stepstone.testing import TestClock

HERE = Path(__file__).resolve().parent


@pytest.fixture
def exported() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_one_trace_from_the_trigger_through_steps_retries_and_a_suspension(
    exported: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = exported
    clock = TestClock()
    engine = stepstone.create_engine("memory:", tracer=stepstone.otel.tracer(provider), clock=clock,
                                     polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)  # fmt: skip
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        logging.getLogger("app").warning("calling upstream")
        if len(attempts) < 2:
            raise ConnectionError("reset")
        return "ok"

    async def job(step: stepstone.Step, payload: Any) -> Any:
        await step.run("call", flaky, retries=2, backoff=0.0)
        await step.sleep("nap", 60)
        return await step.invoke("child", "child", 1)

    async def child(step: stepstone.Step, payload: Any) -> Any:
        return await step.run("inner", lambda: payload + 1)

    engine.register(stepstone.define_job("traced", job))
    engine.register(stepstone.define_job("child", child))
    caplog.set_level(logging.WARNING, "app")
    async with engine:
        with provider.get_tracer("app").start_as_current_span("request") as request:
            run = await engine.trigger("traced")
        while (await engine.get_run(run.id)).status != "suspended":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        clock.advance(60)
        done = await engine.wait(run.id, timeout=10)
    assert done.status == "completed" and done.output == 2
    spans = exporter.get_finished_spans()
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}, "one trace, child run included"
    runs = [s for s in spans if s.name == "run traced"]
    assert len(runs) >= 2 and all(s.parent.span_id == request.get_span_context().span_id for s in runs)
    assert runs[0].attributes["stepstone.outcome"] == "suspended"
    assert runs[-1].attributes["stepstone.outcome"] == "completed"
    assert any(e.name == "suspend" for e in runs[0].events)
    assert any(e.name == "resume" for e in runs[-1].events)
    assert any(e.name == "retry" for s in runs for e in s.events)
    calls = [s for s in spans if s.name == "step call"]
    assert [s.attributes["stepstone.step_attempt"] for s in calls] == [1, 2]
    assert calls[0].status.status_code.name == "ERROR", "the failed attempt records its exception"
    assert {s.parent.span_id for s in calls} == {runs[0].context.span_id}
    child_run = next(s for s in spans if s.name == "run child")
    assert child_run.parent.span_id in {s.context.span_id for s in runs}, "the child continues its parent's trace"
    record = next(r for r in caplog.records if r.getMessage() == "calling upstream")
    assert record.stepstone_run_id == run.id and record.stepstone_step == "call"  # type: ignore[attr-defined]


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_the_trace_continues_in_a_new_process_after_sigkill(tmp_path: Path) -> None:
    db, spans, side = tmp_path / "jobs.db", tmp_path / "spans.jsonl", tmp_path / "side.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    script = [sys.executable, str(HERE / "otel_process.py"), str(db), str(spans)]
    trigger = subprocess.run([*script, "trigger"], capture_output=True, text=True, timeout=60, env=env)
    assert trigger.returncode == 0, trigger.stderr
    run_id = trigger.stdout.strip()
    first = subprocess.Popen([*script, "work", str(side)], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while not side.exists() or "second" not in side.read_text():
        assert time.monotonic() < deadline and first.poll() is None, "the first worker never reached step 2"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    with sqlite3.connect(db) as conn:  # the second worker must not wait 30 s in step 2
        conn.execute("UPDATE runs SET input = ? WHERE id = ?", ('{"pause": 0}', run_id))
    second = subprocess.run([*script, "work", str(side)], capture_output=True, text=True, timeout=60, env=env)
    assert second.returncode == 0, second.stderr
    exported = _spans(spans)
    request = next(s for s in exported if s["name"] == "request")
    assert {s["trace"] for s in exported} == {request["trace"]}, "one trace across three processes"
    runs = [s for s in exported if s["name"] == "run traced"]
    assert len(runs) == 1 and runs[0]["pid"] != first.pid, "the killed attempt's span never ended; the new one did"
    assert runs[0]["parent"] == request["span"] and runs[0]["attributes"]["stepstone.outcome"] == "completed"
    pids = {s["pid"] for s in exported if s["name"] == "step first"}
    assert pids == {first.pid}, "step 1 was traced (and run) by the killed process only"
    assert any(s["name"] == "step second" and s["parent"] == runs[0]["span"] for s in exported)
