"""The engine: the public face of stepstone. Registers jobs, triggers and inspects runs, runs the
worker, fans events out to ``on`` callbacks and subscribers.

Stdlib + asyncio only; never imports a store backend (stores come in through :func:`create_engine`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ._errors import DuplicateJob, EngineNotStarted, InvalidInput, JobNotFound, RunNotFound, WaitTimeout
from ._jobs import Job, validate
from ._models import Event, Run, RunChange, RunList, RunStatus, StepRecord, TriggerResult, page_filter
from ._runtime import Runtime
from ._util import dumps, loads, new_id, now, unencodable
from ._worker import Worker
from .stores._contract import NewEvent, NewRun, RunFilter, Store
from .stores._urls import open_store

__all__ = ["Engine", "JobHandle", "Snapshot", "create_engine"]

log = logging.getLogger("stepstone")

EventCallback = Callable[[Event], Any]

_DEFAULT_TIMING: dict[str, float] = {"polling_interval": 1.0, "heartbeat_interval": 5.0, "stale_threshold": 30.0}
_NOT_UNICODE = "holds the lone surrogate {!r}, which is not valid Unicode text and cannot be stored"


def _check_options(
    idempotency_key: str | None, concurrency_key: str | None, labels: Mapping[str, str] | None
) -> None:
    """Refuse keys and labels no store can keep, naming the field (``InvalidInput``)."""
    for name, key in (("idempotency_key", idempotency_key), ("concurrency_key", concurrency_key)):
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidInput(f"{name} must be a non-empty string, not {key!r}")
        bad = None if key is None else unencodable(key)
        if bad is not None:
            raise InvalidInput(f"{name} {_NOT_UNICODE.format(bad)}")
    if labels is None:
        return
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidInput(f"labels must be a dict of strings to strings, not {labels!r}")
    for key, value in labels.items():
        bad = unencodable(key) or unencodable(value)
        if bad is not None:
            raise InvalidInput(f"label {key!r} {_NOT_UNICODE.format(bad)}")


@dataclass(frozen=True)
class Snapshot:
    """A run as a streaming consumer sees it: the run, every ``stream`` value so far, and where the
    log ends (``next_seq``); ``run.is_terminal`` is the terminal marker."""

    run: Run
    items: list[Any]
    next_seq: int


class JobHandle:
    """A registered job, bound to its engine: ``await handle.trigger(payload)``."""

    def __init__(self, engine: Engine, job: Job) -> None:
        self.engine = engine
        self.job = job
        self.name = job.name

    async def trigger(
        self,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> TriggerResult:
        return await self.engine.trigger(
            self.name, input, idempotency_key=idempotency_key, concurrency_key=concurrency_key, labels=labels
        )

    async def trigger_and_wait(
        self,
        input: Any = None,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Run:
        """Trigger, then wait until the run finishes; returns the finished run (check ``status``)."""
        run = await self.trigger(input, idempotency_key=idempotency_key, concurrency_key=concurrency_key, labels=labels)
        return await self.engine.wait(run.id, timeout=timeout)

    async def batch_trigger(self, items: Iterable[Any]) -> list[TriggerResult]:
        """Trigger one run per item. An item is a payload, or a dict ``{"input": …, "idempotency_key":
        …, "concurrency_key": …, "labels": …}``. Every input is validated before any run is created."""
        prepared: list[tuple[Any, dict[str, Any]]] = []
        options = {"idempotency_key", "concurrency_key", "labels"}
        for item in items:
            if isinstance(item, Mapping) and "input" in item and set(item) <= options | {"input"}:
                prepared.append((item["input"], {k: item[k] for k in options if k in item}))
            else:
                prepared.append((item, {}))
        for payload, opts in prepared:
            self.engine._check_input(self.job, payload)
            _check_options(opts.get("idempotency_key"), opts.get("concurrency_key"), opts.get("labels"))
        return [await self.trigger(payload, **opts) for payload, opts in prepared]

    async def get_run(self, run_id: str) -> Run | None:
        run = await self.engine.get_run(run_id)
        return run if run is not None and run.job_name == self.name else None

    async def get_runs(
        self,
        *,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunList:
        return await self.engine.get_runs(job_name=self.name, status=status, labels=labels, limit=limit, offset=offset)


class Engine:
    """Durable job engine. Create with :func:`create_engine`; see the README for a tour."""

    def __init__(
        self,
        store: Store,
        *,
        polling_interval: float | None = None,
        heartbeat_interval: float | None = None,
        stale_threshold: float | None = None,
        concurrency: int = 4,
        retention: float | None = None,
        sweep_interval: float | None = None,
        event_linger: float = 0.01,
        worker: bool = True,
        owner: str | None = None,
        owns_store: bool = False,
    ) -> None:
        # A store may suggest its own timing (the browser wants a closed tab's runs back within a
        # second); explicit options always win.
        defaults = {**_DEFAULT_TIMING, **getattr(store, "engine_defaults", {})}
        polling_interval = defaults["polling_interval"] if polling_interval is None else polling_interval
        heartbeat_interval = defaults["heartbeat_interval"] if heartbeat_interval is None else heartbeat_interval
        stale_threshold = defaults["stale_threshold"] if stale_threshold is None else stale_threshold
        for name, value in (
            ("polling_interval", polling_interval),
            ("heartbeat_interval", heartbeat_interval),
            ("stale_threshold", stale_threshold),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if stale_threshold <= heartbeat_interval:
            raise ValueError(
                f"stale_threshold ({stale_threshold}) must exceed heartbeat_interval ({heartbeat_interval}), "
                "or live runs would be reclaimed between heartbeats"
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
        self.sweep_interval = sweep_interval
        self.run_worker = worker
        self._owns_store = owns_store
        self._jobs: dict[str, Job] = {}
        self._listeners: dict[str, list[EventCallback]] = {}
        self._runtime = Runtime(
            store=store,
            owner=owner or f"{os.getpid()}-{new_id()[-12:]}",
            jobs=self._jobs,
            dispatch=self._dispatch,
            polling_interval=polling_interval,
            heartbeat_interval=heartbeat_interval,
            stale_threshold=stale_threshold,
            concurrency=concurrency,
            event_linger=event_linger,
            retention=retention,
        )
        self._worker: Worker | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # -- settings (held by the runtime the worker and executions share) ------------------------
    @property
    def store(self) -> Store:
        return self._runtime.store

    @property
    def owner(self) -> str:
        """This engine's lease owner name, written on every run it claims."""
        return self._runtime.owner

    @property
    def polling_interval(self) -> float:
        return self._runtime.polling_interval

    @property
    def heartbeat_interval(self) -> float:
        return self._runtime.heartbeat_interval

    @property
    def stale_threshold(self) -> float:
        return self._runtime.stale_threshold

    @property
    def concurrency(self) -> int:
        return self._runtime.concurrency

    @property
    def event_linger(self) -> float:
        return self._runtime.event_linger

    @property
    def retention(self) -> float | None:
        return self._runtime.retention

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True between ``init()`` and ``stop()``."""
        return self._started

    @property
    def job_names(self) -> frozenset[str]:
        return frozenset(self._jobs)

    def register(self, job: Job) -> JobHandle:
        """Make a job runnable by this engine; returns a handle to trigger it."""
        if not isinstance(job, Job):
            raise TypeError(f"register() takes a Job (made by @stepstone.job or define_job), not {job!r}")
        existing = self._jobs.get(job.name)
        if existing is not None and existing is not job:
            raise DuplicateJob(f"a different job named {job.name!r} is already registered")
        self._jobs[job.name] = job
        if self._worker is not None:
            self._worker.wake()
        return JobHandle(self, job)

    def get_job(self, name: str) -> JobHandle | None:
        job = self._jobs.get(name)
        return None if job is None else JobHandle(self, job)

    async def init(self) -> None:
        """Open and migrate the store, then start the worker (unless ``worker=False``)."""
        if self._started:
            return
        await self.store.init()
        self._started = True
        if self.run_worker:
            self._worker = Worker(self._runtime)
            await self._worker.start()
        if self.sweep_interval:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="stepstone-sweeper")

    async def stop(self, timeout: float = 0.0) -> None:
        """Stop the worker. Runs still executing after ``timeout`` s are cancelled (their ``finally``
        blocks run) and handed back, so another engine resumes them at once."""
        if not self._started:
            return
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._worker is not None:
            await self._worker.stop(timeout)
            self._worker = None
        if self._callback_tasks:
            await asyncio.gather(*self._callback_tasks, return_exceptions=True)
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> Engine:
        await self.init()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _require_started(self) -> None:
        if not self._started:
            raise EngineNotStarted("the engine is not started; call `await engine.init()` or use `async with engine`")

    # -- events --------------------------------------------------------------------------------
    def on(self, event: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of this type written by this engine (``"*"`` for
        all). Async callbacks are scheduled as tasks. Returns a function that unsubscribes."""
        listeners = self._listeners.setdefault(event, [])
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def _dispatch(self, events: list[Event]) -> None:
        if not self._listeners:
            return
        for event in events:
            for callback in (*self._listeners.get(event.type, ()), *self._listeners.get("*", ())):
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        task = asyncio.ensure_future(result)
                        self._callback_tasks.add(task)
                        task.add_done_callback(self._callback_done)
                except Exception:
                    log.exception("stepstone: %s callback failed", event.type)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stepstone: event callback failed", exc_info=task.exception())

    def _wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    # -- triggering ----------------------------------------------------------------------------
    def _job(self, name: str | Job) -> Job:
        if isinstance(name, Job):
            name = name.name
        job = self._jobs.get(name)
        if job is None:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise JobNotFound(f"no job named {name!r} is registered (registered: {known})")
        return job

    def _check_input(self, job: Job, input: Any) -> Any:
        try:
            text = dumps(input)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"input for job {job.name!r} is not JSON-serialisable: {exc}") from exc
        bad = unencodable(text)
        if bad is not None:
            raise InvalidInput(f"input for job {job.name!r} {_NOT_UNICODE.format(bad)}")
        try:
            validate(job.input, input)
        except Exception as exc:
            raise InvalidInput(f"input rejected by job {job.name!r}: {exc}") from exc
        return loads(text)

    async def trigger(
        self,
        job: str | Job,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> TriggerResult:
        """Create a pending run. With an ``idempotency_key`` already used for this job, nothing is
        created and the existing run comes back with ``created=False``."""
        self._require_started()
        definition = self._job(job)
        raw = self._check_input(definition, input)
        _check_options(idempotency_key, concurrency_key, labels)
        t = now()
        new = NewRun(
            id=new_id(),
            job_name=definition.name,
            job_version=definition.version,
            input=raw,
            created_at=t,
            labels=dict(labels or {}),
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
        )
        data: dict[str, Any] = {"jobName": definition.name, "jobVersion": definition.version}
        run, created = await self.store.create_run(new, NewEvent("run:trigger", data, t))
        if created:
            self._wake()
            self._dispatch([Event(run.id, 0, "run:trigger", data, t)])
        values = {f.name: getattr(run, f.name) for f in fields(run)}
        return TriggerResult(**values, created=created)

    # -- reading -------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        self._require_started()
        return await self.store.get_run(run_id)

    async def _existing(self, run_id: str) -> Run:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run

    async def get_runs(
        self,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunList:
        """A page of runs, newest first; ``.total`` counts every match."""
        self._require_started()
        statuses = page_filter(status, limit, offset)
        version = await self.store.runs_version()  # before the page: a change after it is in the feed
        runs, total = await self.store.list_runs(RunFilter(job_name, statuses, labels, limit, offset))
        return RunList(runs, total=total, limit=limit, offset=offset, version=version)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        await self._existing(run_id)
        return await self.store.get_steps(run_id)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is completed, failed or cancelled; raises WaitTimeout after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            run = await self._existing(run_id)
            if run.is_terminal:
                return run
            left = self.polling_interval if deadline is None else min(self.polling_interval, deadline - loop.time())
            if left <= 0:
                raise WaitTimeout(f"run {run_id!r} is still {run.status} after {timeout} s")
            await self.store.wait_events(run_id, run.last_seq, left)

    async def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """Every event of the run from ``from_seq`` on: the stored ones, then live ones as they are
        written, ending after the terminal event. No gap, no duplicate, whenever you join."""
        await self._existing(run_id)
        next_seq = max(from_seq, 0)
        while True:
            batch = await self.store.read_events(run_id, next_seq, 500)
            for event in batch:
                yield event
            if batch:
                next_seq = batch[-1].seq + 1
                if not batch[-1].is_terminal:
                    continue
            run = await self.store.get_run(run_id)
            if run is None:
                return
            if run.is_terminal and run.last_seq < next_seq:
                return
            if not batch:
                await self.store.wait_events(run_id, next_seq - 1, self.polling_interval)

    async def subscribe_runs(
        self, from_version: int | None = None, job_name: str | None = None
    ) -> AsyncIterator[RunChange]:
        """Tail run-level changes (created, status, progress, deleted) across all runs, forever.

        Each change has a store-wide increasing ``version``; pass the last one seen as
        ``from_version`` to resume with no gap. ``None`` starts with the changes after now. A run
        changed several times while you were away shows up once, with its latest state.
        """
        self._require_started()
        version = await self.store.runs_version() if from_version is None else from_version
        while True:
            batch = await self.store.run_changes(version, 500)
            for change in batch:
                version = change.version
                if (
                    job_name is None
                    or (change.run is not None and change.run.job_name == job_name)
                    or (change.run is None)
                ):
                    yield change
            if not batch:
                await self.store.wait_run_changes(version, self.polling_interval)

    def jobs(self) -> list[Job]:
        """The registered job definitions."""
        return list(self._jobs.values())

    async def snapshot(self, run_id: str) -> Snapshot:
        """The run and every value a streaming job has yielded so far."""
        run = await self._existing(run_id)
        items: list[Any] = []
        seq = 0
        while True:
            batch = await self.store.read_events(run_id, seq, 1000)
            items.extend(e.data.get("value") for e in batch if e.type == "stream")
            if len(batch) < 1000:
                break
            seq = batch[-1].seq + 1
        return Snapshot(run, items, seq if not batch else batch[-1].seq + 1)

    # -- control -------------------------------------------------------------------------------
    async def retry(self, run_id: str) -> Run:
        """Put a failed or cancelled run back to pending; it resumes from its first unfinished step."""
        self._require_started()
        run, events = await self.store.retry_run(run_id, now(), NewEvent("run:retry", {}, now()))
        self._dispatch(events)
        self._wake()
        return run

    async def cancel(self, run_id: str) -> Run:
        """Cancel a pending or running run. A running one stops at once: its task is cancelled (so
        ``try/finally`` in the job runs) and its worker is fenced off, wherever it runs."""
        self._require_started()
        run, events = await self.store.cancel_run(run_id, now(), NewEvent("run:cancel", {}, now()))
        if self._worker is not None:
            self._worker.cancel_local(run_id)
        self._dispatch(events)
        self._wake()
        return run

    async def delete_run(self, run_id: str) -> None:
        """Delete a run with its steps and events (cancelling it first if it is executing here)."""
        self._require_started()
        if self._worker is not None:
            self._worker.cancel_local(run_id)
        if not await self.store.delete_run(run_id):
            raise RunNotFound(f"no run with id {run_id!r}")
        self._wake()

    async def sweep(self) -> int:
        """Delete every run whose retention has expired, with all it owns; returns how many."""
        self._require_started()
        return await self.store.sweep(now())

    async def _sweep_loop(self) -> None:
        assert self.sweep_interval
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.store.sweep(now())
            except Exception:
                log.exception("stepstone: sweep failed")


def create_engine(store: Store | str, **options: Any) -> Engine:
    """Create an engine on a store or a store URL: ``"memory:"``, ``"sqlite:///jobs.db"``,
    ``"indexeddb://name"`` (in Pyodide). Options (seconds): ``polling_interval=1.0``,
    ``heartbeat_interval=5.0``, ``stale_threshold=30.0``, ``concurrency=4``, ``retention=None``,
    ``sweep_interval=None``, ``worker=True``."""
    if isinstance(store, str):
        return Engine(open_store(store), owns_store=True, **options)
    return Engine(store, **options)
