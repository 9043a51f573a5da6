"""source_scope: the key hooks store run ids under, so sources never see each other's runs."""

from __future__ import annotations

from types import SimpleNamespace

import stepstone
from stepstone.client import Client
from stepstone.hooks._source import source_scope


async def test_each_kind_of_source_has_its_own_scope() -> None:
    engine = stepstone.create_engine("memory://")
    assert source_scope(engine) == "local"
    async with Client("http://127.0.0.1:9/api") as client:
        assert source_scope(client) == "server:http://127.0.0.1:9/api"
    # a WorkerSource carries its scope (worker:<script>); any source may name its own
    assert source_scope(SimpleNamespace(scope="worker:/jobs.py")) == "worker:/jobs.py"
    assert source_scope(SimpleNamespace(scope="", api_url="http://x/api")) == "server:http://x/api"
