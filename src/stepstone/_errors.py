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
├── EngineNotStarted       an operation needs init() first
│   (raised by stepstone.client when talking to a server:)
├── Unauthorized           the server refused the request's credentials (HTTP 401 or 403)
├── ServerUnavailable      the server could not be reached, or said 502/503/504 (also a ConnectionError)
└── ServerError            the server answered with an error the client has no name for (``.status``)
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
    "ServerError",
    "ServerUnavailable",
    "Unauthorized",
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


class Unauthorized(StepstoneError):
    """The server's ``authorize`` hook refused the request (HTTP 401 or 403): check the headers."""

    code = "unauthorized"

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailable(StepstoneError, ConnectionError):
    """The server could not be reached (refused, reset, timed out) or said 502/503/504."""

    code = "server_unavailable"


class ServerError(StepstoneError):
    """The server answered with an error the client has no named exception for.

    ``status`` is the HTTP status; ``code`` is the server's ``error.code`` when it sent one.
    """

    code = "server_error"

    def __init__(self, message: str, status: int = 500, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code:
            self.code = code
