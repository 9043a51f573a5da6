"""The ``step`` object a job receives, and the workflow primitives it offers. Stdlib + asyncio only.

``await step.run(name, fn)`` is the unit of durability: the first time, ``fn`` runs and its JSON
result is recorded; when the run resumes, the recorded result is returned and ``fn`` is not called.
``sleep``, ``sleep_until``, ``wait_for_event`` and ``invoke`` are steps too: what they decide (the
wake time, the deadline, the child run) and what they end with (the event's data, the child's
output) is recorded, so a resume gets the same answer. While one of them waits, the execution
*parks* it; once everything the job awaits is parked, the run is suspended and holds no worker.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, NoReturn, Protocol

from ._clock import Clock
from ._errors import ChildRunFailed, InvalidInput, RunCancelled, StepFailed, StepResultNotSerializable, WaitTimeout
from ._models import Progress, Run, StepRecord, Wait
from ._retry import Backoff, check_retries, retry_delay
from ._util import error_text, escape_text, escape_unencodable, json_copy, unencodable
from .stores._contract import NewEvent

__all__ = ["Step", "StepHost", "StepLogger", "jsonable"]

#: A retry backoff this short is waited out in place; a longer one suspends the run durably.
MOMENT = 0.5


class StepHost(Protocol):
    """What a :class:`Step` needs from the execution it belongs to, and all it may do to it."""

    @property
    def run(self) -> Run: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def current_step(self) -> str | None:
        """The step whose body is running now, or None outside any step body."""

    def open_step(self, name: str) -> tuple[int, StepRecord | None]:
        """Claim ``name`` in this execution: its index and its record (None if none).
        Raises :class:`~stepstone.DuplicateStepError` for a name already claimed."""

    def body(self, name: str, attempt: int = 1) -> AbstractContextManager[None]:
        """While the body of step ``name`` runs: events it emits are new (never replayed), the run
        cannot suspend, a cancellation interrupts it (see :meth:`cancelled_body`), and it is traced."""

    def trace_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """Tell the tracer (if any) what happened: a step ``retry``."""

    def busy(self) -> AbstractContextManager[None]:
        """While a primitive does I/O: the run cannot suspend."""

    def cancelled_body(self) -> bool:
        """Called on ``CancelledError`` in a body: True (and the task un-cancelled) when that was
        the run's cancellation reaching the body, which then raises ``RunCancelled``."""

    def check_cancel(self) -> None:
        """Raise ``RunCancelled`` if the run's cancellation was asked and not yet raised."""

    def emit(self, type: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        """Buffer an event for the run's log."""

    async def commit_step(self, record: StepRecord, event: NewEvent) -> None:
        """Write a step's record with its event and everything buffered, fenced."""

    async def take_event(self, name: str, record: StepRecord, event: NewEvent) -> tuple[bool, Any]:
        """Take the oldest queued event ``name`` and complete ``record`` with it, or (False, None)."""

    async def park(self, wait: Wait) -> NoReturn:
        """Wait for ``wait`` without holding the worker: never returns; the run is suspended (and
        this execution ends), or ``RunCancelled`` is raised here."""

    async def start_child(self, name: str, job: str, input: Any) -> Run:
        """The child run of step ``name`` (created the first time)."""

    async def child(self, child_id: str) -> Run | None:
        """A child run of this run as it is now (None if it was deleted)."""


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
        self._event_waits: dict[str, int] = {}

    @property
    def run_id(self) -> str:
        return self._ex.run.id

    @property
    def job_name(self) -> str:
        return self._ex.run.job_name

    @property
    def attempt(self) -> int:
        """The run's attempt: 1, then + 1 for each retry (by hand or the job's ``retries``)."""
        return self._ex.run.attempt

    def _now(self) -> float:
        return self._ex.clock.now()

    def _open(self, name: str, what: str = "a step name") -> tuple[int, StepRecord | None]:
        if not isinstance(name, str) or not name or unencodable(name) is not None:
            raise ValueError(f"{what} must be a non-empty string of valid Unicode text, not {name!r}")
        index, recorded = self._ex.open_step(name)
        if recorded is not None and recorded.status != "completed" and recorded.run_attempt != self._ex.run.attempt:
            recorded = None  # an attempt of an earlier run attempt: this one starts afresh
        return index, recorded

    async def _record(
        self, name: str, index: int, status: Any, output: Any, type: str, data: dict[str, Any], **fields: Any
    ) -> None:
        at = self._now()
        if "started" in fields and type in ("step:fail", "step:cancel"):
            data = {**data, "durationMs": round((at - fields["started"]) * 1000, 3)}
        record = StepRecord(
            self._ex.run.id, name, index, status, output, fields.pop("error", None), fields.pop("started", at), at,
            fields.pop("attempt", 1), self._ex.run.attempt, fields.pop("retry_at", None),
        )  # fmt: skip
        await self._ex.commit_step(record, NewEvent(type, {"name": name, "index": index, **data}, at))

    # -- step.run ------------------------------------------------------------------------------
    async def run(
        self,
        name: str,
        fn: Callable[[], Any] | Callable[[], Awaitable[Any]],
        *,
        retries: int = 0,
        backoff: Backoff = 1.0,
    ) -> Any:
        """Run ``fn`` (sync or async, no arguments) once per run and return its JSON result.

        The result is returned as stored (a JSON round trip: tuples come back as lists), so the
        first run and a resume see the same value. With ``retries=N`` a failing ``fn`` is tried up
        to N more times, ``backoff`` seconds apart (doubling each time) or ``backoff(attempt)``;
        each failure is logged as ``step:retry``, and a wait longer than a moment suspends the run
        (it holds no worker and survives a restart). When the attempts are used up the error is
        raised (``StepFailed`` with its text, if a later replay reaches the step again).
        """
        check_retries(f"step {name!r}", retries, backoff)
        index, recorded = self._open(name)
        attempt = 1
        if recorded is not None:
            if recorded.status == "completed":
                return copy.deepcopy(recorded.output)
            if recorded.retry_at is None:
                raise StepFailed(f"step {name!r} failed: {recorded.error}", name, recorded.error)
            attempt = recorded.attempt + 1
            if self._now() < recorded.retry_at:
                self._ex.check_cancel()
                await self._ex.park(Wait("retry", until=recorded.retry_at))
        self._ex.check_cancel()
        while True:
            started = self._now()
            self._ex.emit("step:start", {"name": name, "index": index, "attempt": attempt})
            try:
                value = await self._attempt(name, fn, attempt)
            except RunCancelled as cancelled:  # recorded as failed (it would run again), shown as cancelled
                await self._record(name, index, "failed", None, "step:cancel", {"error": error_text(cancelled)},
                                   error=error_text(cancelled), started=started, attempt=attempt)  # fmt: skip
                raise
            except Exception as exc:
                error = escape_text(str(exc)) if isinstance(exc, StepResultNotSerializable) else error_text(exc)
                if attempt > retries:
                    await self._record(name, index, "failed", None, "step:fail", {"error": error, "attempt": attempt},
                                       error=error, started=started, attempt=attempt)  # fmt: skip
                    raise
                delay = retry_delay(backoff, attempt)
                retry_at = self._now() + delay
                self._ex.trace_event("retry", {"step": name, "attempt": attempt, "error": error, "delay": delay})
                await self._record(
                    name, index, "failed", None, "step:retry",
                    {"attempt": attempt, "error": error, "nextAttemptAt": retry_at},
                    error=error, started=started, attempt=attempt, retry_at=retry_at,
                )  # fmt: skip
                attempt += 1
                if delay > MOMENT:
                    await self._ex.park(Wait("retry", until=retry_at))
                with self._ex.busy():
                    await self._ex.clock.sleep(delay)
                self._ex.check_cancel()
                continue
            done = self._now()
            duration = round((done - started) * 1000, 3)
            await self._record(name, index, "completed", value, "step:complete", {"durationMs": duration},
                               started=started, attempt=attempt)  # fmt: skip
            return value

    async def _attempt(self, name: str, fn: Callable[[], Any] | Callable[[], Awaitable[Any]], attempt: int) -> Any:
        try:
            with self._ex.body(name, attempt):
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            if self._ex.cancelled_body():
                raise RunCancelled(f"run {self._ex.run.id!r} was cancelled during step {name!r}") from None
            raise
        try:
            return json_copy(result)
        except (TypeError, ValueError) as exc:
            raise StepResultNotSerializable(
                f"step {name!r} returned a {type(result).__name__}, which is not JSON-serialisable: {exc}"
            ) from exc

    # -- sleeping ------------------------------------------------------------------------------
    async def sleep(self, name: str, seconds: float) -> None:
        """Sleep ``seconds`` durably: the run is ``suspended`` meanwhile (no worker, no lease) and
        wakes on time even after a crash or a restart; the clock never restarts."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"step.sleep: seconds must be a finite number, not {seconds!r}")
        await self._sleep(name, lambda: self._now() + max(seconds, 0.0))

    async def sleep_until(self, name: str, timestamp: float) -> None:
        """Sleep until ``timestamp`` (epoch seconds), durably, as :meth:`sleep`."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
            raise ValueError(f"step.sleep_until: the time must be epoch seconds, not {timestamp!r}")
        await self._sleep(name, lambda: float(timestamp))

    async def _sleep(self, name: str, until: Callable[[], float]) -> None:
        index, recorded = self._open(name)
        if recorded is not None and recorded.status == "completed":
            return
        self._ex.check_cancel()
        if recorded is None:
            wake = until()
            with self._ex.busy():
                await self._record(name, index, "waiting", {"until": wake}, "step:start",
                                   {"kind": "sleep", "until": wake})  # fmt: skip
        else:
            wake = float(recorded.output["until"])
        if self._now() < wake:
            await self._ex.park(Wait("sleep", until=wake))
        with self._ex.busy():
            await self._record(name, index, "completed", {"until": wake}, "step:complete", {"kind": "sleep"})

    # -- events --------------------------------------------------------------------------------
    async def wait_for_event(self, name: str, timeout: float | None = None) -> Any:
        """The data of the oldest event ``name`` sent to this run (``engine.send_event``) that no
        earlier wait took, waiting for one if none is queued (the run is ``suspended`` meanwhile).
        With ``timeout`` (seconds, counted from the first time this wait is reached), raises
        :class:`~stepstone.WaitTimeout` when none arrived in time."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout)
        ):
            raise ValueError(f"step.wait_for_event: timeout must be seconds or None, not {timeout!r}")
        count = self._event_waits.get(name, 0)
        self._event_waits[name] = count + 1
        step_name = f"event:{name}" if count == 0 else f"event:{name}#{count + 1}"
        index, recorded = self._open(step_name, "an event name")
        if recorded is not None and recorded.status == "completed":
            if recorded.output.get("timedOut"):
                raise WaitTimeout(f"no event {name!r} arrived for run {self.run_id!r} in time")
            return copy.deepcopy(recorded.output.get("data"))
        self._ex.check_cancel()
        if recorded is None:
            deadline = None if timeout is None else self._now() + max(timeout, 0.0)
            with self._ex.busy():
                await self._record(step_name, index, "waiting", {"event": name, "deadline": deadline}, "step:start",
                                   {"kind": "event", "event": name, "deadline": deadline})  # fmt: skip
        else:
            deadline = recorded.output.get("deadline")
        at = self._now()
        taken = StepRecord(self.run_id, step_name, index, "completed", None, None, at, at, 1, self._ex.run.attempt)
        done = NewEvent("step:complete", {"name": step_name, "index": index, "kind": "event", "event": name}, at)
        with self._ex.busy():
            found, data = await self._ex.take_event(name, taken, done)
        if found:
            return copy.deepcopy(data)
        if deadline is not None and self._now() >= deadline:
            error = f"WaitTimeout: no event {name!r} arrived before {deadline}"
            with self._ex.busy():
                await self._record(step_name, index, "completed", {"event": name, "timedOut": True}, "step:fail",
                                   {"kind": "event", "error": error})  # fmt: skip
            raise WaitTimeout(f"no event {name!r} arrived for run {self.run_id!r} in time")
        await self._ex.park(Wait("event", until=deadline, events=(name,)))

    # -- child runs ----------------------------------------------------------------------------
    async def invoke(self, name: str, job: str, input: Any = None) -> Any:
        """Run job ``job`` as a child run (created once per parent and step ``name``) and return
        its output; the parent is ``suspended`` until the child finishes. Raises
        :class:`~stepstone.ChildRunFailed` when the child fails or is cancelled. Many invokes (and
        steps) may be awaited together with ``asyncio.gather``."""
        index, recorded = self._open(name)
        if recorded is not None and recorded.status == "completed":
            return copy.deepcopy(recorded.output.get("output"))
        if recorded is not None and recorded.status == "failed":
            child_id = str((recorded.output or {}).get("childId", ""))
            raise ChildRunFailed(f"child run {child_id} of step {name!r} failed: {recorded.error}", child_id,
                                 recorded.error)  # fmt: skip
        self._ex.check_cancel()
        if recorded is None:
            try:
                json_copy(input)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"input for child job {job!r} of step {name!r} cannot be stored: {exc}") from exc
            with self._ex.busy():
                child = await self._ex.start_child(name, job, input)
                await self._record(name, index, "waiting", {"childId": child.id}, "step:start",
                                   {"kind": "invoke", "job": job, "childId": child.id})  # fmt: skip
            child_id = child.id
        else:
            child_id = str(recorded.output["childId"])
        with self._ex.busy():
            found = await self._ex.child(child_id)
        if found is not None and not found.is_terminal:
            await self._ex.park(Wait("children", children=(child_id,)))
        if found is not None and found.status == "completed":
            with self._ex.busy():
                await self._record(name, index, "completed", {"childId": child_id, "output": found.output},
                                   "step:complete", {"kind": "invoke", "childId": child_id})  # fmt: skip
            return copy.deepcopy(found.output)
        error = "the child run was deleted" if found is None else (found.error or found.status)
        with self._ex.busy():
            await self._record(name, index, "failed", {"childId": child_id}, "step:fail",
                               {"kind": "invoke", "childId": child_id, "error": error}, error=error)  # fmt: skip
        raise ChildRunFailed(f"child run {child_id} of step {name!r} failed: {error}", child_id, error)

    # -- progress ------------------------------------------------------------------------------
    def progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; stored on the run and written as a ``run:progress`` event. ``current``
        and ``total`` are finite numbers (a ValueError says so at once, in the job)."""
        current, total = _finite("current", current), None if total is None else _finite("total", total)
        progress = Progress(current, total, None if message is None else escape_text(str(message)))
        self._ex.emit("run:progress", {**progress.to_json(), "step": self._ex.current_step}, progress)
