"""A client whose connection is cut every few events (a dropping TCP proxy on 127.0.0.1) still
gets every event exactly once, in order: by ``Last-Event-ID`` with plain httpx, with
``stepstone.client.Client``, and with ``stepstone tail``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx
import pytest

from tests.support.proxy import TcpProxy

from .conftest import HERE, Server, follow_run, post, sse, wait_status


def chatty_run(server: Server, count: int = 120) -> str:
    run_id: str = post(
        server, "/trigger", json={"jobName": "chatty", "input": {"count": count, "delay": 0.002}}
    ).json()["runId"]
    return run_id


async def test_reconnect_storm_with_last_event_id(server_factory: Any) -> None:
    server: Server = server_factory()
    run_id = chatty_run(server)
    async with TcpProxy(server.port, every=3, tail=7) as proxy:
        events, connections = await follow_run(proxy.url, run_id, deadline=60)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "run:complete"
    lines = [e["data"]["data"]["i"] for e in events if e["type"] == "log:write"]
    assert lines == list(range(120))
    assert proxy.cuts >= 30 and connections >= 30


async def test_reconnect_storm_with_the_python_client(server_factory: Any) -> None:
    client_mod = pytest.importorskip("stepstone.client")
    server: Server = server_factory()
    run_id = chatty_run(server, 90)
    async with TcpProxy(server.port, every=4, tail=7) as proxy:
        client = client_mod.Client(proxy.url + "/api", max_backoff=0.05)
        try:
            events = [e async for e in client.subscribe(run_id)]
        finally:
            await client.aclose()
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].type == "run:complete"
    assert proxy.cuts >= 15


async def test_runs_subscribe_survives_the_storm(server_factory: Any) -> None:
    server: Server = server_factory()
    async with TcpProxy(server.port, every=2, tail=7) as proxy:
        last: str | None = None
        versions: list[int] = []
        ids = [chatty_run(server, 1) for _ in range(12)]
        for run_id in ids:
            wait_status(server, run_id, {"completed"})
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                headers = {"Last-Event-ID": last} if last is not None else {}
                try:
                    async for message in sse(
                        client, proxy.url + "/api/runs/subscribe", {"from": 0} if last is None else None, headers
                    ):
                        versions.append(json.loads(message.data)["version"])
                        last = message.id
                        if len(versions) >= 12:
                            break
                except httpx.TransportError:
                    pass
                if len(versions) >= 12:
                    break
    assert versions == sorted(set(versions)) and len(versions) == 12
    assert proxy.cuts >= 5


async def test_cli_tail_resumes_after_dropped_connections(server_factory: Any) -> None:
    pytest.importorskip("stepstone.client")
    server: Server = server_factory()
    run_id = chatty_run(server, 60)
    async with TcpProxy(server.port, every=5, tail=7) as proxy:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stepstone.cli",
            "tail",
            run_id,
            "--server",
            proxy.url,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(HERE)},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "run:complete"
    assert proxy.cuts >= 8
