"""``use_job``: trigger a job and follow its current run, across reloads and other tabs.

The current run id of each job (or of each (job, ``key``): one run per order, per document) is kept
in a :class:`Storage` (``localStorage`` in a page), with the last attempt whose outcome was already
reported, so that after a reload the state reattaches to the run (``auto_resume``) and a completion
that happened during the reload is reported exactly once. ``follow_latest`` tails the run-change
feed and switches to a run of the job (of that key) triggered elsewhere.

A keyed state labels its runs ``stepstone.key=<key>`` and finds them by that label, so it never
resumes another entity's run. Its triggers are made idempotent per key and generation: while the
key's newest run is active, ``trigger`` returns that run instead of starting another; otherwise it
sends the idempotency key ``stepstone.key:<key>:after:<id of the key's newest run, or ->``. Two tabs
(or two devices, or a double click) that trigger for the same key at once both send the same key,
and the store, which creates at most one run per idempotency key atomically, makes one run; the
other gets it back with ``created=False``. Once that run is finished, the next trigger names it as
its predecessor and starts a new run.

Stdlib + asyncio only; must never import js, pyodide or httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any
from urllib.parse import quote

from .._errors import ServerUnavailable, StepstoneError, WaitTimeout
from .._models import ACTIVE_STATUSES, RUN_STATUSES, TERMINAL_STATUSES, Progress, Run, RunChange, TriggerResult, Wait
from ._base import HookState, RunCallback, TerminalCallbacks, backoff_delays, log
from ._run import LogEntry, RunState, StepView
from ._source import Source, job_name_of, source_scope
from ._storage import Storage, default_storage

__all__ = ["KEY_LABEL", "JobState", "use_job"]

#: The label a keyed ``use_job`` puts on its runs (``stepstone.key=<key>``) and finds them by.
KEY_LABEL = "stepstone.key"

#: Unfinished statuses, in a stable order (for requests).
ACTIVE = tuple(s for s in RUN_STATUSES if s in ACTIVE_STATUSES)


class JobState(TerminalCallbacks, HookState):
    """The state of one job's current run, plus ``trigger`` (see :func:`use_job`)."""

    def __init__(
        self,
        source: Source,
        job: Any,
        *,
        initial_run_id: str | None = None,
        auto_resume: bool = True,
        follow_latest: bool = True,
        storage: Storage | None = None,
        max_logs: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__()
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty string or None, not {key!r}")
        self.source = source
        self.job_name = job_name_of(job)
        self.key = key
        self.auto_resume = auto_resume
        self.follow_latest = follow_latest
        self.storage = storage if storage is not None else default_storage()
        scope = f"stepstone:{source_scope(source)}:{self.job_name}"
        self.storage_key = f"{scope}:current-run" if key is None else f"{scope}:key:{quote(key, safe='')}:current-run"
        self._labels: dict[str, str] | None = None if key is None else {KEY_LABEL: key}
        self._current = RunState(source, None, max_logs=max_logs)
        self._current.subscribe(self._current_changed)
        self._current._terminal_hooks.append(self._on_terminal)
        self._entry: dict[str, Any] | None = None
        self._entry_from_storage = False
        self._callbacks_by_status: dict[str, list[RunCallback]] = {"completed": [], "failed": [], "cancelled": []}
        self._feed_seen: set[str] = set()
        self._trigger_failed = False  # the problem shown is a failed trigger's (bad input, ...)
        if follow_latest:
            self._spawn(self._follow_latest(), f"stepstone-follow-{self.job_name}")
        self._spawn(self._start(initial_run_id), f"stepstone-job-{self.job_name}")

    # -- the current run's state, as in use_job_run ------------------------------------------------
    @property
    def current_run_id(self) -> str | None:
        return self._current.run_id

    @property
    def run(self) -> Run | None:
        return self._current.run

    @property
    def status(self) -> str | None:
        return self._current.status

    @property
    def output(self) -> Any:
        return self._current.output

    @property
    def progress(self) -> Progress | None:
        return self._current.progress

    @property
    def logs(self) -> list[LogEntry]:
        return self._current.logs

    @property
    def steps(self) -> list[StepView]:
        return self._current.steps

    @property
    def items(self) -> list[Any]:
        return self._current.items

    @property
    def wait(self) -> Wait | None:
        """While the current run is ``suspended``: what it waits for (see ``RunState.wait``)."""
        return self._current.wait

    @property
    def parent_id(self) -> str | None:
        return self._current.parent_id

    @property
    def error(self) -> str | None:
        """Why triggering or reaching the server failed, else the current run's error."""
        return self._problem if self._problem is not None else self._current.error

    @property
    def error_code(self) -> str | None:
        return self._problem_code if self._problem_code is not None else self._current.error_code

    is_pending = property(lambda self: self.status == "pending")
    is_running = property(lambda self: self.status == "running")
    is_suspended = property(lambda self: self.status == "suspended")
    is_completed = property(lambda self: self.status == "completed")
    is_failed = property(lambda self: self.status == "failed")
    is_cancelled = property(lambda self: self.status == "cancelled")
    is_active = property(lambda self: self.status in ACTIVE_STATUSES)
    is_terminal = property(lambda self: self.status in TERMINAL_STATUSES)

    # -- actions ---------------------------------------------------------------------------------
    async def trigger(
        self,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> TriggerResult:
        """Trigger a run of the job and follow it. Raises what the source raises (and sets ``error``).

        With a ``key``: while the key's newest run is pending, running or suspended, that run is
        returned (``created=False``) and followed; otherwise one new run is made, however many tabs
        trigger at once (an ``idempotency_key`` given here replaces the derived one)."""
        try:
            if self.key is not None:
                labels = {**(labels or {}), KEY_LABEL: self.key}
                active, derived = await self._keyed_trigger()
                if active is not None and idempotency_key is None:
                    self._problem = self._problem_code = None
                    self._attach(active.id, initial=active, from_storage=False, settled=0)
                    return active
                idempotency_key = idempotency_key if idempotency_key is not None else derived
            result = await self.source.trigger(
                self.job_name, input, idempotency_key=idempotency_key, concurrency_key=concurrency_key, labels=labels
            )
        except Exception as exc:
            self._set_problem(exc)
            self._trigger_failed = True
            raise
        self._problem = self._problem_code = None
        self._attach(result.id, initial=result, from_storage=False, settled=0)
        return result

    async def _keyed_trigger(self) -> tuple[TriggerResult | None, str]:
        """The key's active run (as a trigger's answer), or None; and the idempotency key of the
        next run of this key: its predecessor is the key's newest run."""
        page = await self.source.get_runs(self.job_name, labels=self._labels, limit=1)
        latest = page[0] if page else None
        if latest is not None and latest.status in ACTIVE_STATUSES:
            values = {f.name: getattr(latest, f.name) for f in fields(latest)}
            return TriggerResult(**values, created=False), ""
        return None, f"stepstone.key:{self.key}:after:{latest.id if latest is not None else '-'}"

    async def trigger_and_wait(self, input: Any = None, *, timeout: float | None = None, **options: Any) -> Run:
        """Trigger, then wait until the run finishes; returns the finished run (check ``status``)."""
        result = await self.trigger(input, **options)
        state = self._current
        try:
            async with asyncio.timeout(timeout):
                await state.wait_for(lambda s: s.run_id != result.id or s.is_terminal)
                if state.run_id == result.id and state.run is not None:
                    return state.run
                return await self.source.wait(result.id)  # the state moved on to a newer run
        except TimeoutError:
            raise WaitTimeout(f"run {result.id!r} is still not finished after {timeout} s") from None

    def reset(self) -> None:
        """Stop following the current run and forget it (also in storage)."""
        self._entry = None
        self.storage.delete(self.storage_key)
        self._problem = self._problem_code = None
        self._current.set_run_id(None)
        self._changed()

    def close(self) -> None:
        self._current.close()
        super().close()

    async def aclose(self) -> None:
        await self._current.aclose()
        await super().aclose()

    # -- the current run -------------------------------------------------------------------------
    def _current_changed(self, current: RunState) -> None:
        if self._problem_code == "server_unavailable" and current.run is not None and current._problem is None:
            self._problem = self._problem_code = None  # the run's stream just proved the server is back
        self._changed()

    def _load_entry(self) -> dict[str, Any] | None:
        raw = self.storage.get(self.storage_key)
        if not raw:
            return None
        try:
            entry = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("runId"), str):
            return None
        return {"runId": entry["runId"], "settled": int(entry.get("settled") or 0)}

    def _save_entry(self) -> None:
        if self._entry is not None:
            self.storage.set(self.storage_key, json.dumps(self._entry))

    def _attach(self, run_id: str, *, initial: Run | None, from_storage: bool, settled: int) -> None:
        if self._current.run_id == run_id and not self._current.closed:
            return
        self._entry = {"runId": run_id, "settled": settled}
        self._entry_from_storage = from_storage
        self._save_entry()
        if self._trigger_failed:  # about an earlier trigger, not the run shown from now on
            self._trigger_failed = False
            self._problem = self._problem_code = None
        self._current.set_run_id(run_id, initial)

    def _on_terminal(self, run: Run, live: bool) -> None:
        entry = self._entry
        if entry is None or entry["runId"] != run.id or run.attempt <= entry["settled"]:
            return
        entry["settled"] = run.attempt
        self._save_entry()
        if not (live or self._entry_from_storage):
            return  # it had finished before we first saw it: nothing happened while we watched
        for callback in list(self._callbacks_by_status.get(run.status, ())):
            self._current._call(callback, run)

    async def _start(self, initial_run_id: str | None) -> None:
        try:
            if initial_run_id is not None:
                self._attach(initial_run_id, initial=None, from_storage=False, settled=0)
                await self._current.ready()
                return
            if not self.auto_resume:
                return
            entry = self._load_entry()
            if entry is not None:
                self._attach(entry["runId"], initial=None, from_storage=True, settled=entry["settled"])
                await self._current.ready()
                if self._current.error_code == "run_not_found":  # deleted since: forget it
                    self.reset()
            if self._current.run_id is None or self._current.is_terminal:
                await self._resume_active()
            await self._current.ready()
        finally:
            self._ready.set()

    async def _resume_active(self) -> None:
        """Attach to the newest unfinished run of the job, if it is newer than ours."""
        next_delay = backoff_delays()
        while True:
            try:
                page = await self.source.get_runs(self.job_name, status=ACTIVE, labels=self._labels, limit=1)
                break
            except ServerUnavailable as exc:
                self._set_problem(exc)
                self._ready.set()  # loaded, with an error to show; keep trying meanwhile
                await asyncio.sleep(next_delay())
            except StepstoneError as exc:
                self._set_problem(exc)
                return
        self._clear_problem("server_unavailable")
        current = self._current.run
        if page and (current is None or page[0].created_at > current.created_at):
            self._attach(page[0].id, initial=page[0], from_storage=False, settled=0)

    async def _follow_latest(self) -> None:
        next_delay = backoff_delays()
        version: int | None = None
        while True:
            try:
                async for change in self.source.subscribe_runs(from_version=version, job_name=self.job_name):
                    version = change.version
                    if self._problem_code == "server_unavailable":
                        self._clear_problem("server_unavailable")
                    self._on_change(change)
                return
            except ServerUnavailable as exc:
                self._set_problem(exc)
                await self._until_reachable(next_delay)
            except StepstoneError as exc:
                log.info("stepstone: use_job(%r) stopped following new runs: %s", self.job_name, exc)
                self._set_problem(exc)
                return

    async def _until_reachable(self, next_delay: Callable[[], float]) -> None:
        """Probe with a cheap request until the server answers, then clear the outage message
        (a feed that reconnects may have nothing to say for a long time)."""
        while True:
            await asyncio.sleep(next_delay())
            try:
                await self.source.get_runs(self.job_name, limit=0)
            except ServerUnavailable as exc:
                self._set_problem(exc)
                continue
            except StepstoneError:
                pass
            self._clear_problem("server_unavailable")
            return

    def _on_change(self, change: RunChange) -> None:
        current = self._current
        run = change.run
        if run is None:
            if change.run_id == current.run_id:
                self.reset()  # the current run was deleted
            return
        if run.job_name != self.job_name or (self.key is not None and run.labels.get(KEY_LABEL) != self.key):
            return
        first_sighting = run.id not in self._feed_seen
        self._feed_seen.add(run.id)
        if run.id == current.run_id:
            if run.status in ACTIVE_STATUSES and current.is_terminal:
                current.refresh()  # retried elsewhere: follow the new attempt
            return
        if not first_sighting or run.status not in ACTIVE_STATUSES:
            return
        if current.run is not None and run.created_at <= current.run.created_at:
            return
        self._attach(run.id, initial=run, from_storage=False, settled=0)


def use_job(
    source: Source,
    job: Any,
    initial_run_id: str | None = None,
    auto_resume: bool = True,
    follow_latest: bool = True,
    storage: Storage | None = None,
    *,
    max_logs: int | None = None,
    key: str | None = None,
) -> JobState:
    """Trigger ``job`` and follow its current run, in a page or in CPython.

        state = use_job(client, "demo-steps")          # or use_job(engine, my_job) in local mode
        state.subscribe(lambda s: print(s.status, s.progress))
        run = await state.trigger({"steps": 5})
        done = await state.trigger_and_wait({"steps": 5}, timeout=60)

    Fields: ``status``, ``output``, ``error`` (``error_code``), ``logs``, ``progress``, ``steps``,
    ``is_pending / is_running / is_suspended / is_completed / is_failed / is_cancelled``, ``wait``
    (what a suspended run waits for), ``current_run_id``.
    ``auto_resume`` reattaches to the run kept in ``storage`` (``localStorage`` in a page) or to the
    job's newest unfinished (pending, running or suspended) run; ``follow_latest`` switches to a
    newer unfinished run of the job (triggered in another tab or by another client).
    ``await state.ready()`` waits for the first load; ``close()`` stops everything.

    ``key`` keeps one current run per (job, key), for a page that tracks one run per entity
    (``use_job(client, "export", key=f"order-{order_id}")``): it resumes only runs of that key (they
    carry the label ``stepstone.key``) and two tabs triggering for the same key make one run (see
    the module docstring).
    """
    return JobState(
        source,
        job,
        initial_run_id=initial_run_id,
        auto_resume=auto_resume,
        follow_latest=follow_latest,
        storage=storage,
        max_logs=max_logs,
        key=key,
    )
