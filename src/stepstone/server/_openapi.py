"""The OpenAPI 3.1 document of the jobs API, served at ``<base>/openapi.json``.

Exact, not merely descriptive: every parameter is bounded as the server bounds it (a value the
document calls invalid is refused with a 4xx, one it calls valid is not refused for its form),
every status a route can answer is listed with its error shape, responses are closed objects, and
the SSE endpoints describe each event (``id``, ``event``, ``data``: as the OpenAPI 3.1 convention
has ``schema`` describe one event of a ``text/event-stream``). ``tests/server/test_openapi_fuzz.py``
holds the server to it with schemathesis.

Plain data, stdlib only (kept beside the server; imports nothing from starlette).
"""

from __future__ import annotations

from typing import Any

from .._models import EVENT_TYPES, RUN_STATUSES

__all__ = ["MAX_INT", "STATUS_LIST_PATTERN", "openapi_document"]

_REF = "#/components/schemas/"

#: The largest integer a query parameter or ``Last-Event-ID`` may carry (18 digits).
MAX_INT = 10**18 - 1

_STATUS = "(" + "|".join(RUN_STATUSES) + ")"
#: ``status=`` of ``GET /runs``: comma-separated statuses, no spaces (empty: no filter).
STATUS_LIST_PATTERN = f"^({_STATUS}(,{_STATUS})*)?$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json_content(_ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A closed object: every property required unless ``required`` says otherwise, no others."""
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "properties": properties,
        "additionalProperties": False,
    }


_INT = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
_RUN_ID = {
    "name": "runId",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_SCHEDULE_NAME = {
    "name": "name",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": -1, "maximum": MAX_INT},
    "description": "The last id received (`-1`: none yet); wins over `from`.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_COMMON_ERRORS = {
    "400": _error("Malformed request (`bad_request`)"),
    "401": _error(
        "The authorize hook wants credentials (`unauthorized`)",
        {"WWW-Authenticate": {"required": False, "schema": {"type": "string"}}},
    ),
    "403": _error("The authorize hook refused (`forbidden`)"),
    "503": _error(
        "The server is stopping (`shutting_down`), not started or its store failed (`unavailable`): retry",
        _RETRY_AFTER,
    ),
}
_RUN_NOT_FOUND = _error("No run with that id (`run_not_found`)")

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_NUM = {"type": ["number", "null"]}
_KEY = _nullable({"type": "string", "minLength": 1})
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}

_SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": _object({"code": {"type": "string", "pattern": "^[a-z][a-z_]*$"}, "message": {"type": "string"}})}
    ),
    "Progress": _object({"current": {"type": "number"}, "total": _NULLABLE_NUM, "message": _NULLABLE_STR}),
    "Run": _object(
        {
            "id": {"type": "string", "minLength": 1},
            "jobName": {"type": "string", "minLength": 1},
            "jobVersion": {"type": "string"},
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "input": {"description": "any JSON"},
            "output": {"description": "any JSON; null until the run completes"},
            "error": _NULLABLE_STR,
            "progress": _nullable(_ref("Progress")),
            "labels": _LABELS,
            "idempotencyKey": _KEY,
            "concurrencyKey": _KEY,
            "attempt": {"type": "integer", "minimum": 1},
            "createdAt": {"type": "number", "description": "Unix time, seconds"},
            "updatedAt": {"type": "number"},
            "startedAt": _NULLABLE_NUM,
            "finishedAt": _NULLABLE_NUM,
            "expiresAt": _NULLABLE_NUM,
            "lastSeq": {"type": "integer", "minimum": -1, "description": "seq of the run's last event"},
            "version": {"type": "integer", "minimum": 0, "description": "position in the run-change feed"},
            "parentId": {**_NULLABLE_STR, "description": "the run that invoked this one (step.invoke)"},
            "parentStep": _NULLABLE_STR,
            "wait": {**_nullable(_ref("Wait")), "description": "while suspended: what the run waits for"},
            "wakeAt": {**_NULLABLE_NUM, "description": "while suspended: when it is claimable by time"},
            "cancelRequested": {"type": "boolean"},
        }
    ),
    "Wait": _object(
        {
            "reason": {"type": "string", "description": "sleep, event, children, retry, or several joined by +"},
            "until": _NULLABLE_NUM,
            "events": {"type": "array", "items": {"type": "string"}},
            "children": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "Event": _object(
        {
            "runId": {"type": "string", "minLength": 1},
            "seq": {"type": "integer", "minimum": 0},
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "data": {"type": "object"},
            "at": {"type": "number"},
        }
    ),
    "Step": _object(
        {
            "runId": {"type": "string", "minLength": 1},
            "name": {"type": "string"},
            "index": {"type": "integer", "minimum": 0},
            "status": {"type": "string", "enum": ["completed", "failed", "waiting"]},
            "output": {"description": "any JSON"},
            "error": _NULLABLE_STR,
            "startedAt": {"type": "number"},
            "completedAt": {"type": "number"},
            "attempt": {"type": "integer", "minimum": 1},
            "runAttempt": {"type": "integer", "minimum": 1},
            "retryAt": _NULLABLE_NUM,
        }
    ),
    "EventRequest": _object(
        {
            "runId": {"type": "string", "minLength": 1},
            "name": {"type": "string", "minLength": 1},
            "data": {"description": "any JSON, at most 99 levels deep"},
        },
        required=["runId", "name"],
    ),
    "Schedule": _object(
        {
            "name": {"type": "string", "minLength": 1},
            "job": {"type": "string", "minLength": 1},
            "cron": {"type": "string"},
            "timezone": {"type": "string"},
            "input": {"description": "any JSON"},
            "missed": {"type": "string", "enum": ["skip", "catch_up"]},
            "catchUp": {"type": "integer", "minimum": 0},
            "version": _NULLABLE_STR,
            "paused": {"type": "boolean"},
            "nextFireAt": _NULLABLE_NUM,
            "runId": {"type": "string", "minLength": 1},
        }
    ),
    "ScheduleRequest": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "job": {"type": "string", "minLength": 1},
            "cron": {"type": "string", "minLength": 1},
            "timezone": {"type": "string", "minLength": 1},
            "input": {"description": "any JSON"},
            "missed": {"type": "string", "enum": ["skip", "catch_up"]},
            "catchUp": {"type": "integer", "minimum": 0, "maximum": 1000},
            "version": _nullable({"type": "string", "minLength": 1}),
        },
        required=["name", "job", "cron"],
    ),
    "RunChange": _object(
        {
            "version": {"type": "integer", "minimum": 1},
            "runId": {"type": "string", "minLength": 1},
            "run": {**_nullable(_ref("Run")), "description": "null: the run was deleted"},
        }
    ),
    "Job": _object(
        {"name": {"type": "string", "minLength": 1}, "version": {"type": "string"}, "streaming": {"type": "boolean"}}
    ),
    "TriggerRequest": _object(
        {
            "jobName": {"type": "string", "minLength": 1},
            "input": {"description": "any JSON, at most 99 levels deep; checked by the job's validator"},
            "idempotencyKey": _KEY,
            "concurrencyKey": _KEY,
            "labels": _nullable(_LABELS),
            "version": {**_KEY, "description": "a registered version of the job; null: the newest"},
        },
        required=["jobName"],
    ),
    "TriggerResponse": _object(
        {"runId": {"type": "string", "minLength": 1}, "created": {"type": "boolean"}, "run": _ref("Run")}
    ),
}


def _sse(description: str, event: dict[str, Any], data: str) -> dict[str, Any]:
    """A ``text/event-stream`` answer; ``schema`` describes one event (the OpenAPI 3.1 custom)."""
    frame = _object(
        {
            "id": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
            "event": event,
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": _ref(data)},
        }
    )
    return {
        "description": description + ". Comment lines (`: keep-alive`) come when the stream is idle.",
        "headers": {
            "Cache-Control": {"required": True, "schema": {"const": "no-cache"}},
            "X-Accel-Buffering": {"required": True, "schema": {"const": "no"}},
        },
        "content": {"text/event-stream": {"schema": frame}},
    }


def _paths() -> dict[str, Any]:
    run_ok = _ok(_ref("Run"))
    return {
        "/jobs": {"get": {
            "operationId": "listJobs", "summary": "Registered jobs, sorted by name",
            "responses": {"200": _ok(_object({"jobs": {"type": "array", "items": _ref("Job")}})), **_COMMON_ERRORS},
        }},
        "/trigger": {"post": {
            "operationId": "trigger", "summary": "Start a run (or find the one with this idempotency key)",
            "requestBody": {"required": True, "content": _json_content(_ref("TriggerRequest"))},
            "responses": {
                "201": _ok(_ref("TriggerResponse"), "Created"),
                "200": _ok(_ref("TriggerResponse"), "An idempotent repeat: the existing run, created=false"),
                **_COMMON_ERRORS,
                "404": _error("No such job (`job_not_found`)"),
                "413": _error("Body over max_body (`payload_too_large`)"),
                "415": _error("The body is not sent as application/json (`unsupported_media_type`)"),
                "422": _error("The job's validator rejected the input, or a field holds a lone surrogate "
                              "(`invalid_input`)"),
            },
        }},
        "/runs": {"get": {
            "operationId": "listRuns", "summary": "A page of runs, newest first",
            "description": "Also filters by labels: `label.<key>=<value>` query parameters, all of which must match.",
            "parameters": [
                {"name": "jobName", "in": "query", "schema": {"type": "string"}, "description": "empty: any job"},
                {"name": "status", "in": "query", "schema": {"type": "string", "pattern": STATUS_LIST_PATTERN},
                 "description": "comma-separated, no spaces: " + ",".join(RUN_STATUSES) + " (empty: any)"},
                {"name": "limit", "in": "query", "schema": {**_INT, "default": 50}, "description": "capped at 500"},
                {"name": "offset", "in": "query", "schema": {**_INT, "default": 0}},
                {"name": "parentId", "in": "query", "schema": {"type": "string"},
                 "description": "only the child runs of this run; empty: any"},
            ],
            "responses": {"200": _ok(_object({
                "runs": {"type": "array", "items": _ref("Run"), "maxItems": 500},
                "total": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 0, "maximum": 500},
                "offset": _INT,
                "version": {"type": "integer", "minimum": 0}})), **_COMMON_ERRORS},
        }},
        "/run": {
            "get": {"operationId": "getRun", "summary": "One run", "parameters": [_RUN_ID],
                    "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _RUN_NOT_FOUND}},
            "delete": {"operationId": "deleteRun", "summary": "Delete a run with its steps and events",
                       "parameters": [_RUN_ID],
                       "responses": {"200": _ok(_object({"deleted": {"const": True},
                                                         "runId": {"type": "string", "minLength": 1}})),
                                     **_COMMON_ERRORS, "404": _RUN_NOT_FOUND}},
        },
        "/steps": {"get": {
            "operationId": "getSteps", "summary": "A run's recorded steps, in execution order", "parameters": [_RUN_ID],
            "responses": {"200": _ok(_object({"steps": {"type": "array", "items": _ref("Step")}})),
                          **_COMMON_ERRORS, "404": _RUN_NOT_FOUND},
        }},
        "/subscribe": {"get": {
            "operationId": "subscribe",
            "summary": "A run's events as SSE; ends after the terminal event",
            "parameters": [_RUN_ID, {"name": "from", "in": "query", "schema": {**_INT, "default": 0}},
                           _LAST_EVENT_ID],
            "responses": {
                "200": _sse("`id: <seq>`, `event: <type>`, `data: <Event JSON>`",
                            {"type": "string", "enum": list(EVENT_TYPES)}, "Event"),
                **_COMMON_ERRORS, "404": _RUN_NOT_FOUND},
        }},
        "/runs/subscribe": {"get": {
            "operationId": "subscribeRuns",
            "summary": "Run changes as SSE; never ends",
            "parameters": [
                {"name": "jobName", "in": "query", "schema": {"type": "string"}, "description": "empty: any job"},
                {"name": "from", "in": "query", "schema": _INT,
                 "description": "the last version seen; omitted: only changes from now on (the first frame is then "
                                "an id-only frame with the current version)"},
                _LAST_EVENT_ID,
            ],
            "responses": {
                "200": _sse("`id: <version>`, `event: run:change`, `data: <RunChange JSON>`",
                            {"const": "run:change"}, "RunChange"),
                **_COMMON_ERRORS},
        }},
        "/retry": {"post": {
            "operationId": "retry", "summary": "Put a failed or cancelled run back to pending", "parameters": [_RUN_ID],
            "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _RUN_NOT_FOUND,
                          "409": _error("Not failed or cancelled (`invalid_run_state`)")},
        }},
        "/cancel": {"post": {
            "operationId": "cancel", "summary": "Cancel a run (RunCancelled is raised in a running or suspended job)",
            "parameters": [_RUN_ID],
            "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _RUN_NOT_FOUND,
                          "409": _error("Already finished (`invalid_run_state`)")},
        }},
        "/event": {"post": {
            "operationId": "sendEvent", "summary": "Send a named event to a run (step.wait_for_event takes it)",
            "requestBody": {"required": True, "content": _json_content(_ref("EventRequest"))},
            "responses": {
                "200": _ok(_object({"sent": {"const": True}, "runId": {"type": "string", "minLength": 1},
                                    "name": {"type": "string", "minLength": 1}})),
                **_COMMON_ERRORS, "404": _RUN_NOT_FOUND,
                "409": _error("The run already finished (`invalid_run_state`)"),
                "413": _error("Body over max_body (`payload_too_large`)"),
                "415": _error("The body is not sent as application/json (`unsupported_media_type`)"),
                "422": _error("The name or data cannot be stored (`invalid_input`)"),
            },
        }},
        "/schedules": {
            "get": {"operationId": "listSchedules", "summary": "Every cron schedule, by name",
                    "responses": {"200": _ok(_object({"schedules": {"type": "array", "items": _ref("Schedule")}})),
                                  **_COMMON_ERRORS}},
            "post": {"operationId": "createSchedule",
                     "summary": "Create a schedule (the same definition again changes nothing; another replaces it)",
                     "requestBody": {"required": True, "content": _json_content(_ref("ScheduleRequest"))},
                     "responses": {"200": _ok(_ref("Schedule")), **_COMMON_ERRORS,
                                   "404": _error("No such job (`job_not_found`)"),
                                   "413": _error("Body over max_body (`payload_too_large`)"),
                                   "415": _error("Not sent as application/json (`unsupported_media_type`)"),
                                   "422": _error("Bad cron text (the field named), time zone or policy "
                                                 "(`invalid_input`)")}},
            "delete": {"operationId": "deleteSchedule", "summary": "Delete a schedule",
                       "parameters": [_SCHEDULE_NAME],
                       "responses": {"200": _ok(_object({"deleted": {"const": True},
                                                         "name": {"type": "string", "minLength": 1}})),
                                     **_COMMON_ERRORS, "404": _error("No such schedule (`run_not_found`)")}},
        },
        "/schedules/pause": {"post": {
            "operationId": "pauseSchedule", "summary": "Pause a schedule (ticks passed meanwhile are not fired)",
            "parameters": [_SCHEDULE_NAME],
            "responses": {"200": _ok(_ref("Schedule")), **_COMMON_ERRORS,
                          "404": _error("No such schedule (`run_not_found`)")},
        }},
        "/schedules/resume": {"post": {
            "operationId": "resumeSchedule", "summary": "Resume a paused schedule", "parameters": [_SCHEDULE_NAME],
            "responses": {"200": _ok(_ref("Schedule")), **_COMMON_ERRORS,
                          "404": _error("No such schedule (`run_not_found`)")},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": _ok({"type": "object", "required": ["openapi", "info", "paths"]}),
                          **{k: v for k, v in _COMMON_ERRORS.items() if k != "503"}},
        }},
    }  # fmt: skip


def openapi_document(base_path: str, version: str | None = None) -> dict[str, Any]:
    """The document, with every path under ``base_path`` (e.g. ``/api``)."""
    if version is None:
        from .. import __version__ as version
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stepstone jobs API",
            "version": version,
            "description": "Durable, resumable jobs. Errors are {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{"url": base_path or "/"}],
        "paths": _paths(),
        "components": {"schemas": _SCHEMAS},
    }
