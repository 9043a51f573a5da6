"""A server that stops says "unavailable, retry" (503, ``Retry-After``, a code clients retry) on
every endpoint, and the client rides a restart out: ``subscribe`` and ``wait`` keep going and
finish on the next server (same SQLite file, same port), after a SIGTERM and after a SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepstone.client import Client

from .conftest import Server, post, wait_status

LEASE = ["--stale-threshold", "60", "--heartbeat-interval", "1"]


def test_a_stopping_server_answers_503_retry_on_every_endpoint(server_factory: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    server: Server = server_factory("--grace", "60")  # a running run keeps the server stopping
    run_id = post(server, "/trigger", json={"jobName": "gate", "input": {"until": str(gate), "limit": 60}}).json()[
        "runId"
    ]
    wait_status(server, run_id, {"running"})
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 20
        while httpx.get(server.api + "/jobs").status_code != 503:
            assert time.monotonic() < deadline and server.running, "the server never said it was stopping"
            time.sleep(0.02)
        requests = [
            ("GET", "/api/jobs", {}), ("POST", "/api/trigger", {"json": {"jobName": "echo"}}), ("GET", "/api/runs", {}),
            ("GET", f"/api/run?runId={run_id}", {}), ("DELETE", f"/api/run?runId={run_id}", {}),
            ("GET", f"/api/steps?runId={run_id}", {}), ("GET", f"/api/subscribe?runId={run_id}", {}),
            ("GET", "/api/runs/subscribe", {}), ("POST", f"/api/retry?runId={run_id}", {}),
            ("POST", f"/api/cancel?runId={run_id}", {}), ("GET", "/v1/stream/s?offset=-1", {}),
            ("PUT", "/v1/stream/s", {"headers": {"content-type": "text/plain"}}),
        ]  # fmt: skip
        for method, path, options in requests:
            response = httpx.request(method, server.url + path, timeout=10, **options)
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert response.headers["retry-after"] == "1", (method, path)
            assert response.json()["error"]["code"] in ("shutting_down", "unavailable"), (method, path, response.text)
        assert server.running  # all of it while the server was still stopping
    finally:
        gate.touch()  # the run finishes; the server completes its stop
    assert server.proc.wait(timeout=20) == 0


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_client_subscribe_and_wait_finish_across_a_restart(server_factory: Any, stop: str) -> None:
    first: Server = server_factory("--grace", "1", *LEASE)
    run_id = post(first, "/trigger", json={"jobName": "steps", "input": {"steps": 10, "delay": 0.3}}).json()["runId"]
    seen_step_2 = asyncio.Event()
    events: list[Any] = []
    async with Client(first.api, reconnect_timeout=60, max_backoff=0.2) as client:

        async def follow() -> None:
            async for event in client.subscribe(run_id):
                events.append(event)
                if event.type == "step:complete" and event.data.get("name") == "step-2":
                    seen_step_2.set()

        following = asyncio.ensure_future(follow())
        waiting = asyncio.ensure_future(client.wait(run_id, timeout=90))
        await asyncio.wait_for(seen_step_2.wait(), 30)
        if stop == "sigterm":
            assert await asyncio.to_thread(first.terminate) == 0  # graceful: 503s while it stops
        else:
            first.kill()
        second: Server = await asyncio.to_thread(server_factory, "--grace", "1", *LEASE, db=first.db, port=first.port)
        run = await waiting
        await asyncio.wait_for(following, 60)
    assert run.status == "completed" and run.output == {"steps": 10}
    assert [e.seq for e in events] == list(range(len(events))), "every seq exactly once, in order"
    assert events[-1].type == "run:complete"
    assert wait_status(second, run_id, {"completed"})["output"] == {"steps": 10}
