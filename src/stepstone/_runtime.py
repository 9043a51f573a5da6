"""What the worker and an execution need from their engine, and nothing more: the store, who they
are (``owner``), the clock and timings, the registered jobs, where written events go and how a
child run is started. Stdlib only.

The engine makes one :class:`Runtime` and hands it down; no piece below the engine sees the
``Engine`` or its private fields, so each can be built and tested with a runtime of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._clock import Clock, SystemClock
from ._jobs import Job
from ._models import Event, Run
from ._tracing import Tracer
from .stores._contract import Store

__all__ = ["Runtime", "StartChild"]

#: Start (or find) the child run of ``parent`` for its step: ``(job name, input, parent run, step name)``.
StartChild = Callable[[str, Any, Run, str], Awaitable[Run]]


async def _no_children(job: str, input: Any, parent: Run, step: str) -> Run:
    raise RuntimeError("this runtime starts no child runs")


@dataclass(eq=False)
class Runtime:
    """The engine's settings and services, as its worker and executions see them."""

    store: Store
    #: This engine's lease owner name (``pid-random``): written on every run it claims.
    owner: str
    #: Registered jobs: name → version → Job. The engine's own dict, so a job registered later is
    #: seen at once.
    jobs: Mapping[str, Mapping[str, Job]]
    #: Hands events this engine wrote to its ``on`` callbacks.
    dispatch: Callable[[list[Event]], None]
    start_child: StartChild = _no_children
    clock: Clock = field(default_factory=SystemClock)
    #: Traces run attempts and steps (``stepstone.otel``), or None.
    tracer: Tracer | None = None
    polling_interval: float = 1.0
    heartbeat_interval: float = 5.0
    stale_threshold: float = 30.0
    concurrency: int = 4
    event_linger: float = 0.01
    retention: float | None = None

    def job_keys(self) -> list[tuple[str, str]]:
        """The ``(name, version)`` pairs the worker may claim runs of: only code of a run's own
        version ever executes it."""
        return [(name, version) for name, versions in self.jobs.items() for version in versions]

    def job_for(self, run: Run) -> Job | None:
        return self.jobs.get(run.job_name, {}).get(run.job_version)
