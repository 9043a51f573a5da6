"""HTTP errors of the jobs API: the ``{"error": {"code", "message"}}`` body and the mapping from
stepstone's exception tree to status codes.

Server-only (imports starlette); never imported by ``stepstone/__init__.py`` or the browser path.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from .._errors import (
    EngineNotStarted,
    InvalidInput,
    InvalidRunState,
    JobNotFound,
    RunNotFound,
    StepstoneError,
)

__all__ = ["BadRequest", "Forbidden", "HTTPError", "Unauthorized", "error_response", "response_for"]

log = logging.getLogger("stepstone.server")

_STATUS: dict[type[StepstoneError], int] = {
    JobNotFound: 404,
    RunNotFound: 404,
    InvalidRunState: 409,
    InvalidInput: 422,
    EngineNotStarted: 503,
}


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

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


class Unauthorized(HTTPError):
    """401 ``unauthorized``: no (valid) credentials; sends ``WWW-Authenticate: Bearer``."""

    def __init__(self, message: str = "authentication required", scheme: str = "Bearer") -> None:
        super().__init__(401, "unauthorized", message, {"WWW-Authenticate": scheme})


class Forbidden(HTTPError):
    """403 ``forbidden``: credentials known, but not allowed (also what ``authorize`` → False gives)."""

    def __init__(self, message: str = "not allowed") -> None:
        super().__init__(403, "forbidden", message)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


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
