from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stepstone


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory:" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[stepstone.Engine]:
    eng = stepstone.create_engine(store_url, polling_interval=0.05, heartbeat_interval=0.05, stale_threshold=1.0)
    yield eng
    await eng.stop()
