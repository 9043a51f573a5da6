"""The jobs of the golden histories, shared by ``record.py`` (which records them) and
``tests/engine/test_replay.py`` (which replays them). Changing a job here changes what its history
must say: re-record (see ``record.py``) and review the diff of the JSON files.

Every step body goes through :data:`PROBE`, which records which bodies ran and can pause a job at a
named checkpoint (so the recorder can stop the engine there) or make a step fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import stepstone
from stepstone import Event, Step

__all__ = ["JOBS", "PROBE", "Probe", "normalize"]

#: Event data fields that differ from one execution to the next (an owner name, a duration).
VOLATILE = frozenset({"owner", "durationMs"})


class Probe:
    """What the jobs report to and take orders from; :meth:`reset` before every recording or replay."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, pause_at: str | None = None, failing: Iterable[str] = ()) -> None:
        self.pause_at = pause_at
        self.failing = set(failing)
        self.ran: list[str] = []
        self.paused = asyncio.Event()

    def body(self, name: str, value: Any) -> Any:
        """A step body: noted as run, then returns ``value`` (or fails if ``name`` is failing)."""
        self.ran.append(name)
        if name in self.failing:
            raise RuntimeError(f"{name} failed")
        return value

    async def checkpoint(self, name: str) -> None:
        """Pause here for good when recording an interruption at ``name`` (the engine's stop
        cancels the execution); a no-op otherwise."""
        if name == self.pause_at:
            self.paused.set()
            await asyncio.Event().wait()


PROBE = Probe()


@stepstone.job("four-steps")
async def four_steps(step: Step, payload: Any) -> Any:
    a = await step.run("one", lambda: PROBE.body("one", payload["n"] + 1))
    b = await step.run("two", lambda: PROBE.body("two", a * 2))
    await PROBE.checkpoint("after-two")
    c = await step.run("three", lambda: PROBE.body("three", b + 3))
    d = await step.run("four", lambda: PROBE.body("four", c * 4))
    return {"result": d}


@stepstone.job("chatty")
async def chatty(step: Step, payload: Any) -> Any:
    """Logs and progress outside any step: re-run on resume, but written only once."""
    step.log.info("starting", items=payload["items"])
    step.progress(0, 4, "starting")
    a = await step.run("one", lambda: PROBE.body("one", 1))
    step.progress(1, 4)
    step.log.info("one done", value=a)

    def two() -> Any:
        step.log.info("inside two")  # from a step body: belongs to the step, never replayed
        return PROBE.body("two", 2)

    b = await step.run("two", two)
    step.progress(2, 4)
    await PROBE.checkpoint("after-two")
    step.log.warn("past the pause")
    c = await step.run("three", lambda: PROBE.body("three", 3))
    step.progress(3, 4)
    d = await step.run("four", lambda: PROBE.body("four", 4))
    step.progress(4, 4, "done")
    step.log.info("finished", total=a + b + c + d)
    return {"total": a + b + c + d}


@stepstone.job("squares")
async def squares(step: Step, payload: Any) -> AsyncIterator[Any]:
    """A streaming job: every yielded value is a ``stream`` event."""
    for i in range(payload["count"]):
        value = await step.run(f"square-{i}", lambda i=i: PROBE.body(f"square-{i}", i * i))
        yield {"i": i, "square": value}
        await PROBE.checkpoint(f"after-yield-{i}")


@stepstone.job("flaky")
async def flaky(step: Step, payload: Any) -> Any:
    a = await step.run("one", lambda: PROBE.body("one", payload["start"]))
    b = await step.run("two", lambda: PROBE.body("two", a + "b"))
    c = await step.run("three", lambda: PROBE.body("three", b + "c"))
    return {"word": c}


@stepstone.job("slow-third-step")
async def slow_third_step(step: Step, payload: Any) -> Any:
    a = await step.run("one", lambda: PROBE.body("one", 10))
    b = await step.run("two", lambda: PROBE.body("two", 20))

    async def three() -> Any:
        PROBE.ran.append("three")
        await PROBE.checkpoint("inside-three")
        return a + b

    c = await step.run("three", three)
    d = await step.run("four", lambda: PROBE.body("four", c + 1))
    return {"result": d}


JOBS: dict[str, stepstone.Job] = {j.name: j for j in (four_steps, chatty, squares, flaky, slow_third_step)}


def normalize(event: Event) -> dict[str, Any]:
    """An event as a history holds it: no timestamp, no volatile data fields."""
    return {"seq": event.seq, "type": event.type, "data": strip(event.data)}


def strip(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in VOLATILE}
