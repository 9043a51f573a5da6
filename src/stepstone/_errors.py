"""The one exception tree of stepstone: the engine, the stores, the jobs client, the server and the
Durable Streams client and server all raise from here. Pure Python; imports nothing.

StepstoneError                 every error stepstone raises on purpose; ``code`` is stable (HTTP ``error.code``)
├── JobNotFound                no job registered under that name
├── DuplicateJob               a second job registered under a taken name
├── RunNotFound                no run with that id
├── InvalidInput               the job's validator rejected the input, or it is not JSON
├── InvalidOutput              the job's output validator rejected what the job returned
├── InvalidRunState            the run is in a state that forbids the operation (retry a completed run)
├── DuplicateStepError         one execution called step.run twice with the same name
├── StepResultNotSerializable  a step returned a value that JSON cannot hold
├── StaleLeaseError            a write carried an epoch that is no longer the run's (fencing)
├── StaleEpochError            a stream producer was fenced by a newer producer epoch
│   └── ProducerFenced             … as the Durable Streams protocol says it (HTTP 403, ``current_epoch``)
├── WaitTimeout                wait() gave up, or step.wait_for_event timed out (also a TimeoutError)
├── RunCancelled               raised inside a job when its run is cancelled; cleanup steps may run
├── ChildRunFailed             step.invoke's child run failed or was cancelled (``child_id``, ``error``)
├── StepFailed                 a step that failed for good, as a replay raises it (``step``, ``error``)
├── StoreError                 the store could not be opened or used
│   ├── UnsupportedStoreURL        the URL names no known store
│   └── SchemaError                the database was written by a newer stepstone
├── EngineNotStarted           an operation needs init() first
├── HTTPError                  an HTTP error answer (``status``, ``code``, ``message``, ``headers``):
│   │                          raise it in a request (an ``authorize`` hook) and the client gets exactly that
│   ├── BadRequest                 400: malformed JSON, a missing or malformed parameter
│   └── Unauthorized               401: no (valid) credentials; the client raises it for 401 and 403
│       └── Forbidden                  403: credentials known, but not allowed
├── ServerUnavailable          the server could not be reached, or said 502/503/504 (also a ConnectionError)
│   └── TransportError             no answer at all (refused, reset, timed out): what every transport raises
├── ServerError                the server answered with an error the client has no name for (``.status``)
└── StreamError                a Durable Streams error; ``status`` is the HTTP status the protocol gives it
    ├── InvalidStreamRequest       malformed request (offset, TTL, producer headers, JSON, …)
    ├── StreamNotFound             404
    ├── StreamGone                 410: deleted while forks still read from it
    ├── StreamConflict             409: conflicts with the stream's state or configuration
    │   ├── ContentTypeMismatch
    │   ├── StreamSeqConflict          a ``Stream-Seq`` not greater than the last accepted
    │   ├── StreamClosedError          an append to a closed stream (``tail``)
    │   └── ProducerSeqGap             a producer skipped sequence numbers (``expected``, ``received``)
    ├── StreamHTTPError            an HTTP error the protocol gives no specific meaning (``status``)
    ├── ProducerClosed             ``append`` after the producer was closed or detached
    └── TransportError             (the same class as above: a stream client's "no answer" is both)
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ChildRunFailed",
    "ContentTypeMismatch",
    "DuplicateJob",
    "DuplicateStepError",
    "EngineNotStarted",
    "Forbidden",
    "HTTPError",
    "InvalidInput",
    "InvalidOutput",
    "InvalidRunState",
    "InvalidStreamRequest",
    "JobNotFound",
    "ProducerClosed",
    "ProducerFenced",
    "ProducerSeqGap",
    "RunCancelled",
    "RunNotFound",
    "SchemaError",
    "ServerError",
    "ServerUnavailable",
    "StaleEpochError",
    "StaleLeaseError",
    "StepFailed",
    "StepResultNotSerializable",
    "StepstoneError",
    "StoreError",
    "StreamClosedError",
    "StreamConflict",
    "StreamError",
    "StreamGone",
    "StreamHTTPError",
    "StreamNotFound",
    "StreamSeqConflict",
    "TransportError",
    "Unauthorized",
    "UnsupportedStoreURL",
    "WaitTimeout",
]


class StepstoneError(Exception):
    """Root of every error stepstone raises on purpose.

    ``code`` is a stable, machine-readable name (the HTTP API puts it in ``error.code``).
    """

    code = "stepstone_error"


# -- the engine and the stores -----------------------------------------------------------------
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


class RunCancelled(StepstoneError):
    """Raised inside a job, at the step it is awaiting, when its run is cancelled (by this process
    or another). The job may catch it and run cleanup steps, which are recorded; whatever it does
    then, the run ends ``cancelled``."""

    code = "run_cancelled"


class ChildRunFailed(StepstoneError):
    """``step.invoke`` ran a child run that failed or was cancelled. ``child_id`` names it and
    ``error`` is its error text; catch it to carry on without the child's output."""

    code = "child_run_failed"

    def __init__(self, message: str, child_id: str = "", error: str | None = None) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.error = error


class StepFailed(StepstoneError):
    """A step that failed for good (its retries used up) in an earlier execution of this run
    attempt: a replay does not run it again and raises this instead, with the recorded ``error``
    text. (The first time, the job saw the step's own exception.)"""

    code = "step_failed"

    def __init__(self, message: str, step: str = "", error: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.error = error


class StoreError(StepstoneError):
    code = "store_error"


class UnsupportedStoreURL(StoreError):
    code = "unsupported_store_url"


class SchemaError(StoreError):
    code = "schema_error"


class EngineNotStarted(StepstoneError):
    code = "engine_not_started"


# -- HTTP: what a server answers, what a client raises -----------------------------------------
class HTTPError(StepstoneError):
    """An error with an HTTP status; raise it from an ``authorize`` hook (or anywhere in a request)
    and the client gets ``status`` with ``{"error": {"code": code, "message": message}}``.

        def authorize(request):
            if request.headers.get("authorization") != "Bearer s3cret":
                raise HTTPError(401, "unauthorized", "a valid bearer token is required")
            return True
    """

    code = "http_error"

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an HTTPError status must be 4xx or 5xx, not {status}")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class BadRequest(HTTPError):
    """400 ``bad_request``: malformed JSON, a missing or malformed parameter."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


class Unauthorized(HTTPError):
    """401 ``unauthorized``: no (valid) credentials. A server sends ``WWW-Authenticate: <scheme>``
    with it; the client raises it when the server refused the request's credentials (401, or 403
    as its subclass :class:`Forbidden`): check the headers you send."""

    code = "unauthorized"

    def __init__(self, message: str = "authentication required", status: int = 401, *, scheme: str = "Bearer") -> None:
        code = "forbidden" if status == 403 else "unauthorized"
        super().__init__(status, code, message, {"WWW-Authenticate": scheme} if status == 401 else None)


class Forbidden(Unauthorized):
    """403 ``forbidden``: credentials known, but not allowed (also what ``authorize`` → False gives)."""

    code = "forbidden"

    def __init__(self, message: str = "not allowed", status: int = 403) -> None:
        super().__init__(message, status)


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


# -- Durable Streams ---------------------------------------------------------------------------
class StreamError(StepstoneError):
    """Root of the Durable Streams errors; ``status`` is the HTTP status the protocol gives it."""

    code = "stream_error"
    status = 400


class InvalidStreamRequest(StreamError):
    """The request is malformed (bad offset, bad TTL, bad producer headers, bad JSON, …)."""

    code = "invalid_request"
    status = 400


class StreamNotFound(StreamError):
    code = "stream_not_found"
    status = 404


class StreamGone(StreamError):
    """The stream was deleted while forks still read from it (soft-deleted)."""

    code = "stream_gone"
    status = 410


class StreamConflict(StreamError):
    """The request conflicts with the stream's state or configuration."""

    code = "stream_conflict"
    status = 409


class ContentTypeMismatch(StreamConflict):
    code = "content_type_mismatch"


class StreamSeqConflict(StreamConflict):
    """A ``Stream-Seq`` not greater than the last one accepted."""

    code = "stream_seq_conflict"


class StreamClosedError(StreamConflict):
    """An append to a closed stream. ``tail`` is the final offset."""

    code = "stream_closed"

    def __init__(self, message: str, tail: str = "") -> None:
        super().__init__(message)
        self.tail = tail


class ProducerSeqGap(StreamConflict):
    """A producer skipped sequence numbers: ``expected`` is the next seq the server accepts."""

    code = "producer_seq_gap"

    def __init__(self, message: str, expected: int, received: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.received = received


class ProducerFenced(StaleEpochError):
    """A producer wrote with an epoch older than the stream has seen (zombie fencing, HTTP 403)."""

    status = 403

    def __init__(self, message: str, current_epoch: int) -> None:
        super().__init__(message)
        self.current_epoch = current_epoch


class StreamHTTPError(StreamError):
    """An HTTP error the protocol gives no specific meaning (5xx, 401, 413, …)."""

    code = "http_error"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ProducerClosed(StreamError):
    """``append`` after ``close()`` or ``detach()``."""

    code = "producer_closed"


class TransportError(ServerUnavailable, StreamError):
    """No answer arrived: the connection was refused, reset or timed out. Every transport raises
    it (and only it); retrying is safe for reads and for idempotent producer batches. It is a
    :class:`ServerUnavailable` for the jobs client and a :class:`StreamError` for the streams client."""

    code = "transport_error"
    status = 0
