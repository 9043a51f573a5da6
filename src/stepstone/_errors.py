"""The exception tree of stepstone. Pure Python; imports nothing.

    StepstoneError
    ├── JobNotFound            no job registered under that name
    ├── DuplicateJob           a second job registered under a taken name
    ├── RunNotFound            no run with that id
    ├── InvalidInput           the job's validator rejected the input, or it is not JSON
    ├── InvalidOutput          the job's output validator rejected what the job returned
    ├── InvalidRunState        the run is in a state that forbids the operation (retry a completed run)
    ├── DuplicateStepError     one execution called step.run twice with the same name
    ├── StepResultNotSerializable  a step returned a value that JSON cannot hold
    ├── StaleLeaseError        a write carried an epoch that is no longer the run's (fencing)
    ├── StaleEpochError        a stream producer was fenced by a newer producer epoch
    ├── WaitTimeout            wait() gave up before the run finished (also a TimeoutError)
    ├── StoreError             the store could not be opened or used
    │   ├── UnsupportedStoreURL    the URL names no known store
    │   └── SchemaError            the database was written by a newer stepstone
    └── EngineNotStarted       an operation needs init() first
"""

from __future__ import annotations

__all__ = [
    "DuplicateJob",
    "DuplicateStepError",
    "EngineNotStarted",
    "InvalidInput",
    "InvalidOutput",
    "InvalidRunState",
    "JobNotFound",
    "RunNotFound",
    "SchemaError",
    "StaleEpochError",
    "StaleLeaseError",
    "StepResultNotSerializable",
    "StepstoneError",
    "StoreError",
    "UnsupportedStoreURL",
    "WaitTimeout",
]


class StepstoneError(Exception):
    """Root of every error stepstone raises on purpose.

    ``code`` is a stable, machine-readable name (the HTTP API puts it in ``error.code``).
    """

    code = "stepstone_error"


class JobNotFound(StepstoneError):
    code = "job_not_found"


class DuplicateJob(StepstoneError):
    code = "duplicate_job"


class RunNotFound(StepstoneError):
    code = "run_not_found"


class InvalidInput(StepstoneError):
    code = "invalid_input"


class InvalidOutput(StepstoneError):
    code = "invalid_output"


class InvalidRunState(StepstoneError):
    code = "invalid_run_state"


class DuplicateStepError(StepstoneError):
    code = "duplicate_step"


class StepResultNotSerializable(StepstoneError):
    code = "step_result_not_serializable"


class StaleLeaseError(StepstoneError):
    """A fenced write was refused: another worker (or a cancel) took the run over."""

    code = "stale_lease"


class StaleEpochError(StepstoneError):
    """A stream producer's epoch is older than the one the server has seen."""

    code = "stale_epoch"


class WaitTimeout(StepstoneError, TimeoutError):
    code = "wait_timeout"


class StoreError(StepstoneError):
    code = "store_error"


class UnsupportedStoreURL(StoreError):
    code = "unsupported_store_url"


class SchemaError(StoreError):
    code = "schema_error"


class EngineNotStarted(StepstoneError):
    code = "engine_not_started"
