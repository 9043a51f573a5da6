"""The Client against a real ``stepstone serve`` process on 127.0.0.1: every method, every error,
and live streams that survive dropped connections and a server crash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import stepstone
from stepstone.client import Client
from tests.client.helpers import ServerProcess, free_port, start_server
from tests.support.proxy import TcpProxy


async def test_trigger_wait_and_read_back(client: Client) -> None:
    run = await client.trigger("steps", {"steps": 3}, labels={"suite": "client-read"})
    assert run.created and run.status == "pending" and run.job_name == "steps"
    done = await client.wait(run.id, timeout=10)
    assert done.status == "completed" and done.output == {"steps": 3}
    assert done.progress == stepstone.Progress(3, 3, "step 3 of 3")
    assert (await client.get_run(run.id)) == done
    steps = await client.get_steps(run.id)
    assert [(s.name, s.status, s.output) for s in steps] == [
        ("s0", "completed", 0),
        ("s1", "completed", 1),
        ("s2", "completed", 2),
    ]
    page = await client.get_runs(job_name="steps", status="completed", labels={"suite": "client-read"})
    assert [r.id for r in page] == [run.id] and page.total == 1
    assert {j.name for j in await client.jobs()} >= {"steps", "needs-name"}


async def test_idempotency_key_returns_the_existing_run(client: Client) -> None:
    first = await client.trigger("steps", {"steps": 1}, idempotency_key="client-idem")
    again = await client.trigger("steps", {"steps": 1}, idempotency_key="client-idem")
    assert first.created and not again.created and again.id == first.id
    await client.wait(first.id, timeout=10)


async def test_paging_newest_first_with_total(client: Client) -> None:
    ids = [(await client.trigger("steps", {"steps": 1}, labels={"suite": "paging"})).id for _ in range(5)]
    first = await client.get_runs(labels={"suite": "paging"}, limit=2)
    second = await client.get_runs(labels={"suite": "paging"}, limit=2, offset=2)
    assert first.total == second.total == 5
    assert [r.id for r in first] + [r.id for r in second] == ids[::-1][:4]
    for run_id in ids:
        await client.wait(run_id, timeout=10)


async def test_retry_cancel_delete(client: Client, tmp_path: Path, gate: Path) -> None:
    heal = tmp_path / "heal"
    failing = await client.trigger("steps", {"steps": 3, "fail_at": 1, "heal": str(heal)})
    failed = await client.wait(failing.id, timeout=10)
    assert failed.status == "failed" and failed.error == "RuntimeError: boom at step 1"
    heal.touch()
    retried = await client.retry(failing.id)
    assert retried.status == "pending" and retried.attempt == 2
    assert (await client.wait(failing.id, timeout=10)).status == "completed"

    waiting = await client.trigger("steps", {"steps": 3, "gate": str(gate)})
    cancelled = await client.cancel(waiting.id)
    assert cancelled.status == "cancelled"
    await client.delete_run(waiting.id)
    assert await client.get_run(waiting.id) is None


async def test_bad_requests_raise_named_errors_and_change_nothing(client: Client) -> None:
    before = (await client.get_runs(limit=0)).total
    with pytest.raises(stepstone.JobNotFound, match="no job named 'nope'"):
        await client.trigger("nope", {})
    with pytest.raises(stepstone.InvalidInput, match="must be an object with a 'name'"):
        await client.trigger("needs-name", {"x": 1})
    done = await client.trigger("steps", {"steps": 1})
    await client.wait(done.id, timeout=10)
    with pytest.raises(stepstone.InvalidRunState, match="only failed or cancelled"):
        await client.retry(done.id)
    with pytest.raises(stepstone.InvalidRunState):
        await client.cancel(done.id)
    for call in (client.cancel, client.retry, client.delete_run, client.get_steps):
        with pytest.raises(stepstone.RunNotFound):
            await call("no-such-run")
    assert await client.get_run("no-such-run") is None
    assert (await client.get_runs(limit=0)).total == before + 1


async def test_wait_times_out(client: Client, gate: Path) -> None:
    run = await client.trigger("steps", {"steps": 2, "gate": str(gate)})
    with pytest.raises(stepstone.WaitTimeout):
        await client.wait(run.id, timeout=0.3)
    gate.touch()
    assert (await client.wait(run.id, timeout=10)).status == "completed"


async def test_subscribe_replays_then_tails_and_ends_after_the_terminal_event(client: Client, gate: Path) -> None:
    run = await client.trigger("steps", {"steps": 3, "gate": str(gate)})
    seen: list[stepstone.Event] = []

    async def read() -> None:
        async for event in client.subscribe(run.id):
            seen.append(event)
            if event.type == "step:complete" and event.data["name"] == "s0":
                gate.touch()

    await asyncio.wait_for(read(), 10)
    assert [e.seq for e in seen] == list(range(len(seen)))
    assert seen[0].type == "run:trigger" and seen[-1].type == "run:complete"
    tail = [e async for e in client.subscribe(run.id, from_seq=5)]
    assert [e.seq for e in tail] == list(range(5, len(seen)))


async def test_subscribe_unknown_run_raises(client: Client) -> None:
    with pytest.raises(stepstone.RunNotFound):
        async for _ in client.subscribe("no-such-run"):
            pass


async def test_every_event_once_through_a_proxy_that_keeps_cutting(client: Client, server: ServerProcess) -> None:
    """A reconnect storm: the proxy drops each connection after ~600 bytes (mid-frame)."""
    run = await client.trigger("steps", {"steps": 8, "delay": 0.01})
    async with TcpProxy(server.port, cut_after=600) as proxy, Client(proxy.api_url, max_backoff=0.05) as cut:
        seqs = [e.seq async for e in cut.subscribe(run.id)]
    final = await client.get_run(run.id)
    assert final is not None and final.status == "completed"
    assert seqs == list(range(final.last_seq + 1))
    assert proxy.cuts >= 5


async def test_server_down_is_a_clear_error() -> None:
    async with Client(f"http://127.0.0.1:{free_port()}/api", reconnect_timeout=0.5) as client:
        with pytest.raises(
            stepstone.ServerUnavailable, match=r"cannot reach the server at http://127\.0\.0\.1"
        ):
            await client.get_runs()
        with pytest.raises(stepstone.ServerUnavailable):
            async for _ in client.subscribe("r1"):
                pass


async def test_wrong_api_url_says_so(server: ServerProcess) -> None:
    async with Client(f"{server.url}/not-the-api") as client:
        with pytest.raises(stepstone.StepstoneError, match="api_url"):
            await client.get_runs()


async def test_unauthorized_without_or_with_a_wrong_token(tmp_path: Path) -> None:
    secured = start_server(tmp_path, token="s3cret")
    try:
        async with Client(secured.api_url) as anonymous:
            with pytest.raises(stepstone.Unauthorized, match=r"not authorized \(401\)"):
                await anonymous.get_runs()
            with pytest.raises(stepstone.Unauthorized):
                async for _ in anonymous.subscribe("r1"):
                    pass
        async with Client(secured.api_url, headers={"Authorization": "Bearer wrong"}) as wrong:
            with pytest.raises(stepstone.Unauthorized, match=r"\(403\)"):
                await wrong.get_runs()
        async with Client(secured.api_url, headers={"Authorization": "Bearer s3cret"}) as good:
            run = await good.trigger("steps", {"steps": 1})
            assert (await good.wait(run.id, timeout=10)).status == "completed"
    finally:
        secured.stop()


async def test_subscribers_survive_a_server_crash_and_restart(tmp_path: Path) -> None:
    """SIGKILL the server mid-run, start it again on the same file and port: the open subscription
    reconnects with Last-Event-ID and gets every seq exactly once; the run-change feed resumes too."""
    proc = start_server(tmp_path)
    gate = tmp_path / "gate"
    try:
        async with Client(proc.api_url, reconnect_timeout=20, max_backoff=0.2) as client:
            run = await client.trigger("steps", {"steps": 4, "gate": str(gate), "gate_at": 2})
            seqs: list[int] = []
            crashed = asyncio.Event()

            async def read() -> None:
                async for event in client.subscribe(run.id):
                    seqs.append(event.seq)
                    if event.type == "step:complete" and event.data["name"] == "s1":
                        crashed.set()

            reader = asyncio.create_task(read())
            await asyncio.wait_for(crashed.wait(), 10)
            proc.kill()
            await asyncio.sleep(0.3)
            gate.touch()
            await asyncio.to_thread(proc.start)
            await asyncio.wait_for(reader, 20)
            final = await client.get_run(run.id)
            assert final is not None and final.status == "completed"
            assert seqs == list(range(final.last_seq + 1))
    finally:
        proc.stop()


async def test_subscribe_runs_streams_changes_and_resumes(client: Client, server: ServerProcess, gate: Path) -> None:
    """The feed is cut while a run waits at its gate; the changes after the cut (it finishes) come
    through a new connection that resumes from the last version: nothing twice, nothing lost."""
    async with TcpProxy(server.port) as proxy, Client(proxy.api_url, max_backoff=0.05) as cut_client:
        feed = cut_client.subscribe_runs(job_name="steps")
        changes: list[stepstone.RunChange] = []

        async def read_until(done: Callable[[stepstone.RunChange], bool]) -> None:
            async for change in feed:
                changes.append(change)
                if done(change):
                    return

        first = asyncio.create_task(anext(feed))  # the feed starts "now": open it before triggering
        await asyncio.sleep(0.3)
        run = await client.trigger("steps", {"steps": 2, "gate": str(gate)})
        changes.append(await asyncio.wait_for(first, 10))
        await asyncio.wait_for(read_until(lambda c: c.run is not None and c.run.progress is not None), 10)
        proxy.cut_all()
        gate.touch()
        await asyncio.wait_for(read_until(lambda c: c.run is not None and c.run.status == "completed"), 10)
        await feed.aclose()  # type: ignore[attr-defined]
    versions = [c.version for c in changes]
    assert versions == sorted(set(versions)), "no change twice, in order"
    assert {c.run_id for c in changes} == {run.id}
    assert proxy.connections >= 2
