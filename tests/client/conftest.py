"""A real ``stepstone serve`` process per test module, and a Client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stepstone.client import Client
from tests.client.helpers import ServerProcess, gate, server

__all__ = ["client", "gate", "server"]


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[Client]:
    async with Client(server.api_url, reconnect_timeout=5.0) as c:
        yield c
