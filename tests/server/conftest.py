"""Real ``stepstone serve`` processes on 127.0.0.1 for the server tests, and small SSE helpers."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepstone._sse import SSEMessage, SSEParser
from tests.support.serve import ServeProcess, free_port

HERE = Path(__file__).resolve().parent
TEST_JOBS = "stepstone_test_jobs"


class Server(ServeProcess):
    """``stepstone serve`` on ``db`` with the jobs of stepstone_test_jobs.py, ``args`` appended, and
    the default log level (tests read what it logs). ``api`` is the API base."""

    def __init__(self, db: Path, port: int | None = None, args: Sequence[str] = ()) -> None:
        super().__init__(
            db, port or free_port(), jobs=TEST_JOBS, jobs_dir=HERE, polling_interval=0.1, log_level=None,
            extra=list(args),
        )  # fmt: skip

    @property
    def api(self) -> str:
        return self.api_url


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
    big = b"\0asm\1\0\0\0" + bytes(range(256)) * 64
    (site / "big.wasm").write_bytes(big)
    (site / "big.wasm.gz").write_bytes(gzip.compress(big, mtime=0))  # written after: newer
    (site / "stale.js").write_text("console.log('new');\n")
    (site / "stale.js.gz").write_bytes(gzip.compress(b"console.log('old');\n", mtime=0))
    os.utime(site / "stale.js.gz", ns=(0, 0))  # older than the file it was made from
    return site


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, site_dir: Path) -> Iterator[Server]:
    """One server shared by a module's API tests (small keep-alive, CORS for one origin, a site)."""
    db = tmp_path_factory.mktemp("db") / "jobs.db"
    server = Server(db, args=[
        "--keepalive", "0.3", "--cors", "http://allowed.test", "--max-body", "4096", "--site", str(site_dir),
    ])  # fmt: skip
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
