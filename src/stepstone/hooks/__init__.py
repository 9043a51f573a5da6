"""stepstone.hooks: observable state objects for pages and apps, in the manner of React hooks.

Each hook takes a *source*, an :class:`~stepstone.Engine` (local mode: the engine runs here) or a
:class:`~stepstone.client.Client` (server mode), and returns a state object with the same fields
either way. A state is observable (``subscribe(callback)`` returns an unsubscribe function), can be
awaited (``ready()``, ``wait_for(predicate)``) and is closed with ``close()``.

    from stepstone.client import Client
    from stepstone.hooks import use_job

    job = use_job(Client("/api"), "demo-steps")
    job.subscribe(lambda s: print(s.status, s.progress, len(s.logs)))
    await job.trigger({"steps": 5})

Hooks: :func:`use_job`, :func:`use_job_run`, :func:`use_job_logs`, :func:`use_runs`,
:func:`use_run_actions`. Stdlib + asyncio only; :mod:`stepstone.hooks.dom` (PyScript) is the only
module here that touches the browser, and only when called.
"""

from ._base import HookState, describe_error
from ._job import JobState, use_job
from ._run import LogEntry, LogsState, RunState, StepView, use_job_logs, use_job_run
from ._runs import RunActions, RunsState, use_run_actions, use_runs
from ._source import Source
from ._storage import LocalStorage, MemoryStorage, Storage, default_storage

__all__ = [
    "HookState",
    "JobState",
    "LocalStorage",
    "LogEntry",
    "LogsState",
    "MemoryStorage",
    "RunActions",
    "RunState",
    "RunsState",
    "Source",
    "StepView",
    "Storage",
    "default_storage",
    "describe_error",
    "use_job",
    "use_job_logs",
    "use_job_run",
    "use_run_actions",
    "use_runs",
]
