"""``client.schedules``: the server's cron schedules, with ``engine.schedules``'s method names.
:class:`~stepstone.Schedule` is imported when a method returns one, so importing the client does
not load the schedules module (a page that never asks pays nothing for it)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._schedules import Schedule

__all__ = ["ClientSchedules"]


class _Caller(Protocol):
    """What the schedules need of a :class:`~stepstone.client.Client`: one API call."""

    async def _call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any: ...


def _schedule(data: Any) -> Schedule:
    from .._schedules import Schedule

    return Schedule.from_json(data)


class ClientSchedules:
    """``client.schedules``: the server's cron schedules (``/schedules``)."""

    def __init__(self, client: _Caller) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        job: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        missed: str = "skip",
        catch_up: int = 1,
        version: str | None = None,
    ) -> Schedule:
        body = {"name": name, "job": job, "cron": cron, "timezone": timezone, "input": input, "missed": missed,
                "catchUp": catch_up, "version": version}  # fmt: skip
        return _schedule(await self._client._call("POST", "schedules", body=body))

    async def list(self) -> builtins.list[Schedule]:
        data = await self._client._call("GET", "schedules")
        return [_schedule(item) for item in data.get("schedules", [])]

    async def get(self, name: str) -> Schedule | None:
        return next((s for s in await self.list() if s.name == name), None)

    async def pause(self, name: str) -> Schedule:
        return _schedule(await self._client._call("POST", "schedules/pause", {"name": name}))

    async def resume(self, name: str) -> Schedule:
        return _schedule(await self._client._call("POST", "schedules/resume", {"name": name}))

    async def delete(self, name: str) -> None:
        await self._client._call("DELETE", "schedules", {"name": name})
