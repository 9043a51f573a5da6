"""SQLite wake-ups across processes: a write in one process wakes waiters and claimable
subscribers of a store on the same file in another, through the datagram sockets in
``<db>-owners/``; sockets of dead processes are cleaned up by senders."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepstone import NewEvent, NewRun
from stepstone.stores.sqlite import SqliteStore

_WRITER = """
import asyncio, sys, time
from stepstone import NewEvent, NewRun
from stepstone.stores.sqlite import SqliteStore
async def main():
    store = SqliteStore(sys.argv[1])
    await store.init()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip():
        run, _ = await store.create_run(
            NewRun(id=line.strip(), job_name="job", job_version="1", input=None, created_at=time.time()),
            NewEvent("run:trigger", {}, time.time()))
        print("created", flush=True)
    await store.close()
asyncio.run(main())
"""


def _writer(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    return proc


def _create(proc: subprocess.Popen[str], run_id: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(run_id + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().startswith("created")


def _end(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()


@pytest.mark.parametrize("deep", [False, True], ids=["short-path", "path-longer-than-sun_path"])
async def test_a_trigger_in_another_process_wakes_this_one_at_once(tmp_path: Path, deep: bool) -> None:
    directory = tmp_path / ("d" * 60 if deep else "") / ("e" * 60 if deep else "")
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "jobs.db"
    store = SqliteStore(str(db))
    await store.init()
    proc = _writer(db)
    try:
        claimable: list[float] = []
        store.subscribe_claimable(lambda: claimable.append(time.monotonic()))
        version = await store.runs_version()
        waiter = asyncio.ensure_future(store.wait_run_changes(version, 30.0))  # no poll: only a wake-up ends it
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, _create, proc, "r1")
        await asyncio.wait_for(waiter, 10)
        assert time.monotonic() - t0 < 5
        assert claimable, "a claimable subscriber heard the other process's trigger"
        assert (await store.get_run("r1")) is not None
    finally:
        _end(proc)
        await store.close()
    assert not [p for p in os.listdir(str(db) + "-owners") if p.endswith(".sock")], "closed stores remove theirs"


async def test_a_socket_left_by_a_dead_process_is_removed_by_the_next_sender(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    owners = Path(str(db) + "-owners")
    owners.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(owners / "999999-deadbeef.sock"))
    dead.close()  # the file stays; nobody listens on it
    store = SqliteStore(str(db))
    await store.init()
    try:
        await store.create_run(NewRun("r", "job", "1", None, time.time()), NewEvent("run:trigger", {}, time.time()))
        assert not (owners / "999999-deadbeef.sock").exists()
    finally:
        await store.close()
