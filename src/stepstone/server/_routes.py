"""The jobs API endpoints (the README has every shape). Each endpoint runs behind
:func:`Api.guard`: the ``authorize`` hook first, then the handler, and every exception becomes a
JSON error; SSE endpoints check everything (auth, params, the run exists) before the stream starts.

Server-only (imports starlette).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._engine import Engine
from .._errors import RunNotFound
from .._models import RUN_STATUSES, RunChange, RunStatus
from .._sse import format_event
from .._tracing import incoming_trace
from .._util import dumps
from ._errors import BadRequest, Forbidden, response_for, shutting_down, unavailable
from ._fanout import RunTails
from ._params import json_body, last_event_id, optional_int, required_str
from ._responses import json_response
from ._schedule_routes import schedule_routes
from ._sse_response import EventStreamResponse, StreamRegistry

__all__ = ["MAX_LIMIT", "Api", "Authorize"]

#: ``authorize(request)``: sync or async; truthy allows, falsy is a 403; raise HTTPError for 401 etc.
Authorize = Callable[[Request], Any]
Handler = Callable[[Request], Awaitable[ASGIApp]]

MAX_LIMIT = 500
_TRIGGER_FIELDS = frozenset({"jobName", "input", "idempotencyKey", "concurrencyKey", "labels", "version"})
_EVENT_FIELDS = frozenset({"runId", "name", "data"})
_TRACE_HEADERS = ("traceparent", "tracestate")


_json = json_response


class _Guarded:
    """An ASGI endpoint: check the server is up, authorize, run the handler, map any exception to a
    JSON error."""

    def __init__(self, api: Api, handler: Handler, *, needs_engine: bool = True) -> None:
        self.api = api
        self.handler = handler
        self.needs_engine = needs_engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            if self.needs_engine:
                self.api.check_available()
            await self.api.authorize_request(request)
            response: ASGIApp = await self.handler(request)
        except Exception as exc:
            response = response_for(exc)
        await response(scope, receive, send)


class Api:
    """The state the endpoints share: the engine, the hook, limits, the SSE machinery."""

    def __init__(
        self,
        engine: Engine,
        *,
        authorize: Authorize | None,
        max_body: int,
        keepalive: float,
    ) -> None:
        self.engine = engine
        self.authorize = authorize
        self.max_body = max_body
        self.keepalive = keepalive
        self.streams = StreamRegistry()
        self.tails = RunTails(engine)

    def check_available(self) -> None:
        """503 with ``Retry-After`` and a code clients retry while the server is stopping (or has
        stopped) or its engine is not started: never an error a client would take as final."""
        if self.streams.closed:
            raise shutting_down()
        if not self.engine.started:
            raise unavailable()

    async def authorize_request(self, request: Request) -> None:
        if self.authorize is None:
            return
        result = self.authorize(request)
        if inspect.isawaitable(result):
            result = await result
        if not result:
            raise Forbidden("the authorize hook refused this request")

    def routes(self, openapi: Callable[[str], dict[str, Any]]) -> list[BaseRoute]:
        async def openapi_json(request: Request) -> ASGIApp:
            # root_path is where the API really is (base path, plus any prefix it is mounted under)
            return JSONResponse(openapi(request.scope.get("root_path", "") or "/"))

        table: list[tuple[str, str, Handler]] = [
            ("/jobs", "GET", self.jobs),
            ("/trigger", "POST", self.trigger),
            ("/runs", "GET", self.runs),
            ("/run", "GET", self.run),
            ("/run", "DELETE", self.delete_run),
            ("/steps", "GET", self.steps),
            ("/subscribe", "GET", self.subscribe),
            ("/runs/subscribe", "GET", self.subscribe_runs),
            ("/retry", "POST", self.retry),
            ("/cancel", "POST", self.cancel),
            ("/event", "POST", self.send_event),
            *schedule_routes(self),
            ("/openapi.json", "GET", openapi_json),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for path, method, handler in table:
            by_path.setdefault(path, {})[method] = handler
        return [
            Route(path, self._dispatch(methods, needs_engine=path != "/openapi.json"), methods=list(methods))
            for path, methods in by_path.items()
        ]

    def _dispatch(self, methods: dict[str, Handler], *, needs_engine: bool) -> _Guarded:
        if len(methods) == 1:
            return _Guarded(self, next(iter(methods.values())), needs_engine=needs_engine)

        async def by_method(request: Request) -> ASGIApp:
            return await methods[request.method if request.method != "HEAD" else "GET"](request)

        return _Guarded(self, by_method, needs_engine=needs_engine)

    # -- endpoints -------------------------------------------------------------------------------
    async def jobs(self, request: Request) -> ASGIApp:
        jobs = sorted(self.engine.jobs(), key=lambda j: j.name)
        return _json({"jobs": [{"name": j.name, "version": j.version, "streaming": j.streaming} for j in jobs]})

    async def trigger(self, request: Request) -> ASGIApp:
        body = await json_body(request, self.max_body)
        unknown = sorted(set(body) - _TRIGGER_FIELDS)
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_TRIGGER_FIELDS))}")
        job_name = body.get("jobName")
        if not isinstance(job_name, str) or not job_name:
            raise BadRequest("'jobName' must be a non-empty string")
        keys: dict[str, str | None] = {}
        for field in ("idempotencyKey", "concurrencyKey", "version"):
            value = body.get(field)
            if value is not None and (not isinstance(value, str) or not value):
                raise BadRequest(f"{field!r} must be a non-empty string or null")
            keys[field] = value
        labels = body.get("labels")
        if labels is not None and (
            not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())
        ):
            raise BadRequest("'labels' must be an object of string values")
        # the caller's trace (W3C headers) continues in every attempt of the run (stepstone.otel)
        trace = {k: request.headers[k] for k in _TRACE_HEADERS if k in request.headers}
        token = incoming_trace.set(trace or None)
        try:
            result = await self.engine.trigger(
                job_name,
                body.get("input"),
                idempotency_key=keys["idempotencyKey"],
                concurrency_key=keys["concurrencyKey"],
                labels=labels,
                version=keys["version"],
            )
        finally:
            incoming_trace.reset(token)
        run = result.to_json()
        return _json({"runId": result.id, "created": result.created, "run": run}, 201 if result.created else 200)

    async def runs(self, request: Request) -> ASGIApp:
        statuses: list[RunStatus] | None = None
        raw_status = request.query_params.get("status")
        if raw_status:
            statuses = []
            for name in raw_status.split(","):
                if name not in RUN_STATUSES:
                    raise BadRequest(f"unknown status {name!r}; use one or more of {', '.join(RUN_STATUSES)}")
                statuses.append(name)
        limit = min(optional_int(request, "limit", 50) or 0, MAX_LIMIT)
        offset = optional_int(request, "offset", 0) or 0
        labels = {k[6:]: v for k, v in request.query_params.items() if k.startswith("label.") and len(k) > 6}
        page = await self.engine.get_runs(
            job_name=request.query_params.get("jobName") or None,
            status=statuses,
            labels=labels or None,
            limit=limit,
            offset=offset,
            parent_id=request.query_params.get("parentId") or None,
        )
        return _json(
            {
                "runs": [r.to_json() for r in page],
                "total": page.total,
                "limit": limit,
                "offset": offset,
                "version": page.version,
            }
        )

    async def run(self, request: Request) -> ASGIApp:
        run_id = required_str(request, "runId")
        run = await self.engine.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return _json(run.to_json())

    async def steps(self, request: Request) -> ASGIApp:
        steps = await self.engine.get_steps(required_str(request, "runId"))
        return _json({"steps": [s.to_json() for s in steps]})

    async def retry(self, request: Request) -> ASGIApp:
        return _json((await self.engine.retry(required_str(request, "runId"))).to_json())

    async def cancel(self, request: Request) -> ASGIApp:
        return _json((await self.engine.cancel(required_str(request, "runId"))).to_json())

    async def send_event(self, request: Request) -> ASGIApp:
        body = await json_body(request, self.max_body)
        unknown = sorted(set(body) - _EVENT_FIELDS)
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_EVENT_FIELDS))}")
        for field in ("runId", "name"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise BadRequest(f"{field!r} must be a non-empty string")
        await self.engine.send_event(body["runId"], body["name"], body.get("data"))
        return _json({"sent": True, "runId": body["runId"], "name": body["name"]})

    async def delete_run(self, request: Request) -> ASGIApp:
        run_id = required_str(request, "runId")
        await self.engine.delete_run(run_id)
        return _json({"deleted": True, "runId": run_id})

    # -- SSE -------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        self.check_available()  # again: the checks before it may have awaited

    async def subscribe(self, request: Request) -> ASGIApp:
        run_id = required_str(request, "runId")
        seen = last_event_id(request)  # the header wins over ?from= (both are checked)
        start_from = optional_int(request, "from", 0) or 0
        start = seen + 1 if seen is not None else start_from
        self._check_open()
        run = await self.engine.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        frames = self.tails.frames(run, start)
        return EventStreamResponse(frames, keepalive=self.keepalive, registry=self.streams)

    async def subscribe_runs(self, request: Request) -> ASGIApp:
        job_name = request.query_params.get("jobName") or None
        # both name the last version seen (changes *after* it follow); neither: only new changes
        seen = last_event_id(request)
        after_from = optional_int(request, "from", None)
        after = seen if seen is not None else after_from
        self._check_open()
        frames = self._run_change_frames(after, job_name)
        return EventStreamResponse(frames, keepalive=self.keepalive, registry=self.streams)

    async def _run_change_frames(self, from_version: int | None, job_name: str | None) -> AsyncGenerator[bytes, None]:
        if from_version is None:
            # Start at the feed's current end, and say where that is with an id-only frame: a client
            # (an EventSource too) that drops before the first change then resumes from there.
            from_version = await self.engine.store.runs_version()
            yield f"id: {from_version}\n\n".encode()
        changes = cast(AsyncGenerator[RunChange, None], self.engine.subscribe_runs(from_version, job_name))
        async with contextlib.aclosing(changes):
            async for change in changes:
                yield format_event(dumps(change.to_json()), id=str(change.version), event="run:change")
