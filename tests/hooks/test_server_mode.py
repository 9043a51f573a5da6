"""Hooks in server mode when things go wrong: the server is down, refuses the token, restarts
mid-run, or the connection keeps dropping. The hook's ``error`` says what is wrong, and the state
recovers on its own when the server is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stepstone.client import Client
from stepstone.hooks import MemoryStorage, use_job, use_job_run, use_runs
from tests.client.helpers import ServerProcess, free_port, start_server
from tests.support.proxy import TcpProxy


async def test_server_down_is_a_clear_error_and_the_hooks_recover(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, port=free_port())  # not started yet
    async with Client(server.api_url, reconnect_timeout=0.5) as client:
        job = use_job(client, "steps", storage=MemoryStorage())
        runs = use_runs(client)
        try:
            await job.ready(timeout=10)
            await runs.ready(timeout=10)
            for state in (job, runs):
                assert state.error_code == "server_unavailable"
                assert state.error and "unreachable" in state.error and server.api_url in state.error
            await asyncio.to_thread(server.start)
            await runs.wait_for(lambda s: s.error is None and not s.is_loading, timeout=15)
            await job.wait_for(lambda s: s.error is None, timeout=15)
            run = await job.trigger_and_wait({"steps": 2}, timeout=15)
            assert run.status == "completed" and job.is_completed
            await runs.wait_for(lambda s: [r.id for r in s.runs] == [run.id], timeout=15)
        finally:
            await job.aclose()
            await runs.aclose()
            server.stop()


async def test_unauthorized_is_a_clear_error(tmp_path: Path) -> None:
    server = start_server(tmp_path, token="s3cret")
    try:
        async with Client(server.api_url, headers={"authorization": "Bearer wrong"}) as client:
            job = use_job(client, "steps", storage=MemoryStorage())
            state = use_job_run(client, "some-run")
            await job.ready(timeout=10)
            await state.ready(timeout=10)
            for s in (job, state):
                assert s.error_code == "unauthorized" and s.error and "not authorized (403)" in s.error
            await job.aclose()
            await state.aclose()
    finally:
        server.stop()


async def test_a_page_survives_a_server_crash_mid_run(tmp_path: Path) -> None:
    """SIGKILL the server while use_job follows a run; restart it on the same file: the state reports
    the outage, then the run continues, completes once, and no log line is doubled."""
    server = start_server(tmp_path)
    gate = tmp_path / "gate"
    try:
        async with Client(server.api_url, reconnect_timeout=1.0, max_backoff=0.2) as client:
            job = use_job(client, "steps", storage=MemoryStorage())
            completions: list[str] = []
            job.on_complete(lambda r: completions.append(r.id))
            run = await job.trigger({"steps": 4, "gate": str(gate), "gate_at": 2})
            await job.wait_for(lambda s: len(s.logs) == 2, timeout=10)
            server.kill()
            await job.wait_for(lambda s: s.error_code == "server_unavailable", timeout=15)
            gate.touch()
            await asyncio.to_thread(server.start)
            await job.wait_for(lambda s: s.is_completed and s.error is None, timeout=20)
            assert job.current_run_id == run.id
            assert [e.message for e in job.logs] == [f"step {i} done" for i in range(4)]
            assert completions == [run.id]
            await job.aclose()
    finally:
        server.stop()


async def test_dropped_streams_lose_and_double_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        async with Client(server.api_url) as direct:
            run = await direct.trigger("steps", {"steps": 10, "delay": 0.01})
            async with TcpProxy(server.port) as proxy, Client(proxy.api_url, max_backoff=0.05) as client:
                state = use_job_run(client, run.id)
                for _ in range(6):  # cut every open connection a few times while it runs
                    await asyncio.sleep(0.03)
                    proxy.cut_all()
                await state.wait_for(lambda s: s.is_completed, timeout=20)
                assert [e.message for e in state.logs] == [f"step {i} done" for i in range(10)]
                assert state.last_seq == (await direct.get_run(run.id)).last_seq  # type: ignore[union-attr]
                await state.aclose()
    finally:
        server.stop()


async def test_a_page_follows_its_run_through_a_graceful_restart(tmp_path: Path) -> None:
    """SIGTERM the server while use_job follows a run (it hands the run back), restart it on the
    same port and file: the state says the server is unreachable meanwhile, keeps retrying, and
    follows the run to its end, every log line once."""
    server = start_server(tmp_path)
    gate = tmp_path / "gate"
    try:
        async with Client(server.api_url, reconnect_timeout=1.0, max_backoff=0.2) as client:
            job = use_job(client, "steps", storage=MemoryStorage())
            run = await job.trigger({"steps": 4, "gate": str(gate), "gate_at": 2})
            await job.wait_for(lambda s: len(s.logs) == 2, timeout=10)
            await asyncio.to_thread(server.terminate)
            await job.wait_for(lambda s: s.error_code is not None, timeout=15)
            assert job.error_code == "server_unavailable", job.error
            gate.touch()
            await asyncio.to_thread(server.start)
            await job.wait_for(lambda s: s.is_completed and s.error is None, timeout=20)
            assert job.current_run_id == run.id
            assert [e.message for e in job.logs] == [f"step {i} done" for i in range(4)]
            await job.aclose()
    finally:
        server.stop()
