"""Crash and restart of real ``stepstone serve`` processes on one SQLite file.

The servers run with a 60 s lease (``--stale-threshold 60``), so a run that resumes within seconds
was reclaimed at once (the dead server's flock was free, or the stopping server released it), not
after waiting its lease out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import stepstone

from .conftest import Server, follow_run, post, wait_status

LEASE = ["--stale-threshold", "60", "--heartbeat-interval", "1"]


def side_effects(path: Path) -> Counter[int]:
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[1]) for line in path.read_text().splitlines())


async def test_sigkill_mid_run_then_restart_completes_and_sse_resumes_exactly_once(
    server_factory: Any, tmp_path: Path
) -> None:
    first: Server = server_factory(*LEASE)
    side = tmp_path / "side.txt"
    run_id = post(first, "/trigger", json={"jobName": "steps", "input": {
        "steps": 10, "delay": 0.15, "sideFile": str(side)}}).json()["runId"]
    seen_before_kill: set[int] = set()
    state: dict[str, Any] = {}

    async def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "step:complete" and "killed" not in state:
            seen_before_kill.add(int(event["data"]["name"].split("-")[1]))
        if event["type"] == "step:start" and event["data"]["name"] == "step-5" and "killed" not in state:
            await asyncio.sleep(0.05)  # mid-step
            first.kill()
            state["killed"] = time.monotonic()
            second = await asyncio.to_thread(server_factory, *LEASE, db=first.db, port=first.port)
            state["second"] = second

    events, connections = await follow_run(first.url, run_id, on_event=on_event, deadline=40)
    assert "killed" in state and connections >= 2
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(seqs))), "every seq exactly once, in order"
    assert events[-1]["type"] == "run:complete"
    resumed_in = time.monotonic() - state["killed"]
    assert resumed_in < 30, f"the run took {resumed_in:.1f} s after the crash: was the lease waited out?"
    run = wait_status(state["second"], run_id, {"completed"})
    assert run["output"] == {"steps": 10}
    counts = side_effects(side)
    assert set(counts) == set(range(1, 11))
    assert all(counts[i] == 1 for i in seen_before_kill), counts  # recorded steps never ran again
    assert sum(counts.values()) <= 11  # at most the interrupted step ran twice
    starts = [e for e in events if e["type"] == "run:start"]
    assert len(starts) == 2 and starts[0]["data"]["owner"] != starts[1]["data"]["owner"]


async def test_sigterm_releases_leases_so_another_server_resumes_at_once(
    server_factory: Any, tmp_path: Path
) -> None:
    first: Server = server_factory(*LEASE)
    run_id = post(first, "/trigger", json={"jobName": "steps", "input": {"steps": 8, "delay": 0.2}}).json()["runId"]
    deadline = time.monotonic() + 15
    while (wait_status(first, run_id, {"running", "completed"}).get("progress") or {}).get("current", 0) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    # an SSE client connected at the stop sees its stream end (it does not hang the shutdown)
    follower = asyncio.create_task(follow_run(first.url, run_id, deadline=40))
    await asyncio.sleep(0.3)

    stopped_at = time.monotonic()
    assert await asyncio.to_thread(first.terminate) == 0
    assert time.monotonic() - stopped_at < 10  # open SSE clients do not hold the shutdown up
    assert "handing running runs back" in first.output()

    engine = stepstone.create_engine(first.store, worker=False)
    async with engine:
        released = await engine.get_run(run_id)
    assert released is not None and released.status == "pending" and released.owner is None
    assert released.progress is not None and released.progress.current >= 2

    second = await asyncio.to_thread(server_factory, *LEASE, db=first.db, port=first.port)
    run = wait_status(second, run_id, {"completed"}, timeout=15)
    assert run["output"] == {"steps": 8}
    assert time.monotonic() - stopped_at < 15  # far less than the 60 s lease
    events, connections = await asyncio.wait_for(follower, 30)
    assert [e["seq"] for e in events] == list(range(len(events))) and connections >= 2
