"""One real ``stepstone serve`` (SQLite, 0.5 s long-poll) per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import StreamServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamServer]:
    srv = StreamServer(Path(tmp_path_factory.mktemp("streams")) / "streams.db").start()
    try:
        yield srv
    finally:
        srv.kill()
