"""Turning the HTTP API's JSON back into stepstone objects, and its errors into named exceptions.

The wire shapes are the ``to_json()`` forms of :mod:`stepstone._models` (camelCase keys). Parsing is
lenient about envelopes (``{"run": {...}}`` or the bare run) so a client keeps working against a
server that adds fields. Stdlib only; must never import httpx, js or pyodide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, cast

from .. import _errors
from .._errors import (
    Forbidden,
    HTTPError,
    InvalidInput,
    InvalidRunState,
    ServerError,
    ServerUnavailable,
    StepstoneError,
    StreamError,
    Unauthorized,
)
from .._models import Event, Run, RunChange, RunList, StepRecord, TriggerResult
from .._sse import SSEMessage

__all__ = [
    "JobInfo",
    "error_from_response",
    "event_from_message",
    "run_change_from_json",
    "run_from_json",
    "run_list_from_json",
    "step_from_json",
    "trigger_result_from_json",
]


def _named_errors() -> dict[str, type[StepstoneError]]:
    """``error.code`` → exception class, for every class of the jobs API's part of the tree that
    names its own code and is raised with a message alone (not the HTTP answers, which the client
    maps by status, nor the Durable Streams errors, which are another protocol's)."""
    by_code: dict[str, type[StepstoneError]] = {}
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, StepstoneError)
            and not issubclass(cls, HTTPError | StreamError | ServerError)
            and "code" in vars(cls)
        ):
            by_code[cls.code] = cls
    by_code["unauthorized"] = Unauthorized
    by_code["forbidden"] = Forbidden
    return by_code


_BY_CODE = _named_errors()


class JobInfo(dict[str, Any]):
    """A job the server can run, as ``GET /jobs`` describes it (``name``, ``version``, ...)."""

    @property
    def name(self) -> str:
        return str(self["name"])

    @property
    def version(self) -> str:
        return str(self.get("version", ""))


def _unwrap(data: Any, key: str) -> Any:
    if isinstance(data, Mapping) and key in data and isinstance(data[key], Mapping | list):
        return data[key]
    return data


def run_from_json(data: Any) -> Run:
    return Run.from_json(_unwrap(data, "run"))


def trigger_result_from_json(data: Any) -> TriggerResult | None:
    """The run in a ``POST /trigger`` answer, or None when it carries only the run id."""
    created = bool(data.get("created", True)) if isinstance(data, Mapping) else True
    body = _unwrap(data, "run")
    if not isinstance(body, Mapping) or "jobName" not in body:
        return None
    run = Run.from_json(body)
    values = {f.name: getattr(run, f.name) for f in fields(run)}
    return TriggerResult(**values, created=created)


def run_list_from_json(data: Any, limit: int, offset: int) -> RunList:
    if isinstance(data, list):
        return RunList([Run.from_json(r) for r in data], total=len(data), limit=limit, offset=offset)
    runs = [Run.from_json(r) for r in data.get("runs", [])]
    return RunList(
        runs,
        total=int(data.get("total", len(runs))),
        limit=int(data.get("limit", limit)),
        offset=int(data.get("offset", offset)),
        version=int(data.get("version", 0)),
    )


def step_from_json(data: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=data["runId"],
        name=data["name"],
        index=int(data.get("index", 0)),
        status=cast(Any, data.get("status", "completed")),
        output=data.get("output"),
        error=data.get("error"),
        started_at=data.get("startedAt", 0.0) or 0.0,
        completed_at=data.get("completedAt", 0.0) or 0.0,
        attempt=int(data.get("attempt", 1) or 1),
        run_attempt=int(data.get("runAttempt", 1) or 1),
        retry_at=data.get("retryAt"),
    )


def run_change_from_json(data: Mapping[str, Any]) -> RunChange:
    run = data.get("run")
    return RunChange(int(data["version"]), data.get("runId") or (run or {})["id"], Run.from_json(run) if run else None)


def event_from_message(run_id: str, message: SSEMessage) -> Event | None:
    """The run event an SSE message carries, or None for a message that is not one (a ping)."""
    try:
        data = json.loads(message.data) if message.data else None
    except ValueError:
        return None
    if isinstance(data, Mapping) and "seq" in data and "type" in data:
        return Event.from_json({"runId": run_id, **data})
    if message.id is None or not message.id.isdigit() or message.event == "message":
        return None
    return Event(run_id, int(message.id), message.event, data if isinstance(data, Mapping) else {}, 0.0)


def _error_body(body: bytes) -> tuple[str | None, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, body.decode("utf-8", "replace").strip()[:200]
    err = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(err, Mapping):
        return (str(err["code"]) if err.get("code") else None), str(err.get("message") or "")
    if isinstance(err, str):
        return None, err
    return None, ""


def error_from_response(status: int, body: bytes, method: str, url: str) -> StepstoneError:
    """The named exception for an HTTP error answer ``{"error": {"code", "message"}}``."""
    code, message = _error_body(body)
    where = f"{method} {url}"
    cls = _BY_CODE.get(code) if code else None
    if (cls is not None and issubclass(cls, Unauthorized)) or (cls is None and status in (401, 403)):
        reason = message or "the server refused the request's credentials"
        refused = Forbidden if status == 403 else Unauthorized
        return refused(f"not authorized ({status}): {reason} [{where}]", status)
    # A 502/503/504 always means "try again": a server starting or stopping (``shutting_down``,
    # ``unavailable``, and ``engine_not_started`` from older servers), a failing store, a proxy
    # with no backend. Never a final answer, whatever its code says.
    if cls is ServerUnavailable or status in (502, 503, 504):
        return ServerUnavailable(f"the stepstone server is unavailable ({status}): {message or 'try again'} [{where}]")
    if cls is not None:
        return cls(message or f"{code} [{where}]")
    if status == 404:
        return ServerError(
            f"{where} answered 404 with no stepstone error: is the api_url right? {message}".rstrip(), 404, code
        )
    if status == 409:
        return InvalidRunState(message or f"the run's state forbids this [{where}]")
    if status in (413, 422):
        return InvalidInput(message or f"the server rejected the input ({status}) [{where}]")
    return ServerError(f"{where} failed with HTTP {status}: {message or 'no details'}", status, code)
