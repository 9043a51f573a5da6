"""What a hook needs from its source: the methods an ``Engine`` (local mode) and a ``Client`` (server
mode) share, as a protocol, plus a name for the source used to scope stored run ids.

Stdlib only; must never import the client's transports, js or pyodide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from .._models import Event, Run, RunChange, RunList, RunStatus, StepRecord, TriggerResult

__all__ = ["Source", "job_name_of", "source_scope"]


@runtime_checkable
class Source(Protocol):
    """An :class:`~stepstone.Engine`, a :class:`~stepstone.client.Client` or a
    :class:`~stepstone.browser.worker.WorkerSource` (an engine in a Web Worker)."""

    async def trigger(
        self,
        job: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> TriggerResult: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_runs(
        self,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
    ) -> RunList: ...

    async def get_steps(self, run_id: str) -> list[StepRecord]: ...

    async def retry(self, run_id: str) -> Run: ...

    async def cancel(self, run_id: str) -> Run: ...

    async def delete_run(self, run_id: str) -> None: ...

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None: ...

    async def wait(self, run_id: str, timeout: float | None = None) -> Run: ...

    def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[Event]: ...

    def subscribe_runs(
        self, from_version: int | None = None, job_name: str | None = None
    ) -> AsyncIterator[RunChange]: ...


def source_scope(source: Any) -> str:
    """The source's own ``scope`` when it has one (a :class:`~stepstone.browser.worker.WorkerSource`
    says ``worker:<script>``), else ``server:<api_url>`` for a Client and ``local`` for an Engine:
    stored run ids never mix."""
    scope = getattr(source, "scope", None)
    if isinstance(scope, str) and scope:
        return scope
    api_url = getattr(source, "api_url", None)
    return f"server:{api_url}" if isinstance(api_url, str) else "local"


def job_name_of(job: Any) -> str:
    """A job's name from a name, a ``Job`` or a ``JobHandle``."""
    name = job if isinstance(job, str) else getattr(job, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"expected a job name, a Job or a JobHandle, not {job!r}")
    return name
