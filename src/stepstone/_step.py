"""The ``step`` object a job receives. Stdlib + asyncio only.

``await step.run(name, fn)`` is the unit of durability: the first time, ``fn`` runs and its JSON
result is recorded; when the run resumes, the recorded result is returned and ``fn`` is not called.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._errors import DuplicateStepError, StepResultNotSerializable
from ._models import Progress, StepRecord
from ._store import NewEvent
from ._util import dumps, loads, now

if TYPE_CHECKING:
    from ._execution import Execution

__all__ = ["Step", "StepLogger", "error_text", "jsonable"]


def error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def jsonable(value: Any) -> Any:
    """Log data is best effort: anything JSON cannot hold is written as its ``repr``."""
    return json.loads(json.dumps(value, default=repr, ensure_ascii=False))


class StepLogger:
    """``step.log.info / warn / error(message, **data)``: structured ``log:write`` events."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution

    def _write(self, level: str, message: str, data: dict[str, Any]) -> None:
        self._ex.emit(
            "log:write",
            {
                "level": level,
                "message": str(message),
                "data": jsonable(data) if data else None,
                "step": self._ex.current_step,
            },
        )

    def info(self, message: str, **data: Any) -> None:
        self._write("info", message, data)

    def warn(self, message: str, **data: Any) -> None:
        self._write("warn", message, data)

    warning = warn

    def error(self, message: str, **data: Any) -> None:
        self._write("error", message, data)


class Step:
    """Passed to every job as its first argument. Not created by users."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        self.log = StepLogger(execution)

    @property
    def run_id(self) -> str:
        return self._ex.run.id

    @property
    def job_name(self) -> str:
        return self._ex.run.job_name

    @property
    def attempt(self) -> int:
        return self._ex.run.attempt

    async def run(self, name: str, fn: Callable[[], Any] | Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn`` (sync or async, no arguments) once per run and return its JSON result.

        The result is returned as stored (a JSON round trip: tuples come back as lists), so the
        first run and a resume see the same value.
        """
        ex = self._ex
        if not isinstance(name, str) or not name:
            raise ValueError(f"a step name must be a non-empty string, not {name!r}")
        if name in ex.step_names:
            raise DuplicateStepError(
                f"step {name!r} was already run in this execution of run {ex.run.id!r}; "
                "step names must be unique within a run (add an index for loops: f'item-{i}')"
            )
        ex.step_names.add(name)
        index = len(ex.step_names) - 1
        cached = ex.cached_steps.get(name)
        if cached is not None and cached.status == "completed":
            return copy.deepcopy(cached.output)
        started = now()
        ex.current_step = name
        ex.emit("step:start", {"name": name, "index": index})
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(name, index, started, error_text(exc))
            raise
        finally:
            ex.current_step = None
        try:
            value = loads(dumps(result))
        except (TypeError, ValueError) as exc:
            err = StepResultNotSerializable(
                f"step {name!r} returned a {type(result).__name__}, which is not JSON-serialisable: {exc}"
            )
            await self._fail(name, index, started, str(err))
            raise err from exc
        done = now()
        record = StepRecord(ex.run.id, name, index, "completed", value, None, started, done)
        event = NewEvent(
            "step:complete", {"name": name, "index": index, "durationMs": round((done - started) * 1000, 3)}, done
        )
        await ex.writer.commit_step(record, event)
        return value

    async def _fail(self, name: str, index: int, started: float, error: str) -> None:
        done = now()
        record = StepRecord(self._ex.run.id, name, index, "failed", None, error, started, done)
        event = NewEvent("step:fail", {"name": name, "index": index, "error": error}, done)
        await self._ex.writer.commit_step(record, event)

    def progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; stored on the run and written as a ``run:progress`` event."""
        progress = Progress(current, total, message)
        self._ex.emit("run:progress", {**progress.to_json(), "step": self._ex.current_step}, progress)
