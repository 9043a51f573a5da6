"""The engine: the public face of stepstone. Registers jobs, triggers and inspects runs, runs the
worker, fans events out to ``on`` callbacks and subscribers.

Stdlib + asyncio only; never imports a store backend (stores come in through :func:`create_engine`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any

from ._clock import Clock, SystemClock
from ._control import Control
from ._errors import EngineNotStarted, InvalidInput, JobNotFound
from ._jobs import Job, validate
from ._models import Event, Run, RunList, RunStatus, TriggerResult
from ._reading import Reading, Snapshot
from ._registry import Registry
from ._runtime import Runtime
from ._schedules import Schedules, schedule_job
from ._tracing import Tracer, incoming_trace
from ._util import dumps, loads, new_id, unencodable
from ._worker import Worker
from .stores._contract import NewEvent, NewRun, Store
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
            self.name,
            input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=labels,
            version=self.job.version,
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


class Engine(Reading, Control):
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
        clock: Clock | None = None,
        tracer: Tracer | None = None,
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
        self._registry = Registry()
        self._listeners: dict[str, list[EventCallback]] = {}
        self._runtime = Runtime(
            store=store,
            owner=owner or f"{os.getpid()}-{new_id()[-12:]}",
            jobs=self._registry.jobs,
            dispatch=self._dispatch,
            start_child=self._start_child,
            clock=clock or SystemClock(),
            tracer=tracer,
            polling_interval=polling_interval,
            heartbeat_interval=heartbeat_interval,
            stale_threshold=stale_threshold,
            concurrency=concurrency,
            event_linger=event_linger,
            retention=retention,
        )
        self.schedules = Schedules(self, self._runtime.clock.now)
        """Cron schedules: ``await engine.schedules.create(name, job, "0 7 * * *", timezone=…)``."""
        self._registry.add(schedule_job(self, self._runtime.clock.now))
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

    @property
    def clock(self) -> Clock:
        """The engine's clock (``stepstone.testing.TestClock`` in tests that travel in time)."""
        return self._runtime.clock

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True between ``init()`` and ``stop()``."""
        return self._started

    @property
    def job_names(self) -> frozenset[str]:
        return frozenset(self._registry.jobs)

    def register(self, job: Job) -> JobHandle:
        """Make a job runnable by this engine; returns a handle to trigger it. Several versions
        of one job may be registered side by side: each run executes only on its own version."""
        if not isinstance(job, Job):
            raise TypeError(f"register() takes a Job (made by @stepstone.job or define_job), not {job!r}")
        self._registry.add(job)
        if self._worker is not None:
            self._worker.wake()
        return JobHandle(self, job)

    def get_job(self, name: str, version: str | None = None) -> JobHandle | None:
        """The registered job ``name`` (its newest version unless ``version`` is given), or None."""
        try:
            return JobHandle(self, self._registry.get(name, version))
        except JobNotFound:
            return None

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
        for job in self._registry.newest():
            if job.schedule is not None:  # a job declared with schedule=: its schedule exists (once)
                await self.schedules.create(job.name, job.name, job.schedule, timezone=job.timezone)

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
    def _job(self, name: str | Job, version: str | None = None) -> Job:
        if isinstance(name, Job):
            return self._registry.get(name.name, name.version if version is None else version)
        return self._registry.get(name, version)

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
        version: str | None = None,
    ) -> TriggerResult:
        """Create a pending run of the job's newest registered version (or ``version``). With an
        ``idempotency_key`` already used for this job, nothing is created and the existing run
        comes back with ``created=False``."""
        self._require_started()
        definition = self._job(job, version)
        raw = self._check_input(definition, input)
        _check_options(idempotency_key, concurrency_key, labels)
        return await self._create(definition, raw, idempotency_key, concurrency_key, labels)

    async def _create(
        self,
        definition: Job,
        raw: Any,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        parent: Run | None = None,
        parent_step: str | None = None,
    ) -> TriggerResult:
        t = self.clock.now()
        new = NewRun(
            id=new_id(),
            job_name=definition.name,
            job_version=definition.version,
            input=raw,
            created_at=t,
            labels=dict(labels or {}),
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            parent_id=None if parent is None else parent.id,
            parent_step=parent_step,
        )
        data: dict[str, Any] = {"jobName": definition.name, "jobVersion": definition.version}
        if parent is not None:
            data.update(parentId=parent.id, parentStep=parent_step)
        tracer = self._runtime.tracer
        if tracer is not None:  # the caller's trace continues in every attempt of the run
            data.update(incoming_trace.get() or tracer.trigger_context())
        run, created = await self.store.create_run(new, NewEvent("run:trigger", data, t))
        if created:
            self._wake()
            self._dispatch([Event(run.id, 0, "run:trigger", data, t)])
        values = {f.name: getattr(run, f.name) for f in fields(run)}
        return TriggerResult(**values, created=created)

    async def _start_child(self, job: str, input: Any, parent: Run, step: str) -> Run:
        """``step.invoke``: the child run of ``parent``'s step ``step`` (created once)."""
        definition = self._job(job)
        raw = self._check_input(definition, input)
        return await self._create(definition, raw, parent=parent, parent_step=step)

    def jobs(self) -> list[Job]:
        """The registered job definitions (every version, by name then version), without the
        built-in ones (``stepstone.schedule``: a schedule is a run of it)."""
        return [job for job in self._registry if not job.name.startswith("stepstone.")]


def create_engine(store: Store | str, **options: Any) -> Engine:
    """Create an engine on a store or a store URL: ``"memory:"``, ``"sqlite:///jobs.db"``,
    ``"indexeddb://name"`` (in Pyodide). Options (seconds): ``polling_interval=1.0``,
    ``heartbeat_interval=5.0``, ``stale_threshold=30.0``, ``concurrency=4``, ``retention=None``,
    ``sweep_interval=None``, ``worker=True``; ``clock=`` a ``stepstone.testing.TestClock``;
    ``tracer=stepstone.otel.tracer()`` to trace runs and steps with OpenTelemetry."""
    if isinstance(store, str):
        return Engine(open_store(store), owns_store=True, **options)
    return Engine(store, **options)
