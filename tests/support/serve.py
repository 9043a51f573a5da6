"""Real servers on 127.0.0.1 for the tests: ``free_port()``, ``ServeProcess`` (one ``stepstone
serve`` subprocess, restartable on the same port and SQLite file, stopped by PID) and
``serve_app()`` (a real uvicorn serving an ASGI app inside the test's own event loop).

Test-only plumbing: stdlib at import time (uvicorn is imported inside ``serve_app``); never
imports pytest or anything from a test area.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Listening:
    """``url`` and ``api_url`` of something listening on 127.0.0.1:``port``."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"


@dataclass
class ServeProcess(Listening):
    """One ``stepstone serve`` subprocess on 127.0.0.1.

    ``db`` is the SQLite file (None: the in-memory store, then ``log`` must be given). ``start()``
    waits until the server answers HTTP; ``kill()`` is SIGKILL (a crash), ``stop()`` SIGTERM then
    SIGKILL, ``terminate()`` SIGTERM that must end in a graceful exit. ``start()`` again (or
    ``restart()``) brings it back on the same port and file. Its output goes to ``log`` (by default
    a new file next to ``db`` per instance, appended to across restarts)."""

    db: Path | None
    port: int = field(default_factory=free_port)
    jobs: str = "stepstone.demo"
    jobs_dir: Path | None = None  # put on PYTHONPATH so ``jobs`` imports from there
    token: str | None = None
    cors: str | None = None
    site: Path | None = None
    long_poll_timeout: float | None = None
    polling_interval: float | None = None
    log_level: str | None = "warning"
    extra: list[str] = field(default_factory=list)
    log: Path | None = None
    ready_path: str = "/api/openapi.json"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stream_url(self, name: str) -> str:
        """The URL of the Durable Stream ``name``."""
        return f"{self.url}/v1/stream/{name}"

    @property
    def store(self) -> str:
        return f"sqlite:///{self.db}" if self.db is not None else "memory:"

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header the server wants (empty without a token)."""
        token = self.token
        if token is None and "--token" in self.extra:
            token = self.extra[self.extra.index("--token") + 1]
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "stepstone.cli", "serve", "--store", self.store, "--jobs", self.jobs,
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        options: list[tuple[str, object]] = [
            ("--polling-interval", self.polling_interval),
            ("--long-poll-timeout", self.long_poll_timeout),
            ("--log-level", self.log_level),
            ("--token", self.token),
            ("--cors", self.cors),
            ("--site", self.site),
        ]
        for flag, value in options:
            if value is not None:
                cmd += [flag, str(value)]
        return cmd + list(self.extra)

    def start(self, timeout: float = 20.0) -> Self:
        """Start the process and wait (at most ``timeout`` s) until it answers HTTP."""
        assert not self.running, "already running"
        if self.log is None:
            if self.db is None:
                raise ValueError("a server on the memory store needs an explicit log file")
            self.log = self.db.with_name(f"serve-{self.port}-{time.monotonic_ns()}.log")
        env = {key: value for key, value in os.environ.items() if key != "STEPSTONE_TOKEN"}
        env["PYTHONUNBUFFERED"] = "1"
        if self.jobs_dir is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.jobs_dir), os.environ.get("PYTHONPATH", "")])
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"stepstone serve exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"stepstone serve was not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=1):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code < 500  # e.g. 401 with a token: it is up
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no clean shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL when it has not exited after ``timeout`` s."""
        self._sigterm(timeout)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and a graceful exit within ``timeout`` s (else SIGKILL and fail); its status."""
        assert self.proc is not None, "never started"
        if not self._sigterm(timeout):
            raise AssertionError(f"no graceful exit within {timeout} s:\n{self.output()}")
        return self.proc.returncode

    def _sigterm(self, timeout: float) -> bool:
        """SIGTERM and wait; SIGKILL after ``timeout`` s. False when it took the SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return True

    def restart(self, *, crash: bool = True, timeout: float = 20.0) -> Self:
        """``kill()`` (or ``stop()`` when not ``crash``), then ``start()`` on the same port and file."""
        self.kill() if crash else self.stop()
        return self.start(timeout)

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@contextlib.asynccontextmanager
async def serve_app(app: Any, **config: Any) -> AsyncIterator[str]:
    """A real uvicorn serving ``app`` on a free 127.0.0.1 port in the running event loop; yields the
    base URL and shuts the server down afterwards. ``config`` goes to ``uvicorn.Config``."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start within 4 s"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
