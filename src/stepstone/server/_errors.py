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
    Unauthorized,
)

__all__ = ["BadRequest", "Forbidden", "HTTPError", "Unauthorized", "error_body", "error_response", "response_for"]

log = logging.getLogger("stepstone.server")

_STATUS: dict[type[StepstoneError], int] = {
    JobNotFound: 404,
    RunNotFound: 404,
    InvalidRunState: 409,
    InvalidInput: 422,
    EngineNotStarted: 503,
}


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
    if isinstance(exc, StepstoneError):
        for cls, status in _STATUS.items():
            if isinstance(exc, cls):
                return error_response(status, exc.code, str(exc))
    log.error("stepstone: request failed", exc_info=exc)
    return error_response(500, "internal_error", "the server failed to handle this request; see its log")
