"""``use_runs`` (a live, paged list of runs) and ``use_run_actions`` (retry, cancel, delete, …).

The list loads one page with ``get_runs`` and tails the run-change feed: a change to a run on the
page is applied in place (progress bars move without a request); anything that can change the
page's membership (a new run, a deletion, a status that leaves the filter) reloads the page, with
bursts coalesced into one request.

Stdlib + asyncio only; must never import js, pyodide or httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from .._errors import InvalidInput, ServerUnavailable, StepstoneError
from .._models import RUN_STATUSES, Run, RunChange, RunStatus, StepRecord
from .._util import json_copy
from ._base import HookState, backoff_delays
from ._source import Source, job_name_of

__all__ = ["RunActions", "RunsState", "use_run_actions", "use_runs"]

T = TypeVar("T")


class RunsState(HookState):
    """A page of runs that stays current (see :func:`use_runs`)."""

    def __init__(
        self,
        source: Source,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        parent_id: str | None = None,
        page_size: int = 20,
        live: bool = True,
        settle: float = 0.05,
    ) -> None:
        super().__init__()
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, not {page_size!r}")
        self.source = source
        self.page_size = page_size
        self.page = 0
        self.runs: list[Run] = []
        self.total = 0
        self.is_loading = False
        self.live = live
        self.settle = settle
        self._set_filter_fields(job_name, status, labels, parent_id)
        self._dirty = asyncio.Event()
        self._loaded_once = False
        # The feed starts at the version the server read just before a page was listed, so a
        # change made between listing and subscribing is never missed.
        self._listed = asyncio.Event()
        self._list_version = 0
        self._spawn(self._loader(), "stepstone-runs-loader")
        self._feed: asyncio.Task[None] | None = None
        if live:
            self._feed = self._spawn(self._follow(), "stepstone-runs-feed")
        self._dirty.set()

    def _set_filter_fields(
        self, job_name: Any, status: Any, labels: Mapping[str, str] | None, parent_id: str | None
    ) -> None:
        self.job_name = None if job_name is None else job_name_of(job_name)
        statuses = None if status is None else (status,) if isinstance(status, str) else tuple(status)
        bad = [s for s in statuses or () if s not in RUN_STATUSES]
        if bad:
            raise ValueError(f"unknown status {bad[0]!r}; one of {', '.join(RUN_STATUSES)}")
        self.status: tuple[RunStatus, ...] | None = statuses or None
        self.labels = dict(labels) if labels else None
        self.parent_id = parent_id or None

    # -- paging ----------------------------------------------------------------------------------
    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_next(self) -> bool:
        return (self.page + 1) * self.page_size < self.total

    @property
    def has_prev(self) -> bool:
        return self.page > 0

    def next_page(self) -> None:
        if self.has_next:
            self.go_to(self.page + 1)

    def prev_page(self) -> None:
        if self.has_prev:
            self.go_to(self.page - 1)

    def go_to(self, page: int) -> None:
        """Show page ``page`` (0-based)."""
        self.page = max(0, page)
        self.refresh()

    def set_filter(self, job_name: Any = None, status: RunStatus | Iterable[RunStatus] | None = None,
                   labels: Mapping[str, str] | None = None, parent_id: str | None = None) -> None:
        """Filter by job, status(es), labels and parent run (None: any); back to the first page."""
        old_job = self.job_name
        self._set_filter_fields(job_name, status, labels, parent_id)
        self.page = 0
        if self.live and self.job_name != old_job:
            if self._feed is not None:
                self._feed.cancel()
            self._feed = self._spawn(self._follow(), "stepstone-runs-feed")
        self.refresh()

    def refresh(self) -> None:
        """Reload the current page (soon; several calls in a burst make one request)."""
        self.is_loading = True
        self._dirty.set()
        self._changed()

    # -- loading ---------------------------------------------------------------------------------
    async def _loader(self) -> None:
        next_delay = backoff_delays()
        while True:
            await self._dirty.wait()
            if self._loaded_once and self.settle:
                await asyncio.sleep(self.settle)  # let a burst of changes settle into one request
            self._dirty.clear()
            self.is_loading = True
            try:
                page = await self.source.get_runs(
                    self.job_name, self.status, self.labels, limit=self.page_size, offset=self.page * self.page_size,
                    **({"parent_id": self.parent_id} if self.parent_id is not None else {}),
                )
            except ServerUnavailable as exc:
                self.is_loading = False
                self._ready.set()
                self._set_problem(exc)
                await asyncio.sleep(next_delay())
                self._dirty.set()
                continue
            except StepstoneError as exc:
                self.is_loading = False
                self._ready.set()
                self._set_problem(exc)
                continue
            next_delay = backoff_delays()
            if not page and page.total and self.page > 0:  # the page emptied under us: step back
                self.page = max(0, -(-page.total // self.page_size) - 1)
                self._dirty.set()
                continue
            self.runs, self.total = list(page), page.total
            self._list_version = page.version
            self._listed.set()
            self._loaded_once = True
            self.is_loading = self._dirty.is_set()
            self._problem = self._problem_code = None
            self._ready.set()
            self._changed()

    async def _follow(self) -> None:
        next_delay = backoff_delays()
        version: int | None = None
        while True:
            if version is None:
                await self._listed.wait()
                version = self._list_version
            try:
                async for change in self.source.subscribe_runs(from_version=version, job_name=self.job_name):
                    version = change.version
                    self._apply(change)
                return
            except ServerUnavailable as exc:
                self._set_problem(exc)
                await asyncio.sleep(next_delay())
                self._dirty.set()
            except StepstoneError as exc:
                self._set_problem(exc)
                return

    def _matches(self, run: Run) -> bool:
        if self.job_name is not None and run.job_name != self.job_name:
            return False
        if self.status is not None and run.status not in self.status:
            return False
        if self.parent_id is not None and run.parent_id != self.parent_id:
            return False
        return not self.labels or all(run.labels.get(k) == v for k, v in self.labels.items())

    def _apply(self, change: RunChange) -> None:
        for i, shown in enumerate(self.runs):
            if shown.id == change.run_id:
                if change.run is not None and self._matches(change.run):
                    if change.run.version >= shown.version:
                        self.runs[i] = change.run
                        self._changed()
                    return
                break
        else:
            if change.run is None or not self._matches(change.run):
                return  # neither on the page nor going to be
        self._dirty.set()


class RunActions(HookState):
    """``retry``, ``cancel``, ``delete_run``, ``send_event``, ``get_run``, ``get_steps`` with ``is_loading`` and
    ``error`` (see :func:`use_run_actions`). Each action also raises what the source raises."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self._in_flight = 0
        self._ready.set()

    @property
    def is_loading(self) -> bool:
        return self._in_flight > 0

    async def _do(self, action: Callable[[], Awaitable[T]]) -> T:
        self._in_flight += 1
        self._problem = self._problem_code = None
        self._changed()
        try:
            result = await action()
        except Exception as exc:
            self._in_flight -= 1
            self._set_problem(exc)
            raise
        self._in_flight -= 1
        self._changed()
        return result

    async def retry(self, run_id: str) -> Run:
        return await self._do(lambda: self.source.retry(run_id))

    async def cancel(self, run_id: str) -> Run:
        return await self._do(lambda: self.source.cancel(run_id))

    async def delete_run(self, run_id: str) -> None:
        await self._do(lambda: self.source.delete_run(run_id))

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None:
        """Send event ``name`` with ``data`` to a run: its next ``step.wait_for_event(name)``
        takes it (queued until then). Raises RunNotFound, InvalidRunState (a finished run) or
        InvalidInput (a bad name, data that is not JSON), and keeps the message in ``error``."""
        async def send() -> None:
            try:  # the same refusal from an Engine and a Client (which could not even encode it)
                json_copy(data)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"the data of event {name!r} cannot be stored as JSON: {exc}") from None
            await self.source.send_event(run_id, name, data)

        await self._do(send)

    async def get_run(self, run_id: str) -> Run | None:
        return await self._do(lambda: self.source.get_run(run_id))

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return await self._do(lambda: self.source.get_steps(run_id))


def use_runs(
    source: Source,
    job_name: Any = None,
    status: RunStatus | Iterable[RunStatus] | None = None,
    page_size: int = 20,
    *,
    labels: Mapping[str, str] | None = None,
    parent_id: str | None = None,
    live: bool = True,
) -> RunsState:
    """A page of runs, newest first, kept current from the run-change feed.

        runs = use_runs(client, status="failed", page_size=10)
        await runs.ready()
        for run in runs.runs: ...
        runs.next_page(); runs.set_filter(job_name="demo-steps")
        children = use_runs(client, parent_id=run.id)     # the child runs of a run (step.invoke)

    Fields: ``runs``, ``total``, ``page`` (0-based), ``page_size``, ``page_count``, ``has_next``,
    ``has_prev``, ``is_loading``, ``error``.
    """
    return RunsState(source, job_name, status, labels=labels, parent_id=parent_id, page_size=page_size, live=live)


def use_run_actions(source: Source) -> RunActions:
    """Run actions with a loading flag and an error message for the page.

        actions = use_run_actions(client)
        await actions.retry(run_id)      # raises too; actions.error keeps the message
        await actions.send_event(run_id, "approval", {"ok": True})
    """
    return RunActions(source)
