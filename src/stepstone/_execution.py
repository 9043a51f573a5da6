"""One execution of one claimed run: calls the job, records steps, parks it, writes the outcome.

Stdlib + asyncio only. An execution never reclaims; the worker does that. It ends in one of four
ways: the run finishes (completed, failed, cancelled), it is suspended (everything the job awaits
is parked: a sleep, an event, child runs, a retry's backoff), it is re-queued for a run-level retry,
or it is lost (a write was refused: the run was taken over). It never writes after it lost the run.

Suspension: each primitive of :class:`~stepstone._step.Step` that must wait *parks* with what it
waits for; step bodies and I/O count as work. When the job has work in flight nothing happens;
once only parked waits are left (checked a few loop turns later, so tasks that ``asyncio.gather``
has just scheduled get to run first), the execution cancels the job's task and writes the run as
``suspended`` with the union of the waits. The run re-executes from the top when one holds.

Cancellation (``engine.cancel``, here or in another process): ``RunCancelled`` is raised in the job
at every primitive it awaits (parked ones, and step bodies in flight, whose tasks are interrupted);
later steps (cleanup) run normally, but may not wait. A job caught at a plain ``await`` outside any
step gets ``asyncio.CancelledError`` there instead (its ``finally`` blocks run). However the job
then ends, the run ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from ._clock import Clock
from ._errors import DuplicateStepError, InvalidInput, InvalidOutput, RunCancelled, StaleLeaseError
from ._jobs import Job, to_jsonable, validate
from ._models import Progress, Run, StepRecord, Wait
from ._retry import retry_delay
from ._runtime import Runtime
from ._step import Step
from ._tracing import AttemptTrace, current_run, step_scope
from ._util import error_text, json_copy
from ._writer import RunWriter
from .stores._contract import NewEvent, RunFilter

__all__ = ["Execution"]

log = logging.getLogger("stepstone")

#: A streaming job writing faster than the linger flushes inline past this many buffered events.
_STREAM_FLUSH_AT = 256

#: Events the job's own code emits outside any step body. A resumed execution runs the job from the
#: top again, so the first N of each type it emits there were already written by earlier executions
#: (matched by position, as recorded steps are matched by name) and are not written twice. Events
#: from inside a step body are always new: a recorded step's body does not run again.
_REPLAYED = ("log:write", "run:progress", "stream")

#: Loop turns between "only parked waits are left" and suspending: lets just-scheduled tasks start.
_SETTLE_TURNS = 3


class Execution:
    """Runs one claimed run's job once; the :class:`~stepstone.Step` it hands the job talks back to
    it through the :class:`~stepstone._step.StepHost` methods below and nothing else."""

    def __init__(self, runtime: Runtime, run: Run, job: Job) -> None:
        self.runtime = runtime
        self.run = run
        self.job = job
        self.task: asyncio.Task[None] | None = None
        self.writer = RunWriter(
            runtime.store, run.id, run.epoch, runtime.dispatch, self._lost, runtime.event_linger, runtime.clock.now
        )
        #: Set once the run was suspended: when it may wake by time (None: only by an event/child).
        self.suspended: Wait | None = None
        self._step_names: set[str] = set()
        self._recorded: dict[str, StepRecord] = {}
        self._current_step: str | None = None
        self._earlier: dict[str, int] = {}
        self._emitted: dict[str, int] = {}
        self._write_failure: BaseException | None = None
        self._work = 0
        self._parked: dict[asyncio.Future[None], Wait] = {}
        self._settling = False
        self._suspending: Wait | None = None
        self._cancel_requested = run.cancel_requested
        self._cancel_raised = False
        self._hard_cancel = False
        self._running = False
        self._bodies: dict[asyncio.Task[Any], int] = {}
        self._interrupted: set[asyncio.Task[Any]] = set()
        self._children: dict[str, Run] | None = None
        self._trace: AttemptTrace | None = None
        #: How this execution ended: completed, failed, cancelled, suspended, or lost (taken over).
        self.outcome = "lost"
        self._error: str | None = None

    # -- the StepHost protocol ---------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def current_step(self) -> str | None:
        return self._current_step

    def open_step(self, name: str) -> tuple[int, StepRecord | None]:
        if name in self._step_names:
            raise DuplicateStepError(
                f"step {name!r} was already run in this execution of run {self.run.id!r}; "
                "step names must be unique within a run (add an index for loops: f'item-{i}')"
            )
        self._step_names.add(name)
        return len(self._step_names) - 1, self._recorded.get(name)

    @contextlib.contextmanager
    def body(self, name: str, attempt: int = 1) -> Iterator[None]:
        task = asyncio.current_task()
        self._current_step = name
        self._work += 1
        if task is not None:
            self._bodies[task] = self._bodies.get(task, 0) + 1
        try:
            with step_scope(name), (self._trace.step(name, attempt) if self._trace else contextlib.nullcontext()):
                yield
        finally:
            self._current_step = None
            if task is not None:
                left = self._bodies.pop(task, 1) - 1
                if left:
                    self._bodies[task] = left
            self._done_working()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self._work += 1
        try:
            yield
        finally:
            self._done_working()

    def trace_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self._trace is not None:
            self._trace.event(name, attributes)

    def cancelled_body(self) -> bool:
        task = asyncio.current_task()
        if task is None or task not in self._interrupted:
            return False
        self._interrupted.discard(task)
        task.uncancel()
        return True

    def check_cancel(self) -> None:
        if self._cancel_requested and not self._cancel_raised:
            self._cancel_raised = True
            raise RunCancelled(f"run {self.run.id!r} was cancelled")

    async def commit_step(self, record: StepRecord, event: NewEvent) -> None:
        await self.writer.commit_step(record, event)

    async def take_event(self, name: str, record: StepRecord, event: NewEvent) -> tuple[bool, Any]:
        return await self.writer.take_event(name, record, event)

    async def park(self, wait: Wait) -> NoReturn:
        if self._cancel_requested:  # nothing waits once the run is cancelled: cleanup runs, then it ends
            self._cancel_raised = True
            raise RunCancelled(f"run {self.run.id!r} was cancelled")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._parked[fut] = wait
        self._settle()
        try:
            await fut
        finally:
            self._parked.pop(fut, None)
        raise AssertionError("a parked wait is never resumed")  # pragma: no cover - fut only fails

    async def start_child(self, name: str, job: str, input: Any) -> Run:
        child = await self.runtime.start_child(job, input, self.run, name)
        if self._children is not None:
            self._children[child.id] = child
        return child

    async def child(self, child_id: str) -> Run | None:
        if self._children is None:
            children, _ = await self.runtime.store.list_runs(RunFilter(parent_id=self.run.id, limit=1_000_000))
            self._children = {c.id: c for c in children}
        found = self._children.get(child_id)
        if found is None or not found.is_terminal:  # created by this execution, or still going: look again
            found = await self.runtime.store.get_run(child_id)
            if found is not None:
                self._children[child_id] = found
        return found

    def emit(self, type: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        if type in self._earlier and self._current_step is None:
            count = self._emitted.get(type, 0)
            self._emitted[type] = count + 1
            if count < self._earlier[type]:
                return  # written by an earlier execution of this run
        self.writer.emit(type, data, progress)

    # -- suspension ----------------------------------------------------------------------------
    def _done_working(self) -> None:
        self._work -= 1
        if self._parked:
            self._settle()
        if self._cancel_requested and not self._cancel_raised and self._work == 0:
            asyncio.get_running_loop().call_soon(self._deliver_cancel)

    def _settle(self) -> None:
        if not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._check, _SETTLE_TURNS)

    def _check(self, turns: int) -> None:
        if turns > 0:
            asyncio.get_running_loop().call_soon(self._check, turns - 1)
            return
        self._settling = False
        if self._work or not self._parked or self._suspending is not None or self._cancel_requested:
            return
        waits = list(self._parked.values())
        until = [w.until for w in waits if w.until is not None]
        reasons = sorted({w.reason for w in waits})
        self._suspending = Wait(
            "+".join(reasons),
            min(until) if until else None,
            tuple(sorted({e for w in waits for e in w.events})),
            tuple(dict.fromkeys(c for w in waits for c in w.children)),
        )
        if self.task is not None:
            self.task.cancel()

    # -- cancellation --------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """The run was cancelled: raise ``RunCancelled`` at every primitive the job awaits now; at
        a plain ``await`` outside any step, the job's task is cancelled as Python cancels tasks."""
        if self._suspending is not None:
            return
        self._cancel_requested = True
        self._deliver_cancel()

    def _deliver_cancel(self) -> None:
        if self._cancel_raised or self._suspending is not None or not self._running:
            return  # (not running yet: the job's start delivers it)
        if self._parked or self._bodies:
            self._cancel_raised = True
            for fut in list(self._parked):
                if not fut.done():
                    fut.set_exception(RunCancelled(f"run {self.run.id!r} was cancelled"))
            for task in list(self._bodies):
                self._interrupted.add(task)
                task.cancel()
        elif self._work == 0 and self.task is not None and not self.task.done():
            self._cancel_raised = self._hard_cancel = True
            self.task.cancel()
        # else: a primitive is writing: delivered when it is done (_done_working), or the next
        # primitive the job reaches raises RunCancelled

    def _lost(self, exc: BaseException) -> None:
        """A background write failed. Fenced off (the run was cancelled or taken over): stop and
        write nothing more. Anything else (the store refused the write): stop the job, and
        :meth:`execute` fails the run with that error, so it is never left ``running``."""
        if isinstance(exc, StaleLeaseError):
            self.writer.close()
        else:
            log.error("stepstone: writing events of run %s failed: %s", self.run.id, exc)
            self._write_failure = exc
            self.writer.discard()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- the run -------------------------------------------------------------------------------
    async def execute(self) -> None:
        run, job = self.run, self.job
        start = {"attempt": run.attempt, "jobVersion": job.version, "owner": self.runtime.owner}
        if run.wait is not None:
            self.emit("run:resume", {**start, "reason": run.wait.reason})
        else:
            self.emit("run:start", start)
        token = current_run.set((run.id, job.name))
        try:
            self._trace = await self._start_trace()
            with self._trace.active() if self._trace else contextlib.nullcontext():
                await self._execute()
        finally:
            current_run.reset(token)
            if self._trace is not None:
                self._trace.end(self.outcome, self._error)

    async def _start_trace(self) -> AttemptTrace | None:
        tracer = self.runtime.tracer
        if tracer is None:
            return None
        first = await self.runtime.store.read_events(self.run.id, 0, 1)
        context = first[0].data if first else {}
        trace = tracer.attempt(self.run.id, self.job.name, self.job.version, self.run.attempt, context)
        if self.run.wait is not None:
            trace.event("resume", {"reason": self.run.wait.reason})
        return trace

    async def _execute(self) -> None:
        run, job = self.run, self.job
        try:
            try:
                payload = validate(job.input, run.input)
            except Exception as exc:
                raise InvalidInput(f"input rejected by job {job.name!r}: {exc}") from exc
            self._recorded = {s.name: s for s in await self.runtime.store.get_steps(run.id)}
            await self._count_earlier()
            step = Step(self)
            # The job's code starts now. Cancelled before (or while suspended): its first primitive
            # raises RunCancelled; a job at a plain await by then is cancelled as Python does.
            self._running = True
            if self._cancel_requested:
                asyncio.get_running_loop().call_soon(self._deliver_cancel)
            if job.streaming:
                output = await self._stream(step, payload)
            else:
                output = self._output(await job.run(step, payload))  # type: ignore[misc]
        except StaleLeaseError:
            self.writer.close()
            return
        except asyncio.CancelledError:
            await self._interrupted_by(asyncio.current_task())
            return
        except Exception as exc:
            await self._failed(exc)
            return
        if self._cancel_requested:
            await self._cancelled()
            return
        await self._finish("completed", output, None, NewEvent("run:complete", {"output": output}, self._now()))

    def _now(self) -> float:
        return self.runtime.clock.now()

    async def _interrupted_by(self, task: asyncio.Task[Any] | None) -> None:
        """The job's task was cancelled: to suspend the run, because a write failed, or from
        outside (the engine is stopping, the run was lost): then it is cancelled for real."""
        if self._suspending is None and self._write_failure is None and not self._hard_cancel:
            raise asyncio.CancelledError
        if task is not None:
            task.uncancel()
        if self._hard_cancel:
            await self._cancelled()
            return
        if self._write_failure is not None:
            error = f"StoreError: the run's events could not be stored: {error_text(self._write_failure)}"
            await self._finish("failed", None, error, NewEvent("run:fail", {"error": error}, self._now()))
            return
        wait = self._suspending
        assert wait is not None
        data = {"reason": wait.reason, "until": wait.until, "events": list(wait.events), "children": len(wait.children)}
        await self._suspend(wait, NewEvent("run:suspend", data, self._now()))

    async def _failed(self, exc: Exception) -> None:
        if self._cancel_requested:
            await self._cancelled()
            return
        error = error_text(exc)
        job, run = self.job, self.run
        if run.attempt <= job.retries:
            delay = retry_delay(job.backoff, run.attempt)
            until = self._now() + delay
            log.info("stepstone: run %s (%s) failed, retrying in %.3g s: %s", run.id, job.name, delay, error)
            data = {"reason": "retry", "until": until, "attempt": run.attempt + 1, "error": error}
            await self._suspend(Wait("retry", until=until), NewEvent("run:suspend", data, self._now()),
                                attempt=run.attempt + 1, error=error)  # fmt: skip
            return
        log.info("stepstone: run %s (%s) failed: %s", run.id, job.name, error)
        await self._finish("failed", None, error, NewEvent("run:fail", {"error": error}, self._now()))

    async def _cancelled(self) -> None:
        await self._finish("cancelled", None, None, NewEvent("run:cancel", {}, self._now()))

    async def _suspend(self, wait: Wait, event: NewEvent, attempt: int | None = None, error: str | None = None) -> None:
        self.trace_event("suspend", {k: v for k, v in event.data.items() if isinstance(v, str | int | float)})
        try:
            run = await self.writer.suspend(wait, event, attempt, error)
        except StaleLeaseError:
            self.writer.close()
            return
        except Exception as exc:
            log.error("stepstone: suspending run %s failed: %s", self.run.id, exc)
            failure = error_text(exc)
            await self._finish("failed", None, failure, NewEvent("run:fail", {"error": failure}, self._now()))
            return
        self.suspended = Wait(wait.reason, run.wake_at, wait.events, wait.children)
        self.outcome, self._error = "suspended", error

    def _output(self, result: Any) -> Any:
        try:
            value = to_jsonable(validate(self.job.output, result))
        except Exception as exc:
            raise InvalidOutput(f"output rejected by job {self.job.name!r}: {exc}") from exc
        try:
            return json_copy(value)
        except (TypeError, ValueError) as exc:
            raise InvalidOutput(
                f"job {self.job.name!r} returned a {type(value).__name__}, which is not JSON-serialisable: {exc}"
            ) from exc

    async def _finish(self, status: Any, output: Any, error: str | None, event: NewEvent) -> None:
        retention = self.job.retention if self.job.retention is not None else self.runtime.retention
        expires_at = event.at + retention if retention is not None else None
        try:
            await self.writer.finish(status, output, error, expires_at, event)
            self.outcome, self._error = status, error
        except StaleLeaseError:
            self.writer.close()
        except Exception as exc:
            # The store refused the outcome itself: record the refusal instead (its text is always
            # storable), so the run ends failed rather than staying running. If even that fails
            # the store is down: the lease runs out and the run is tried again later.
            log.error("stepstone: storing the outcome of run %s failed: %s", self.run.id, exc)
            fallback = f"StoreError: the run's outcome could not be stored: {error_text(exc)}"
            try:
                await self.writer.finish(
                    "failed", None, fallback, expires_at, NewEvent("run:fail", {"error": fallback}, self._now())
                )
                self.outcome, self._error = "failed", fallback
            except StaleLeaseError:
                self.writer.close()
            except Exception:
                log.exception("stepstone: run %s could not be failed either; its lease will expire", self.run.id)

    async def _count_earlier(self) -> None:
        """How many events of each replayed type earlier executions wrote (none for a fresh run)."""
        counts = dict.fromkeys(_REPLAYED, 0)
        seq = 1  # seq 0 is run:trigger; a fresh run has nothing more
        while seq <= self.run.last_seq:
            batch = await self.runtime.store.read_events(self.run.id, seq, 1000)
            for event in batch:
                if event.type in counts and event.data.get("step") is None:
                    counts[event.type] += 1
            if len(batch) < 1000:
                break
            seq = batch[-1].seq + 1
        self._earlier = counts

    async def _stream(self, step: Step, payload: Any) -> Any:
        """Each yielded value becomes a ``stream`` event (deduplicated on resume by ``emit``)."""
        index = 0
        gen = self.job.run(step, payload)
        try:
            async for value in gen:  # type: ignore[union-attr]
                if index >= self._earlier.get("stream", 0):
                    try:
                        item = json_copy(value)
                    except (TypeError, ValueError) as exc:
                        raise InvalidOutput(
                            f"stream item {index} of job {self.job.name!r} is a {type(value).__name__}, "
                            f"which is not JSON-serialisable: {exc}"
                        ) from exc
                else:
                    item = None
                self.emit("stream", {"index": index, "value": item})
                if self.writer.pending_count >= _STREAM_FLUSH_AT:
                    await self.writer.flush()
                index += 1
        finally:
            await gen.aclose()  # type: ignore[union-attr]
        return {"streamed": index}
