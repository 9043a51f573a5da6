"""(Re)record the golden histories in this folder.

Run from the repository root::

    .venv/bin/python -m tests.engine.histories.record            # rewrite every history
    .venv/bin/python -m tests.engine.histories.record squares-*  # only those matching a pattern
    .venv/bin/python -m tests.engine.histories.record --check    # exit 1 if a recording differs

Each history is recorded on a memory store in two phases. First the job runs until it is
interrupted: the engine is stopped while the job is paused at a checkpoint (``engine.stop()`` hands
the run back to ``pending``), or the run fails. What the store holds then (the event log and the
step records) is the ``interrupted`` part. Then a second engine resumes the run (after
``engine.retry`` for a failed one) to completion: its whole log, its outcome and the step bodies
that ran the second time are the ``expected`` part. ``tests/engine/test_replay.py`` loads the
interrupted part into a fresh store and checks that a resume writes exactly the expected log.

Re-record only on purpose (a deliberate change to the engine's events or to a job in ``jobs.py``),
and review the diff: the histories are the specification of how a run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stepstone
from stepstone import MemoryStore

from .jobs import JOBS, PROBE, normalize

HERE = Path(__file__).resolve().parent
TIMING: dict[str, Any] = {"polling_interval": 0.05, "heartbeat_interval": 0.05, "stale_threshold": 1.0}
BOUND = 10.0


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    job: str
    input: Any
    pause_at: str | None = None  # stop the engine when the job reaches this checkpoint
    failing: tuple[str, ...] = ()  # step bodies that fail in the first phase
    resume: str = "restart"  # "restart": a new engine claims the pending run; "retry": engine.retry first


SPECS = [
    Spec(
        "plain-steps-interrupted-after-step-2",
        "Four plain steps; the engine stopped while the job waited after step 2 of 4. A resume "
        "returns steps one and two from their records and runs only three and four.",
        "four-steps",
        {"n": 1},
        pause_at="after-two",
    ),
    Spec(
        "job-level-logs-and-progress-interrupted",
        "step.log and step.progress called by the job outside any step, interrupted after step 2 "
        "of 4. The job re-runs from the top on resume, so it emits the early logs and progress "
        "again; the engine matches them by position against the log and does not write them twice.",
        "chatty",
        {"items": 4},
        pause_at="after-two",
    ),
    Spec(
        "streaming-interrupted-after-3-of-6",
        "An async-generator job yielding six values (one step each); interrupted after the third "
        "yield. On resume the first three stream events are not written again and only the last "
        "three squares are computed.",
        "squares",
        {"count": 6},
        pause_at="after-yield-2",
    ),
    Spec(
        "failed-step-then-retry",
        "Step two failed (step:fail, then run:fail). The history ends there; the test calls "
        "engine.retry, and the run resumes from the failed step: one is not run again.",
        "flaky",
        {"start": "a"},
        failing=("two",),
        resume="retry",
    ),
    Spec(
        "interrupted-inside-a-step-body",
        "The engine stopped while step three's body was running: its step:start is in the log but "
        "no outcome. A step's body runs at least once, so on resume three runs again (a second "
        "step:start) and then four.",
        "slow-third-step",
        {},
        pause_at="inside-three",
    ),
]


def engine_on(store: MemoryStore, job: str) -> stepstone.Engine:
    engine = stepstone.create_engine(store, **TIMING)
    engine.register(JOBS[job])
    return engine


async def state(store: MemoryStore, run_id: str) -> tuple[stepstone.Run, list[dict[str, Any]], list[dict[str, Any]]]:
    run = await store.get_run(run_id)
    assert run is not None
    events = [normalize(e) for e in await store.read_events(run_id, 0, 10_000)]
    steps = [
        {"name": s.name, "index": s.index, "status": s.status, "output": s.output, "error": s.error}
        for s in await store.get_steps(run_id)
    ]
    return run, events, steps


async def record(spec: Spec) -> dict[str, Any]:
    job = JOBS[spec.job]
    store = MemoryStore()

    PROBE.reset(pause_at=spec.pause_at, failing=spec.failing)
    first = engine_on(store, spec.job)
    async with first:
        run_id = (await first.trigger(spec.job, spec.input)).id
        if spec.pause_at is not None:
            await asyncio.wait_for(PROBE.paused.wait(), BOUND)
        else:
            await first.wait(run_id, timeout=BOUND)
    run, events, steps = await state(store, run_id)
    assert run.status == ("failed" if spec.resume == "retry" else "pending"), run.status
    interrupted = {"status": run.status, "events": events, "steps": steps}

    PROBE.reset()
    second = engine_on(store, spec.job)
    async with second:
        if spec.resume == "retry":
            await second.retry(run_id)
        final = await second.wait(run_id, timeout=BOUND)
    run, events, _ = await state(store, run_id)
    assert events[: len(interrupted["events"])] == interrupted["events"]
    return {
        "description": spec.description,
        "job": spec.job,
        "version": job.version,
        "input": spec.input,
        "resume": spec.resume,
        "interrupted": interrupted,
        "expected": {
            "status": final.status,
            "output": final.output,
            "progress": final.progress.to_json() if final.progress else None,
            "stepBodiesRun": PROBE.ran,
            "events": events,
        },
    }


#: Objects written on one line each (an event, a step record), so a history reads like a log.
ONE_LINE = ({"seq", "type", "data"}, {"name", "index", "status", "output", "error"})


def render(value: Any, indent: str = "") -> str:
    """JSON indented by two spaces, except that events and step records take one line each."""
    inner = indent + "  "
    if isinstance(value, dict) and value and set(value) not in ONE_LINE:
        items = [f"{inner}{json.dumps(k)}: {render(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + render(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def text(history: dict[str, Any]) -> str:
    out = render(history) + "\n"
    assert json.loads(out) == history
    return out


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="(Re)record the golden histories.")
    parser.add_argument("patterns", nargs="*", help="history names (glob patterns); default: all")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    specs = [s for s in SPECS if not args.patterns or any(fnmatch.fnmatch(s.name, p) for p in args.patterns)]
    differ = 0
    for spec in specs:
        path = HERE / f"{spec.name}.json"
        new = text(await record(spec))
        if args.check:
            same = path.exists() and path.read_text() == new
            differ += not same
            print(f"{'same' if same else 'DIFFERS'}  {path.name}")
        else:
            path.write_text(new)
            print(f"wrote  {path.name}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
