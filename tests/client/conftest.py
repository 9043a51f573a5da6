"""A real ``stepstone serve`` process per test module, and a Client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from stepstone.client import Client
from tests.client.helpers import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[Client]:
    async with Client(server.api_url, reconnect_timeout=5.0) as c:
        yield c
