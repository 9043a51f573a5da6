"""stepstone: durable, resumable jobs for Python, in a browser tab (Pyodide) and on a server.

import stepstone

@stepstone.job("sync-users", version="1")
async def sync_users(step, payload):
    users = await step.run("fetch-users", lambda: fetch_users(payload["org_id"]))
    step.progress(1, 2, "fetched")
    return {"synced": len(users)}

engine = stepstone.create_engine("sqlite:///jobs.db")
engine.register(sync_users)
async with engine:
    run = await engine.trigger("sync-users", {"org_id": "o1"})
    run = await engine.wait(run.id, timeout=30)
"""

# Names load on first use (PEP 562): a page that only needs the client and hooks never imports
# the engine, the stores or the cron parser (in Pyodide each module costs start-up time). The
# error tree is small and every part needs it, so it loads at once.
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._errors import (
    ChildRunFailed,
    DuplicateJob,
    DuplicateStepError,
    EngineNotStarted,
    InvalidInput,
    InvalidOutput,
    InvalidRunState,
    JobNotFound,
    RunCancelled,
    RunNotFound,
    SchemaError,
    ServerError,
    ServerUnavailable,
    StaleEpochError,
    StaleLeaseError,
    StepFailed,
    StepResultNotSerializable,
    StepstoneError,
    StoreError,
    Unauthorized,
    UnsupportedStoreURL,
    WaitTimeout,
)

if _TYPE_CHECKING:
    from ._engine import Engine, JobHandle, Snapshot, create_engine
    from ._jobs import Job, define_job, job
    from ._models import (
        EVENT_TYPES,
        RUN_STATUSES,
        Event,
        Progress,
        Run,
        RunChange,
        RunList,
        RunStatus,
        StepRecord,
        TriggerResult,
        Wait,
    )
    from ._schedules import Schedule
    from ._step import Step, StepLogger
    from .stores import NewEvent, NewRun, RunFilter, Store, open_store
    from .stores.memory import MemoryStore

_LAZY = {
    "._engine": ("Engine", "JobHandle", "Snapshot", "create_engine"),
    "._jobs": ("Job", "define_job", "job"),
    "._models": ("EVENT_TYPES", "RUN_STATUSES", "Event", "Progress", "Run", "RunChange", "RunList", "RunStatus",
                 "StepRecord", "TriggerResult", "Wait"),
    "._schedules": ("Schedule",),
    "._step": ("Step", "StepLogger"),
    ".stores": ("NewEvent", "NewRun", "RunFilter", "Store", "open_store"),
    ".stores.memory": ("MemoryStore",),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> _Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'stepstone' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "ChildRunFailed",
    "DuplicateJob",
    "DuplicateStepError",
    "EVENT_TYPES",
    "Engine",
    "EngineNotStarted",
    "Event",
    "InvalidInput",
    "InvalidOutput",
    "InvalidRunState",
    "Job",
    "JobHandle",
    "JobNotFound",
    "MemoryStore",
    "NewEvent",
    "NewRun",
    "Progress",
    "RUN_STATUSES",
    "Run",
    "RunCancelled",
    "RunChange",
    "RunFilter",
    "RunList",
    "RunNotFound",
    "RunStatus",
    "Schedule",
    "SchemaError",
    "ServerError",
    "ServerUnavailable",
    "Snapshot",
    "StaleEpochError",
    "StaleLeaseError",
    "Step",
    "StepFailed",
    "StepLogger",
    "StepRecord",
    "StepResultNotSerializable",
    "StepstoneError",
    "Store",
    "StoreError",
    "TriggerResult",
    "Unauthorized",
    "UnsupportedStoreURL",
    "Wait",
    "WaitTimeout",
    "__version__",
    "create_engine",
    "define_job",
    "job",
    "open_store",
]
