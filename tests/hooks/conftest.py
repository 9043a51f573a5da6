"""Fixtures for the hook tests: a source per mode. ``local`` is an in-process engine; ``server`` is
a Client talking to a real ``stepstone serve`` process (see tests/client/helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import stepstone
from stepstone.client import Client
from tests.client.helpers import ServerProcess, gate, server
from tests.hooks import jobs

__all__ = ["gate", "server", "source"]


def make_engine() -> stepstone.Engine:
    eng = stepstone.create_engine("memory:", polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)
    for job in vars(jobs).values():
        if isinstance(job, stepstone.Job):
            eng.register(job)
    return eng


@pytest.fixture(params=["local", "server"])
async def source(request: pytest.FixtureRequest) -> AsyncIterator[stepstone.Engine | Client]:
    """The same hook tests run on an Engine and on a Client to a real server."""
    if request.param == "local":
        async with make_engine() as engine:
            yield engine
        return
    server: ServerProcess = request.getfixturevalue("server")
    async with Client(server.api_url, reconnect_timeout=5.0) as client:
        yield client
