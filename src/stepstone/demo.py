"""Demo jobs for ``python build.py serve`` (``stepstone serve --jobs stepstone.demo``).

* ``demo-steps``  — N checkpointed steps, ``delay`` seconds each, with progress and a log line per
  step. Input ``{"steps": 10, "delay": 1.0}``.
* ``demo-stream`` — a streaming job: yields the words of ``text`` one by one (``stream`` events).
  Input ``{"text": "...", "delay": 0.2}``.
* ``demo-flaky``  — fails at step ``failAt`` on its first attempt (unless ``"fail": false``); retry
  it and it resumes at that step, the earlier ones are not run again.
  Input ``{"steps": 5, "failAt": 3, "delay": 0.5, "fail": true}``.
* ``demo-approval`` — a workflow that waits: a ``prepare`` step (``delay`` s), a durable sleep
  (``sleep`` s, the run is ``suspended``), then ``step.wait_for_event("approval", timeout=…)``
  (suspended again until ``stepstone send-event RUN approval --data '{"ok": true, "by": "ann"}'``
  or the dashboard's Send event; after ``timeout`` s it gives up), then an ``apply`` step.
  Input ``{"delay": 1, "sleep": 5, "timeout": 600}``.

Inputs are dataclasses with a ``model_validate`` that says what is wrong in plain words
(``steps must be a whole number from 1 to 1000, not 'abc'``), so a bad input is refused at
trigger time (HTTP 422) with the message the pages and the CLI show; no input means every
default. Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ._errors import WaitTimeout
from ._jobs import job
from ._step import Step

__all__ = [
    "ApprovalInput", "FlakyInput", "StepsInput", "StreamInput",
    "demo_approval", "demo_flaky", "demo_steps", "demo_stream",
]  # fmt: skip


class _Input:
    """Friendly validation for the demo inputs, the same words as the local page's
    (``steps must be a whole number from 1 to 1000, not 'abc'``): the engine calls
    ``model_validate`` with the JSON payload (``None`` means every default)."""

    EXAMPLE: ClassVar[str]

    @classmethod
    def _fields(cls, payload: Any) -> dict[str, Any]:
        if payload is None:
            return {}
        if not isinstance(payload, Mapping):
            raise ValueError(f"expected an object like {cls.EXAMPLE}, not {payload!r}")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(str(key) for key in payload if key not in known)
        if unknown:
            raise ValueError(f"unknown field {', '.join(map(repr, unknown))}; expected {', '.join(known)}")
        return dict(payload)


def _whole(values: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = values.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _seconds(values: Mapping[str, Any], name: str, default: float, high: float) -> float:
    value = values.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise ValueError(f"{name} must be a number of seconds from 0 to {high:g}, not {value!r}")
    return float(value)


@dataclass
class StepsInput(_Input):
    steps: int = 10
    delay: float = 1.0

    EXAMPLE: ClassVar[str] = '{"steps": 10, "delay": 1}'

    @classmethod
    def model_validate(cls, payload: Any) -> StepsInput:
        values = cls._fields(payload)
        return cls(_whole(values, "steps", 10, 1, 1000), _seconds(values, "delay", 1.0, 60))


@dataclass
class StreamInput(_Input):
    text: str = "Durable streams survive reloads, restarts and dropped connections, one token at a time."
    delay: float = 0.2

    EXAMPLE: ClassVar[str] = '{"text": "hello world", "delay": 0.2}'

    @classmethod
    def model_validate(cls, payload: Any) -> StreamInput:
        values = cls._fields(payload)
        text = values.get("text", cls.text)
        if not isinstance(text, str) or not 0 < len(text) <= 100_000:
            raise ValueError(f"text must be a string of 1 to 100000 characters, not {text!r:.60}")
        return cls(text, _seconds(values, "delay", 0.2, 10))


@dataclass
class FlakyInput(_Input):
    steps: int = 5
    failAt: int = 3  # camelCase: the name on the wire
    delay: float = 0.5
    fail: bool = True

    EXAMPLE: ClassVar[str] = '{"steps": 5, "failAt": 3, "delay": 0.5, "fail": true}'

    @classmethod
    def model_validate(cls, payload: Any) -> FlakyInput:
        values = cls._fields(payload)
        steps = _whole(values, "steps", 5, 1, 1000)
        fail_at = _whole(values, "failAt", min(3, steps), 1, steps)
        fail = values.get("fail", True)
        if not isinstance(fail, bool):
            raise ValueError(f"fail must be true or false, not {fail!r}")
        return cls(steps, fail_at, _seconds(values, "delay", 0.5, 60), fail)


@dataclass
class ApprovalInput(_Input):
    delay: float = 1.0
    sleep: float = 5.0
    timeout: float = 600.0

    EXAMPLE: ClassVar[str] = '{"delay": 1, "sleep": 5, "timeout": 600}'

    @classmethod
    def model_validate(cls, payload: Any) -> ApprovalInput:
        values = cls._fields(payload)
        return cls(_seconds(values, "delay", 1.0, 60), _seconds(values, "sleep", 5.0, 86400),
                   _seconds(values, "timeout", 600.0, 604800))  # fmt: skip


def _work(index: int, delay: float) -> Any:
    async def body() -> dict[str, int]:
        await asyncio.sleep(delay)
        return {"step": index}

    return body


@job("demo-steps", version="1", input=StepsInput)
async def demo_steps(step: Step, payload: StepsInput) -> dict[str, int]:
    for i in range(1, payload.steps + 1):
        await step.run(f"step-{i}", _work(i, payload.delay))
        step.progress(i, payload.steps, f"step {i} of {payload.steps}")
        step.log.info(f"finished step {i}", step=i)
    return {"steps": payload.steps}


@job("demo-stream", version="1", input=StreamInput)
async def demo_stream(step: Step, payload: StreamInput) -> AsyncIterator[str]:
    words = payload.text.split(" ")
    for i, word in enumerate(words):
        await asyncio.sleep(payload.delay)
        step.progress(i + 1, len(words))
        yield word + (" " if i < len(words) - 1 else "")


@job("demo-flaky", version="1", input=FlakyInput)
async def demo_flaky(step: Step, payload: FlakyInput) -> dict[str, int]:
    for i in range(1, payload.steps + 1):
        if i == payload.failAt and payload.fail and step.attempt == 1:
            step.log.error(f"step {i} failed on attempt 1; retry the run to resume here", step=i)
            raise RuntimeError(f"demo-flaky: step {i} failed (attempt {step.attempt}); retry to resume")
        await step.run(f"step-{i}", _work(i, payload.delay))
        step.progress(i, payload.steps, f"step {i} of {payload.steps}")
        step.log.info(f"finished step {i}", step=i, attempt=step.attempt)
    return {"steps": payload.steps, "attempts": step.attempt}


@job("demo-approval", version="1", input=ApprovalInput)
async def demo_approval(step: Step, payload: ApprovalInput) -> dict[str, Any]:
    """prepare → sleep → wait for the event ``approval`` → apply; suspended while it sleeps and waits."""
    await step.run("prepare", _work(1, payload.delay))
    step.progress(1, 3, "prepared")
    step.log.info(f"prepared; cooling down for {payload.sleep:g} s (the run is suspended meanwhile)")
    await step.sleep("cool-down", payload.sleep)
    step.progress(2, 3, "waiting for approval")
    step.log.info(f"waiting up to {payload.timeout:g} s for the event 'approval' "
                  f"(stepstone send-event {step.run_id} approval --data '{{\"ok\": true, \"by\": \"ann\"}}')")
    try:
        decision = await step.wait_for_event("approval", timeout=payload.timeout)
    except WaitTimeout:
        step.log.warning(f"no approval arrived within {payload.timeout:g} s")
        return {"approved": False, "reason": f"no answer within {payload.timeout:g} s"}
    fields = decision if isinstance(decision, dict) else {"ok": bool(decision)}
    approved = fields.get("ok", True) is not False
    await step.run("apply", _work(3, payload.delay))
    step.progress(3, 3, "approved" if approved else "rejected")
    step.log.info(f"{'approved' if approved else 'rejected'} by {fields.get('by') or 'someone'}")
    return {"approved": approved, "by": fields.get("by")}
