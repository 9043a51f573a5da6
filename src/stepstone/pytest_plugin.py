"""stepstone's pytest plugin (loaded by pytest through the ``pytest11`` entry point when stepstone is
installed; it needs pytest-asyncio, which the ``test`` extra brings).

Fixtures:

* ``stepstone_engine`` — a started engine on a fresh store, stopped after the test. The store is a
  temporary SQLite file, or ``memory:`` with ``@pytest.mark.stepstone(store="memory")``; register
  your jobs on it in the test (``stepstone_engine.register(my_job)``). If the test also asks for
  ``stepstone_clock``, the engine runs on that clock.
* ``stepstone_clock`` — a :class:`stepstone.testing.TestClock`: ``clock.advance(86400)`` and a
  day-long ``step.sleep`` is over.
* ``stepstone_server`` — a real ``stepstone serve`` process on a free 127.0.0.1 port and a
  temporary SQLite file, serving the jobs of ``@pytest.mark.stepstone(jobs="mypkg.jobs")`` (or the
  ``stepstone_jobs`` ini option); ``.url``, ``.api_url``, ``.client()``; SIGTERM (then SIGKILL)
  by PID at the end.

    import pytest, stepstone
    from myapp.jobs import signup

    async def test_signup_sends_the_welcome_mail(stepstone_engine):
        stepstone_engine.register(signup)
        run = await stepstone_engine.trigger("signup", {"email": "a@example.com"})
        assert (await stepstone_engine.wait(run.id, timeout=5)).status == "completed"

The probes of :mod:`stepstone.testing` (``check_store``) check a store you wrote yourself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from . import create_engine
from ._engine import Engine
from .testing import TestClock

__all__ = ["StepstoneServer", "stepstone_clock", "stepstone_engine", "stepstone_server"]

_MARK = "stepstone"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("stepstone_jobs", "module(s) of jobs the stepstone_server fixture serves (comma-separated)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stepstone(store='sqlite'|'memory', jobs='pkg.module', **engine_options): "
        "configure the stepstone_engine / stepstone_server fixtures",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(_MARK)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def stepstone_clock() -> TestClock:
    """A clock that stands still until the test moves it (``clock.advance(seconds)``)."""
    return TestClock()


@pytest_asyncio.fixture
async def stepstone_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    """A started engine on a fresh store (temporary SQLite file, or memory), stopped afterwards."""
    options = _options(request)
    options.pop("jobs", None)
    store = options.pop("store", "sqlite")
    url = "memory:" if store == "memory" else f"sqlite:///{tmp_path / 'stepstone.db'}"
    settings: dict[str, Any] = {"polling_interval": 0.05, "heartbeat_interval": 0.2, "stale_threshold": 5.0}
    settings.update(options)
    if "stepstone_clock" in request.fixturenames:
        settings["clock"] = request.getfixturevalue("stepstone_clock")
    engine = create_engine(url, **settings)
    await engine.init()
    try:
        yield engine
    finally:
        await engine.stop()


@dataclass
class StepstoneServer:
    """A running ``stepstone serve``: where it listens, and a client for it."""

    port: int
    db: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def client(self, **options: Any) -> Any:
        """A :class:`stepstone.client.Client` for this server (close it, or use ``async with``)."""
        from .client import Client

        return Client(self.api_url, **options)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stepstone_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StepstoneServer]:
    """A real ``stepstone serve`` on 127.0.0.1 serving your jobs module, stopped by PID afterwards."""
    jobs = _options(request).get("jobs") or request.config.getini("stepstone_jobs")
    if not jobs:
        raise pytest.UsageError(
            "stepstone_server needs the module of your jobs: @pytest.mark.stepstone(jobs='mypkg.jobs') "
            "or `stepstone_jobs = mypkg.jobs` in the pytest ini options"
        )
    port, db, log = _free_port(), tmp_path / "stepstone.db", tmp_path / "stepstone-serve.log"
    root = str(request.config.rootpath)
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "stepstone.cli", "serve", "--store", f"sqlite:///{db}", "--jobs", str(jobs),
           "--host", "127.0.0.1", "--port", str(port), "--polling-interval", "0.1"]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = StepstoneServer(port, db, log, process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(process)


def _wait_until_up(server: StepstoneServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(server.api_url + "/runs?limit=1", timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        if server.process.poll() is not None:
            raise RuntimeError(f"stepstone serve exited with {server.process.returncode}:\n{server.output()}")
        if time.monotonic() > deadline:
            _stop(server.process)
            raise RuntimeError(f"stepstone serve did not answer within {timeout} s:\n{server.output()}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
