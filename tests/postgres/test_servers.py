"""Several ``stepstone serve`` processes on one PostgreSQL database: no run executed twice, a
SIGKILLed server's runs resumed elsewhere at once, SSE and events across servers, and backends
terminated under them. Real processes, real server on 127.0.0.1:5432, stopped by PID."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepstone
from stepstone._sse import SSEParser

from ..support.serve import ServeProcess
from . import db as pgdb
from . import pg_jobs

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


@dataclass
class PgServe(ServeProcess):
    """``stepstone serve`` on a PostgreSQL URL."""

    pg_url: str = ""

    @property
    def store(self) -> str:
        return self.pg_url


@dataclass
class Cluster:
    schema: str
    side: Path
    servers: list[PgServe]

    def url(self, **options: object) -> str:
        return pgdb.store_url(self.schema, **options)

    def executions(self) -> list[tuple[str, int, int]]:
        if not self.side.exists():
            return []
        out = []
        for line in self.side.read_text().splitlines():
            run_id, step, pid = line.split()
            out.append((run_id, int(step), int(pid)))
        return out


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``start(n, jobs=…, concurrency=…)`` starts n servers on one fresh schema; all are killed after."""
    schema = pgdb.new_schema("srv")
    side = tmp_path / "side.txt"
    monkeypatch.setenv("STEPSTONE_TEST_SIDE", str(side))
    started: list[PgServe] = []

    def start(n: int, *, jobs: str = "pg_jobs", concurrency: int = 4, delay: float = 0.01) -> Cluster:
        os.environ["STEPSTONE_TEST_DELAY"] = str(delay)
        servers = []
        for _ in range(n):
            server = PgServe(None, pg_url=pgdb.store_url(schema, pool_size=4), jobs=jobs, jobs_dir=HERE,
                             extra=["--concurrency", str(concurrency)],
                             log=tmp_path / f"serve-{len(started)}.log")  # fmt: skip
            started.append(server)
            servers.append(server.start(timeout=30))
        return Cluster(schema, side, servers)

    try:
        yield start
    finally:
        os.environ.pop("STEPSTONE_TEST_DELAY", None)
        for server in started:
            server.kill()


@pytest.fixture
async def client_engine() -> AsyncIterator[Any]:
    """``await client_engine(cluster)``: an engine in this process with no worker (the "small
    Python process" that triggers runs and sends events), on the cluster's schema."""
    opened: list[stepstone.Engine] = []

    async def make(cluster: Cluster) -> stepstone.Engine:
        engine = stepstone.create_engine(cluster.url(pool_size=4), worker=False)
        engine.register(pg_jobs.count)
        engine.register(pg_jobs.await_go)
        await engine.init()
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.stop()


async def _all_finished(engine: stepstone.Engine, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = (await engine.get_runs(status=["completed", "failed", "cancelled"], limit=1)).total
        if done >= total:
            return
        assert time.monotonic() < deadline, f"only {done} of {total} runs finished in {timeout} s"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("servers", [2, 4])
async def test_servers_on_one_database_execute_each_step_once(cluster: Any, client_engine: Any, servers: int) -> None:
    c: Cluster = cluster(servers, concurrency=4, delay=0.0)
    engine = await client_engine(c)
    ids = [(await engine.trigger("count", {"steps": 3})).id for _ in range(1000)]
    await _all_finished(engine, 1000, 120)
    runs = await engine.get_runs(limit=1000)
    assert {r.status for r in runs} == {"completed"}
    executions = c.executions()
    counts = Counter((run_id, step) for run_id, step, _ in executions)
    assert len(counts) == 3000 and set(counts.values()) == {1}, "every step body ran exactly once"
    assert {run_id for run_id, _ in counts} == set(ids)
    pids = Counter(pid for _, _, pid in executions)
    assert len(pids) >= 2, f"the work was spread over the servers: {pids}"


async def test_a_killed_servers_runs_resume_on_another_at_once(cluster: Any, client_engine: Any) -> None:
    c: Cluster = cluster(3, concurrency=16, delay=0.05)
    engine = await client_engine(c)
    await asyncio.sleep(3.5)  # past the listeners' start-up grace: a free owner lock now proves death
    ids = [(await engine.trigger("count", {"steps": 12})).id for _ in range(24)]
    victim = c.servers[0]
    assert victim.proc is not None
    prefix = f"{victim.proc.pid}-"
    deadline = time.monotonic() + 20
    while True:
        running = await engine.get_runs(status="running", limit=100)
        mine = [r for r in running if (r.owner or "").startswith(prefix)]
        if len(mine) >= 2 and all(r.last_seq >= 4 for r in mine):
            break
        assert time.monotonic() < deadline, "the victim never got runs"
        await asyncio.sleep(0.02)
    orphans = {r.id for r in mine}
    victim.kill()
    killed_at = time.monotonic()
    resumed: dict[str, float] = {}
    while len(resumed) < len(orphans):
        for run_id in orphans - set(resumed):
            run = await engine.get_run(run_id)
            assert run is not None
            if run.status != "running" or not (run.owner or "").startswith(prefix):
                resumed[run_id] = time.monotonic() - killed_at
        assert time.monotonic() - killed_at < 10, f"not resumed: {orphans - set(resumed)}"
        await asyncio.sleep(0.01)
    print(f"orphaned runs resumed after (s): {sorted(round(v, 3) for v in resumed.values())}")
    assert max(resumed.values()) < 1.0, f"resumed after {sorted(resumed.values())} s"
    await _all_finished(engine, len(ids), 60)
    assert {r.status for r in (await engine.get_runs(limit=100))} == {"completed"}
    executions = c.executions()
    by_step = Counter((run_id, step) for run_id, step, _ in executions)
    assert len(by_step) == 24 * 12, "every step ran"
    twice = [key for key, n in by_step.items() if n > 1]
    assert all(by_step[key] == 2 for key in twice)
    victim_pid = victim.proc.pid
    for run_id, step in twice:  # only a step whose body was in flight on the killed server runs again
        pids = [pid for r, s, pid in executions if (r, s) == (run_id, step)]
        assert victim_pid in pids and run_id in orphans, (run_id, step, pids)
    assert len(twice) <= len(orphans), "at most the one step in flight per orphaned run"


async def test_an_sse_client_of_one_server_follows_a_run_executed_by_another(cluster: Any, tmp_path: Path) -> None:
    executor: Cluster = cluster(1, delay=0.05)
    watcher = PgServe(None, pg_url=executor.url(pool_size=2), jobs="pg_jobs_idle", jobs_dir=HERE, polling_interval=5.0,
                      log=tmp_path / "watcher.log")  # fmt: skip
    executor_server = executor.servers[0]
    with watcher:
        async with httpx.AsyncClient(timeout=30) as http:
            trigger = {"jobName": "count", "input": {"steps": 5}}
            response = await http.post(f"{executor_server.api_url}/trigger", json=trigger)
            assert response.status_code < 300, response.text
            run_id = response.json()["runId"]
            events: list[dict[str, Any]] = []
            parser = SSEParser()
            async with http.stream("GET", f"{watcher.api_url}/subscribe", params={"runId": run_id}) as stream:
                async for chunk in stream.aiter_text():
                    for message in parser.feed(chunk):
                        if message.data:
                            events.append({"id": message.id, "event": message.event})
                    if events and events[-1]["event"] == "run:complete":
                        break
    assert [int(e["id"]) for e in events] == list(range(len(events))), "no gap, no duplicate"
    types = [e["event"] for e in events]
    assert types[0] == "run:trigger" and types[-1] == "run:complete" and types.count("step:complete") == 5
    assert executor_server.proc is not None
    assert {pid for _, _, pid in executor.executions()} == {executor_server.proc.pid}, "executed by the other server"


async def test_an_event_sent_elsewhere_wakes_a_run_waiting_on_a_server(cluster: Any, client_engine: Any) -> None:
    c: Cluster = cluster(2)
    engine = await client_engine(c)
    run = await engine.trigger("await-go")
    deadline = time.monotonic() + 20
    while (await engine.get_run(run.id)).status != "suspended":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the run never parked"
        await asyncio.sleep(0.02)
    await engine.send_event(run.id, "go", {"by": "test"})
    done = await engine.wait(run.id, timeout=20)
    assert done.status == "completed" and done.output["got"] == {"by": "test"}
    assert done.output["pid"] in {s.proc.pid for s in c.servers if s.proc is not None}


async def test_servers_recover_from_terminated_backends_mid_run(cluster: Any, client_engine: Any) -> None:
    c: Cluster = cluster(2, concurrency=8, delay=0.02)
    engine = await client_engine(c)
    ids = [(await engine.trigger("count", {"steps": 5})).id for _ in range(150)]
    for _ in range(3):
        await asyncio.sleep(0.4)
        pgdb.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    await _all_finished(engine, len(ids), 120)
    runs = await engine.get_runs(limit=200)
    assert {r.status for r in runs} == {"completed"}, Counter(r.status for r in runs)
    for run_id in ids:
        events = await engine.store.read_events(run_id, 0, 10_000)
        assert [e.seq for e in events] == list(range(len(events))), "gap-free"
        types = [e.type for e in events]
        assert types.count("step:complete") == 5 and types.count("run:complete") == 1, types
    by_step = Counter((run_id, step) for run_id, step, _ in c.executions())
    assert len(by_step) == 150 * 5, "every step ran"
