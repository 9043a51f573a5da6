"""The ``step`` object a job receives. Stdlib + asyncio only.

``await step.run(name, fn)`` is the unit of durability: the first time, ``fn`` runs and its JSON
result is recorded; when the run resumes, the recorded result is returned and ``fn`` is not called.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ._errors import StepResultNotSerializable
from ._models import Progress, Run, StepRecord
from ._util import error_text, escape_text, escape_unencodable, json_copy, now, unencodable
from .stores._contract import NewEvent

__all__ = ["Step", "StepHost", "StepLogger", "jsonable"]


class StepHost(Protocol):
    """What a :class:`Step` needs from the execution it belongs to, and all it may do to it."""

    @property
    def run(self) -> Run: ...

    @property
    def current_step(self) -> str | None:
        """The step whose body is running now, or None outside any step body."""

    def open_step(self, name: str) -> tuple[int, StepRecord | None]:
        """Claim ``name`` in this execution: its index and its recorded outcome (None if none).
        Raises :class:`~stepstone.DuplicateStepError` for a name already claimed."""

    def inside(self, name: str) -> AbstractContextManager[None]:
        """While the body of step ``name`` runs (events it emits are new, never replayed)."""

    def emit(self, type: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        """Buffer an event for the run's log."""

    async def commit_step(self, record: StepRecord, event: NewEvent) -> None:
        """Write a step's outcome with its event and everything buffered, fenced."""


def jsonable(value: Any) -> Any:
    """Log data is best effort: anything JSON cannot hold is written as its ``repr`` (NaN and
    Infinity too, as ``"nan"``, ``"inf"``), and a lone surrogate (not valid Unicode) as its
    ``\\udXXX`` escape."""
    plain = json.loads(json.dumps(value, default=repr, ensure_ascii=False), parse_constant=_constant)
    return escape_unencodable(plain)


def _constant(name: str) -> str:
    return {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[name]


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"step.progress: {name} must be a finite number, not {value!r}")
    return value


class StepLogger:
    """``step.log.info / warn / error(message, **data)``: structured ``log:write`` events."""

    def __init__(self, host: StepHost) -> None:
        self._ex = host

    def _write(self, level: str, message: str, data: dict[str, Any]) -> None:
        self._ex.emit(
            "log:write",
            {
                "level": level,
                "message": escape_text(str(message)),
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

    def __init__(self, host: StepHost) -> None:
        self._ex = host
        self.log = StepLogger(host)

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
        if not isinstance(name, str) or not name or unencodable(name) is not None:
            raise ValueError(f"a step name must be a non-empty string of valid Unicode text, not {name!r}")
        index, recorded = ex.open_step(name)
        if recorded is not None and recorded.status == "completed":
            return copy.deepcopy(recorded.output)
        started = now()
        ex.emit("step:start", {"name": name, "index": index})
        try:
            with ex.inside(name):
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail(name, index, started, error_text(exc))
            raise
        try:
            value = json_copy(result)
        except (TypeError, ValueError) as exc:
            err = StepResultNotSerializable(
                f"step {name!r} returned a {type(result).__name__}, which is not JSON-serialisable: {exc}"
            )
            await self._fail(name, index, started, escape_text(str(err)))
            raise err from exc
        done = now()
        record = StepRecord(ex.run.id, name, index, "completed", value, None, started, done)
        event = NewEvent(
            "step:complete", {"name": name, "index": index, "durationMs": round((done - started) * 1000, 3)}, done
        )
        await ex.commit_step(record, event)
        return value

    async def _fail(self, name: str, index: int, started: float, error: str) -> None:
        done = now()
        record = StepRecord(self._ex.run.id, name, index, "failed", None, error, started, done)
        event = NewEvent("step:fail", {"name": name, "index": index, "error": error}, done)
        await self._ex.commit_step(record, event)

    def progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; stored on the run and written as a ``run:progress`` event. ``current``
        and ``total`` are finite numbers (a ValueError says so at once, in the job)."""
        current, total = _finite("current", current), None if total is None else _finite("total", total)
        progress = Progress(current, total, None if message is None else escape_text(str(message)))
        self._ex.emit("run:progress", {**progress.to_json(), "step": self._ex.current_step}, progress)
