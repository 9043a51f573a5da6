"""``ServerProcess`` / ``start_server``: the shared ``stepstone serve`` process (tests/support/serve.py)
set up for the client and hook tests: the jobs of tests/hooks/jobs.py on ``tmp/jobs.db``, short
heartbeats and a 1 s stale threshold, its log appended to ``tmp/server.log`` across restarts. Also
the ``server`` and ``gate`` fixtures both areas' conftest.py files import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import ServeProcess, free_port

__all__ = ["ServerProcess", "free_port", "gate", "server", "start_server"]


class ServerProcess(ServeProcess):
    """``stepstone serve`` with the test jobs on a SQLite file; restartable on the same port and file."""

    def __init__(
        self, tmp: Path, token: str | None = None, port: int | None = None,
        jobs: str = "tests.hooks.jobs", site: Path | None = None,
    ) -> None:  # fmt: skip
        super().__init__(
            tmp / "jobs.db", port or free_port(), jobs=jobs, token=token, site=site, polling_interval=0.05,
            extra=["--keepalive", "1", "--heartbeat-interval", "0.2", "--stale-threshold", "1"],
            log=tmp / "server.log",
        )  # fmt: skip
        self.tmp = tmp


def start_server(tmp: Path, token: str | None = None, **options: Any) -> ServerProcess:
    return ServerProcess(tmp, token, **options).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real ``stepstone serve`` per test module."""
    proc = start_server(tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file a gated run waits for; opened at teardown so no run is left waiting for the next test."""
    path = tmp_path / "gate"
    yield path
    path.touch()
