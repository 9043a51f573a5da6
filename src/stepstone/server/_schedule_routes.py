"""``/schedules`` of the jobs API: list, create, pause, resume, delete cron schedules (the engine's
``engine.schedules``). Server-only; the handlers take the routes' shared state (engine, limits)."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.types import ASGIApp

from .._engine import Engine
from .._errors import RunNotFound
from ._errors import BadRequest
from ._params import json_body, required_str
from ._responses import json_response


class Api(Protocol):
    engine: Engine
    max_body: int

__all__ = ["schedule_routes"]

_FIELDS = frozenset({"name", "job", "cron", "timezone", "input", "missed", "catchUp", "version"})


def schedule_routes(api: Api) -> list[tuple[str, str, Any]]:
    async def list_schedules(request: Request) -> ASGIApp:
        return json_response({"schedules": [s.to_json() for s in await api.engine.schedules.list()]})

    async def create(request: Request) -> ASGIApp:
        body = await json_body(request, api.max_body)
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_FIELDS))}")
        for field in ("name", "job", "cron"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise BadRequest(f"{field!r} must be a non-empty string")
        options: dict[str, Any] = {"input": body.get("input")}
        for field, key, kind in (("timezone", "timezone", str), ("missed", "missed", str), ("catchUp", "catch_up", int),
                                 ("version", "version", str)):  # fmt: skip
            value = body.get(field)
            if value is None:
                continue
            if kind is int and isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON's 34.0 is a whole number too
            if not isinstance(value, kind) or isinstance(value, bool) or value == "":
                raise BadRequest(f"{field!r} must be a {'string' if kind is str else 'whole number'} or null")
            options[key] = value
        schedule = await api.engine.schedules.create(body["name"], body["job"], body["cron"], **options)
        return json_response(schedule.to_json())

    async def pause(request: Request) -> ASGIApp:
        return json_response((await api.engine.schedules.pause(required_str(request, "name"))).to_json())

    async def resume(request: Request) -> ASGIApp:
        return json_response((await api.engine.schedules.resume(required_str(request, "name"))).to_json())

    async def delete(request: Request) -> ASGIApp:
        name = required_str(request, "name")
        if await api.engine.schedules.get(name) is None:
            raise RunNotFound(f"no schedule named {name!r}")
        await api.engine.schedules.delete(name)
        return json_response({"deleted": True, "name": name})

    return [
        ("/schedules", "GET", list_schedules),
        ("/schedules", "POST", create),
        ("/schedules", "DELETE", delete),
        ("/schedules/pause", "POST", pause),
        ("/schedules/resume", "POST", resume),
    ]
