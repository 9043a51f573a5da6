"""Real components for the client and hook tests: a ``stepstone serve`` process on a free
127.0.0.1 port (SQLite file in a tmp dir, stopped by PID), and an asyncio TCP proxy that cuts
connections on demand (to drop SSE streams mid-flight)."""

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STEPSTONE = Path(sys.executable).parent / "stepstone"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``stepstone serve`` with the test jobs on a SQLite file; restartable on the same port and file."""

    def __init__(
        self, tmp: Path, token: str | None = None, port: int | None = None,
        jobs: str = "tests.hooks.jobs", site: Path | None = None,
    ) -> None:
        self.tmp = tmp
        self.token = token
        self.jobs = jobs
        self.site = site
        self.port = port or free_port()
        self.db = tmp / "jobs.db"
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [
            str(STEPSTONE), "serve", "--store", f"sqlite:///{self.db}", "--jobs", self.jobs,
            "--host", "127.0.0.1", "--port", str(self.port), "--keepalive", "1",
            "--polling-interval", "0.05", "--heartbeat-interval", "0.2", "--stale-threshold", "1",
            "--log-level", "warning",
        ]
        if self.token:
            cmd += ["--token", self.token]
        if self.site:
            cmd += ["--site", str(self.site)]
        env = {k: v for k, v in os.environ.items() if k != "STEPSTONE_TOKEN"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stepstone serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/openapi.json", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answers (401 with a token): it is up
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"stepstone serve did not start within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def start_server(tmp: Path, token: str | None = None, **options: Any) -> ServerProcess:
    server = ServerProcess(tmp, token, **options)
    server.start()
    return server


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``. ``cut_after`` bytes sent back to the
    client on one connection, it closes that connection (None: never); ``cut_all()`` closes every
    open connection now; ``refuse`` makes new connections fail at once."""

    def __init__(self, target_port: int, cut_after: int | None = None) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.refuse = False
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut_all()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if self.refuse:
            client_w.transport.abort()
            return
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
            sent = 0
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(4096):
                    if count and self.cut_after is not None and sent + len(data) >= self.cut_after:
                        writer.write(data[: max(0, self.cut_after - sent)])
                        await writer.drain()
                        self.cuts += 1
                        break
                    writer.write(data)
                    sent += len(data)
                    await writer.drain()
            client_w.transport.abort()
            server_w.transport.abort()

        try:
            await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))
        finally:
            self._writers.discard(client_w)
            self._writers.discard(server_w)
