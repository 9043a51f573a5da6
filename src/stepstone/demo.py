"""Demo jobs for ``python build.py serve`` (``stepstone serve --jobs stepstone.demo``).

* ``demo-steps``  — N checkpointed steps, ``delay`` seconds each, with progress and a log line per
  step. Input ``{"steps": 10, "delay": 1.0}``.
* ``demo-stream`` — a streaming job: yields the words of ``text`` one by one (``stream`` events).
  Input ``{"text": "...", "delay": 0.2}``.
* ``demo-flaky``  — fails at step ``failAt`` on its first attempt (unless ``"fail": false``); retry
  it and it resumes at that step, the earlier ones are not run again.
  Input ``{"steps": 5, "failAt": 3, "delay": 0.5, "fail": true}``.

Inputs are dataclasses, so a bad input is refused at trigger time (HTTP 422). Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._jobs import job
from ._step import Step

__all__ = ["FlakyInput", "StepsInput", "StreamInput", "demo_flaky", "demo_steps", "demo_stream"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class StepsInput:
    steps: int = 10
    delay: float = 1.0

    def __post_init__(self) -> None:
        _check(1 <= self.steps <= 1000, f"steps must be between 1 and 1000, not {self.steps}")
        _check(0 <= self.delay <= 60, f"delay must be between 0 and 60 seconds, not {self.delay}")


@dataclass
class StreamInput:
    text: str = "Durable streams survive reloads, restarts and dropped connections, one token at a time."
    delay: float = 0.2

    def __post_init__(self) -> None:
        _check(0 < len(self.text) <= 100_000, "text must be 1 to 100000 characters")
        _check(0 <= self.delay <= 10, f"delay must be between 0 and 10 seconds, not {self.delay}")


@dataclass
class FlakyInput:
    steps: int = 5
    failAt: int = 3  # camelCase: the name on the wire
    delay: float = 0.5
    fail: bool = True

    def __post_init__(self) -> None:
        _check(1 <= self.steps <= 1000, f"steps must be between 1 and 1000, not {self.steps}")
        _check(1 <= self.failAt <= self.steps, f"failAt must be between 1 and steps ({self.steps})")
        _check(0 <= self.delay <= 60, f"delay must be between 0 and 60 seconds, not {self.delay}")


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
