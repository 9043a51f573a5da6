"""One execution of one claimed run: calls the job, records steps, writes the outcome.

Stdlib + asyncio only. An execution never retries or reclaims; the worker does that. It stops
writing the moment a write is refused (the run was cancelled or taken over) and never writes after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ._errors import DuplicateStepError, InvalidInput, InvalidOutput, StaleLeaseError
from ._jobs import Job, to_jsonable, validate
from ._models import Progress, Run, StepRecord
from ._runtime import Runtime
from ._step import Step
from ._util import error_text, json_copy, now
from ._writer import RunWriter
from .stores._contract import NewEvent

__all__ = ["Execution"]

log = logging.getLogger("stepstone")

#: A streaming job writing faster than the linger flushes inline past this many buffered events.
_STREAM_FLUSH_AT = 256

#: Events the job's own code emits outside any step body. A resumed execution runs the job from the
#: top again, so the first N of each type it emits there were already written by earlier executions
#: (matched by position, as recorded steps are matched by name) and are not written twice. Events
#: from inside a step body are always new: a recorded step's body does not run again.
_REPLAYED = ("log:write", "run:progress", "stream")


class Execution:
    """Runs one claimed run's job once; the :class:`~stepstone.Step` it hands the job talks back to
    it through the :class:`~stepstone._step.StepHost` methods below and nothing else."""

    def __init__(self, runtime: Runtime, run: Run, job: Job) -> None:
        self.runtime = runtime
        self.run = run
        self.job = job
        self.task: asyncio.Task[None] | None = None
        self.writer = RunWriter(runtime.store, run.id, run.epoch, runtime.dispatch, self._lost, runtime.event_linger)
        self._step_names: set[str] = set()
        self._recorded: dict[str, StepRecord] = {}
        self._current_step: str | None = None
        self._earlier: dict[str, int] = {}
        self._emitted: dict[str, int] = {}
        self._write_failure: BaseException | None = None

    # -- the StepHost protocol ---------------------------------------------------------------
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
    def inside(self, name: str) -> Iterator[None]:
        self._current_step = name
        try:
            yield
        finally:
            self._current_step = None

    async def commit_step(self, record: StepRecord, event: NewEvent) -> None:
        await self.writer.commit_step(record, event)

    def emit(self, type: str, data: dict[str, Any], progress: Progress | None = None) -> None:
        if type in self._earlier and self._current_step is None:
            count = self._emitted.get(type, 0)
            self._emitted[type] = count + 1
            if count < self._earlier[type]:
                return  # written by an earlier execution of this run
        self.writer.emit(type, data, progress)

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

    async def execute(self) -> None:
        run, job = self.run, self.job
        self.emit("run:start", {"attempt": run.attempt, "jobVersion": job.version, "owner": self.runtime.owner})
        try:
            try:
                payload = validate(job.input, run.input)
            except Exception as exc:
                raise InvalidInput(f"input rejected by job {job.name!r}: {exc}") from exc
            self._recorded = {s.name: s for s in await self.runtime.store.get_steps(run.id)}
            await self._count_earlier()
            step = Step(self)
            if job.streaming:
                output = await self._stream(step, payload)
            else:
                output = self._output(await job.run(step, payload))  # type: ignore[misc]
        except StaleLeaseError:
            self.writer.close()
            return
        except asyncio.CancelledError:
            if self._write_failure is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = f"StoreError: the run's events could not be stored: {error_text(self._write_failure)}"
            await self._finish("failed", None, error, NewEvent("run:fail", {"error": error}, now()))
            return
        except Exception as exc:
            error = error_text(exc)
            log.info("stepstone: run %s (%s) failed: %s", run.id, job.name, error)
            await self._finish("failed", None, error, NewEvent("run:fail", {"error": error}, now()))
            return
        await self._finish("completed", output, None, NewEvent("run:complete", {"output": output}, now()))

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
                    "failed", None, fallback, expires_at, NewEvent("run:fail", {"error": fallback}, now())
                )
            except StaleLeaseError:
                self.writer.close()
            except Exception:
                log.exception("stepstone: run %s could not be failed either; its lease will expire", self.run.id)

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
