"""Real ``stepstone serve`` processes on 127.0.0.1 for the server tests, and small SSE helpers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepstone._sse import SSEMessage, SSEParser

HERE = Path(__file__).resolve().parent
TEST_JOBS = "stepstone_test_jobs"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One ``stepstone serve`` subprocess. ``url`` is the server root, ``api`` the API base."""

    db: Path
    port: int
    args: list[str] = field(default_factory=list)
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/api"

    @property
    def store(self) -> str:
        return f"sqlite:///{self.db}"

    def start(self, timeout: float = 20.0) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log = self.db.with_name(f"server-{self.port}-{time.monotonic_ns()}.log")
        cmd = [
            sys.executable, "-m", "stepstone.cli", "serve",
            "--store", self.store, "--jobs", TEST_JOBS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--polling-interval", "0.1", *self.args,
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"stepstone serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.api + "/openapi.json", timeout=1.0, headers=self.auth).status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"stepstone serve was not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    @property
    def auth(self) -> dict[str, str]:
        if "--token" in self.args:
            return {"Authorization": "Bearer " + self.args[self.args.index("--token") + 1]}
        return {}

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"no graceful exit within {timeout} s:\n{self.output()}") from None
        return self.proc.returncode


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """``make(*args, db=None, port=None)`` → a started Server; all are killed at the end."""
    started: list[Server] = []

    def make(*args: str, db: Path | None = None, port: int | None = None) -> Server:
        server = Server(db or tmp_path / "jobs.db", port or free_port(), list(args))
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "app.wasm").write_bytes(b"\0asm\1\0\0\0")
    (site / "mod.mjs").write_text("export const a = 1;\n")
    (site / "main.js").write_text("console.log(1);\n")
    (site / "pkg.whl").write_bytes(b"PK\3\4")
    (site / "data.json").write_text('{"a": 1}')
    (site / "sub").mkdir()
    (site / "sub" / "page.txt").write_text("hello")
    (site / "docs").mkdir()
    (site / "docs" / "index.html").write_text("<p>docs</p>")
    return site


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, site_dir: Path) -> Iterator[Server]:
    """One server shared by a module's API tests (small keep-alive, CORS for one origin, a site)."""
    db = tmp_path_factory.mktemp("db") / "jobs.db"
    server = Server(db, free_port(), [
        "--keepalive", "0.3", "--cors", "http://allowed.test", "--max-body", "4096", "--site", str(site_dir),
    ])
    server.start()
    yield server
    server.kill()


# -- SSE helpers -------------------------------------------------------------------------------
class SSEStatusError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


async def sse(
    client: httpx.AsyncClient,
    url: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    limit: int | None = None,
    timeout: float = 15.0,
) -> AsyncIterator[SSEMessage]:
    """The messages of one SSE response (no reconnects); stops after ``limit`` messages."""
    parser = SSEParser()
    count = 0
    async with client.stream("GET", url, params=params, headers=headers, timeout=timeout) as response:
        if response.status_code != 200:
            raise SSEStatusError(response.status_code, (await response.aread()).decode(errors="replace"))
        async for chunk in response.aiter_bytes():
            for message in parser.feed(chunk):
                yield message
                count += 1
                if limit is not None and count >= limit:
                    return


async def follow_run(
    base: str,
    run_id: str,
    *,
    last_id: int | None = None,
    deadline: float = 30.0,
    headers: dict[str, str] | None = None,
    on_event: Any = None,
) -> tuple[list[dict[str, Any]], int]:
    """Follow a run's events to the end, reconnecting with ``Last-Event-ID`` whenever the
    connection drops or the server is down. Returns (events, connections made)."""
    events: list[dict[str, Any]] = []
    connections = 0
    end = time.monotonic() + deadline
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        while time.monotonic() < end:
            hdrs = dict(headers or {})
            if last_id is not None:
                hdrs["Last-Event-ID"] = str(last_id)
            try:
                connections += 1
                async for message in sse(client, f"{base}/api/subscribe", {"runId": run_id}, hdrs):
                    event = json.loads(message.data)
                    assert message.id == str(event["seq"])
                    events.append(event)
                    last_id = event["seq"]
                    if on_event is not None:
                        await on_event(event)
                    if event["type"] in ("run:complete", "run:fail", "run:cancel"):
                        return events, connections
            except httpx.TransportError:
                pass  # down or dropped: reconnect
            except SSEStatusError as exc:
                if exc.status != 503:  # 503: a server shutting down
                    raise
            await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish within {deadline} s; got {len(events)} events")


def post(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.api + path, headers={**server.auth, **kwargs.pop("headers", {})}, timeout=10, **kwargs)


def get(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(server.api + path, headers={**server.auth, **kwargs.pop("headers", {})}, timeout=10, **kwargs)


def wait_status(server: Server, run_id: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = get(server, "/run", params={"runId": run_id}).json()
        if run.get("status") in statuses:
            return run
        assert time.monotonic() < deadline, f"run stayed {run.get('status')} (wanted {statuses})"
        time.sleep(0.05)


