"""What the worker and an execution need from their engine, and nothing more: the store, who they
are (``owner``), the timings, the registered jobs and where written events go. Stdlib only.

The engine makes one :class:`Runtime` and hands it down; no piece below the engine sees the
``Engine`` or its private fields, so each can be built and tested with a runtime of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._jobs import Job
from ._models import Event
from .stores._contract import Store

__all__ = ["Runtime"]


@dataclass(eq=False)
class Runtime:
    """The engine's settings and services, as its worker and executions see them."""

    store: Store
    #: This engine's lease owner name (``pid-random``): written on every run it claims.
    owner: str
    #: Registered jobs by name; the engine's own dict, so a job registered later is seen at once.
    jobs: Mapping[str, Job]
    #: Hands events this engine wrote to its ``on`` callbacks.
    dispatch: Callable[[list[Event]], None]
    polling_interval: float = 1.0
    heartbeat_interval: float = 5.0
    stale_threshold: float = 30.0
    concurrency: int = 4
    event_linger: float = 0.01
    retention: float | None = None

    @property
    def job_names(self) -> frozenset[str]:
        """The names the worker may claim runs of."""
        return frozenset(self.jobs)
