"""The OpenAPI 3.1 document of the jobs API, served at ``<base>/openapi.json``.

Plain data, stdlib only (kept beside the server; imports nothing from starlette).
"""

from __future__ import annotations

from typing import Any

from .._models import EVENT_TYPES, RUN_STATUSES

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json_content(_ref("Error"))}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


_RUN_ID = {"name": "runId", "in": "query", "required": True, "schema": {"type": "string"}}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "integer"},
    "description": "The last id received; wins over `from`.",
}
_COMMON_ERRORS = {
    "400": _error("Malformed request (`bad_request`)"),
    "401": _error("The authorize hook wants credentials (`unauthorized`)"),
    "403": _error("The authorize hook refused (`forbidden`)"),
}

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_NUM = {"type": ["number", "null"]}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Progress": {
        "type": ["object", "null"],
        "properties": {"current": {"type": "number"}, "total": _NULLABLE_NUM, "message": _NULLABLE_STR},
    },
    "Run": {
        "type": "object",
        "required": ["id", "jobName", "jobVersion", "status"],
        "properties": {
            "id": {"type": "string"},
            "jobName": {"type": "string"},
            "jobVersion": {"type": "string"},
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "input": {},
            "output": {},
            "error": _NULLABLE_STR,
            "progress": _ref("Progress"),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "idempotencyKey": _NULLABLE_STR,
            "concurrencyKey": _NULLABLE_STR,
            "attempt": {"type": "integer"},
            "createdAt": {"type": "number", "description": "Unix time, seconds"},
            "updatedAt": {"type": "number"},
            "startedAt": _NULLABLE_NUM,
            "finishedAt": _NULLABLE_NUM,
            "expiresAt": _NULLABLE_NUM,
            "lastSeq": {"type": "integer", "description": "seq of the run's last event"},
            "version": {"type": "integer", "description": "change version in the run-change feed"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["runId", "seq", "type", "data", "at"],
        "properties": {
            "runId": {"type": "string"},
            "seq": {"type": "integer", "minimum": 0},
            "type": {"type": "string", "examples": list(EVENT_TYPES)},
            "data": {"type": "object"},
            "at": {"type": "number"},
        },
    },
    "Step": {
        "type": "object",
        "properties": {
            "runId": {"type": "string"},
            "name": {"type": "string"},
            "index": {"type": "integer"},
            "status": {"type": "string", "enum": ["completed", "failed"]},
            "output": {},
            "error": _NULLABLE_STR,
            "startedAt": {"type": "number"},
            "completedAt": {"type": "number"},
        },
    },
    "RunChange": {
        "type": "object",
        "required": ["version", "runId", "run"],
        "properties": {
            "version": {"type": "integer"},
            "runId": {"type": "string"},
            "run": {"oneOf": [_ref("Run"), {"type": "null"}], "description": "null: the run was deleted"},
        },
    },
    "TriggerRequest": {
        "type": "object",
        "required": ["jobName"],
        "additionalProperties": False,
        "properties": {
            "jobName": {"type": "string", "minLength": 1},
            "input": {"description": "any JSON; checked by the job's validator (422 when rejected)"},
            "idempotencyKey": _NULLABLE_STR,
            "concurrencyKey": _NULLABLE_STR,
            "labels": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        },
    },
    "TriggerResponse": {
        "type": "object",
        "required": ["runId", "created", "run"],
        "properties": {"runId": {"type": "string"}, "created": {"type": "boolean"}, "run": _ref("Run")},
    },
}


def _sse(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def _paths() -> dict[str, Any]:
    run_ok = _ok(_ref("Run"))
    return {
        "/jobs": {"get": {
            "operationId": "listJobs", "summary": "Registered jobs",
            "responses": {"200": _ok({"type": "object", "properties": {"jobs": {"type": "array", "items": {
                "type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"}, "streaming": {"type": "boolean"}},
            }}}}), **_COMMON_ERRORS},
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
                "422": _error("The job's validator rejected the input (`invalid_input`)"),
            },
        }},
        "/runs": {"get": {
            "operationId": "listRuns", "summary": "A page of runs, newest first",
            "parameters": [
                {"name": "jobName", "in": "query", "schema": {"type": "string"}},
                {"name": "status", "in": "query", "schema": {"type": "string"},
                 "description": "comma-separated: " + ",".join(RUN_STATUSES)},
                {"name": "label.{key}", "in": "query", "schema": {"type": "string"},
                 "description": "runs whose label `key` equals the value (repeatable with other keys)"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 50},
                 "description": "capped at 500"},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            ],
            "responses": {"200": _ok({"type": "object", "properties": {
                "runs": {"type": "array", "items": _ref("Run")}, "total": {"type": "integer"},
                "limit": {"type": "integer"}, "offset": {"type": "integer"},
                "version": {"type": "integer"}}}), **_COMMON_ERRORS},
        }},
        "/run": {
            "get": {"operationId": "getRun", "parameters": [_RUN_ID],
                    "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _error("`run_not_found`")}},
            "delete": {"operationId": "deleteRun", "summary": "Delete a run with its steps and events",
                       "parameters": [_RUN_ID],
                       "responses": {"200": _ok({"type": "object", "properties": {
                           "deleted": {"const": True}, "runId": {"type": "string"}}}),
                           **_COMMON_ERRORS, "404": _error("`run_not_found`")}},
        },
        "/steps": {"get": {
            "operationId": "getSteps", "parameters": [_RUN_ID],
            "responses": {"200": _ok({"type": "object", "properties": {
                "steps": {"type": "array", "items": _ref("Step")}}}), **_COMMON_ERRORS,
                "404": _error("`run_not_found`")},
        }},
        "/subscribe": {"get": {
            "operationId": "subscribe",
            "summary": "A run's events as SSE (`id: seq`, `event: type`, `data: Event JSON`); ends after the "
                       "terminal event",
            "parameters": [_RUN_ID, {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                                          "default": 0}}, _LAST_EVENT_ID],
            "responses": {"200": _sse("text/event-stream of Event"), **_COMMON_ERRORS,
                          "404": _error("`run_not_found`")},
        }},
        "/runs/subscribe": {"get": {
            "operationId": "subscribeRuns",
            "summary": "Run changes as SSE (`id: version`, `event: run:change`, `data: RunChange JSON`); never ends",
            "parameters": [
                {"name": "jobName", "in": "query", "schema": {"type": "string"}},
                {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "the last version seen; omitted: only changes from now on"},
                _LAST_EVENT_ID,
            ],
            "responses": {"200": _sse("text/event-stream of RunChange"), **_COMMON_ERRORS},
        }},
        "/retry": {"post": {
            "operationId": "retry", "summary": "Put a failed or cancelled run back to pending", "parameters": [_RUN_ID],
            "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _error("`run_not_found`"),
                          "409": _error("Not failed or cancelled (`invalid_run_state`)")},
        }},
        "/cancel": {"post": {
            "operationId": "cancel", "summary": "Cancel a pending or running run", "parameters": [_RUN_ID],
            "responses": {"200": run_ok, **_COMMON_ERRORS, "404": _error("`run_not_found`"),
                          "409": _error("Already finished (`invalid_run_state`)")},
        }},
        "/openapi.json": {"get": {"operationId": "openapi", "responses": {"200": _ok({"type": "object"})}}},
    }


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
