"""HTTP errors of the jobs API: the ``{"error": {"code", "message"}}`` body and the mapping from
stepstone's exception tree (``_errors.py``, where ``HTTPError`` and its subclasses live) to status
codes.

Server-only (imports starlette); never imported by ``stepstone/__init__.py`` or the browser path.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from .._errors import (
    BadRequest,
    EngineNotStarted,
    Forbidden,
    HTTPError,
    InvalidInput,
    InvalidRunState,
    JobNotFound,
    RunNotFound,
    StepstoneError,
    StoreError,
    Unauthorized,
)

__all__ = [
    "RETRY_AFTER",
    "BadRequest",
    "Forbidden",
    "HTTPError",
    "Unauthorized",
    "error_body",
    "error_response",
    "response_for",
    "shutting_down",
    "unavailable",
]

#: Seconds a client is told to wait before trying a server that is starting or stopping again.
RETRY_AFTER = "1"

log = logging.getLogger("stepstone.server")

_STATUS: dict[type[StepstoneError], int] = {
    JobNotFound: 404,
    RunNotFound: 404,
    InvalidRunState: 409,
    InvalidInput: 422,
}


def shutting_down() -> HTTPError:
    """503 while the server stops (and after): clients retry, and reach the next server."""
    return HTTPError(
        503, "shutting_down", "the server is shutting down; try again shortly", {"Retry-After": RETRY_AFTER}
    )


def unavailable(message: str = "the server is not ready (its engine is not started); try again shortly") -> HTTPError:
    """503 while the engine is not started (or its store failed): clients retry."""
    return HTTPError(503, "unavailable", message, {"Retry-After": RETRY_AFTER})


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The one error shape of every stepstone HTTP answer (jobs API and Durable Streams alike)."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def response_for(exc: BaseException) -> JSONResponse:
    """The JSON error response for an exception. Never leaks a traceback: anything unexpected is
    logged here and answered with a bare 500."""
    if isinstance(exc, HTTPError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, EngineNotStarted):  # a request that was in flight when the engine stopped
        return response_for(unavailable())
    if isinstance(exc, StoreError):  # the detail (a file path, an SQL error) is for the log only
        log.error("stepstone: the store failed: %s", exc)
        return response_for(unavailable("the store failed to handle this request; try again shortly"))
    if isinstance(exc, StepstoneError):
        for cls, status in _STATUS.items():
            if isinstance(exc, cls):
                return error_response(status, exc.code, str(exc))
    log.error("stepstone: request failed", exc_info=exc)
    return error_response(500, "internal_error", "the server failed to handle this request; see its log")
