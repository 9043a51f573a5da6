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

from ._engine import Engine, JobHandle, Snapshot, create_engine
from ._errors import (
    DuplicateJob,
    DuplicateStepError,
    EngineNotStarted,
    InvalidInput,
    InvalidOutput,
    InvalidRunState,
    JobNotFound,
    RunNotFound,
    SchemaError,
    ServerError,
    ServerUnavailable,
    StaleEpochError,
    StaleLeaseError,
    StepResultNotSerializable,
    StepstoneError,
    StoreError,
    Unauthorized,
    UnsupportedStoreURL,
    WaitTimeout,
)
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
)
from ._step import Step, StepLogger
from .stores import NewEvent, NewRun, RunFilter, Store, open_store
from .stores.memory import MemoryStore

__version__ = "0.1.0"

__all__ = [
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
    "RunChange",
    "RunFilter",
    "RunList",
    "RunNotFound",
    "RunStatus",
    "SchemaError",
    "ServerError",
    "ServerUnavailable",
    "Snapshot",
    "StaleEpochError",
    "StaleLeaseError",
    "Step",
    "StepLogger",
    "StepRecord",
    "StepResultNotSerializable",
    "StepstoneError",
    "Store",
    "StoreError",
    "TriggerResult",
    "Unauthorized",
    "UnsupportedStoreURL",
    "WaitTimeout",
    "__version__",
    "create_engine",
    "define_job",
    "job",
    "open_store",
]
