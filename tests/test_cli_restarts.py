"""``stepstone tail`` rides out a server that goes away mid-run: it says "reconnecting…" on stderr,
keeps trying, and once the server is back (restarted on the same port and SQLite file) it follows
the run to its end with every event exactly once. Real ``stepstone serve`` processes on 127.0.0.1,
stopped by PID: SIGKILL (a crash) and SIGTERM (a graceful stop, which hands the run back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.helpers import ServerProcess, start_server

pytest.importorskip("httpx")



def trigger(server: ServerProcess, steps: int, delay: float) -> str:
    body = json.dumps({"jobName": "steps", "input": {"steps": steps, "delay": delay}}).encode()
    request = urllib.request.Request(server.api_url + "/trigger", data=body, method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["runId"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)


class Tail:
    """``stepstone tail RUN --server URL --json`` in the background, its output in files."""

    def __init__(self, tmp: Path, server: ServerProcess, run_id: str) -> None:
        self.out, self.err = tmp / "tail.out", tmp / "tail.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stepstone.cli", "tail", run_id, "--server", server.url, "--json"],
                stdout=out, stderr=err, env={**os.environ, "STEPSTONE_TOKEN": ""},
            )

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def stderr(self) -> str:
        return self.err.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path)
    yield proc
    proc.stop()


def follow_through_an_outage(tmp_path: Path, server: ServerProcess, stop: Callable[[], object]) -> Tail:
    run_id = trigger(server, steps=6, delay=0.4)
    tail = Tail(tmp_path, server, run_id)
    try:
        wait_until(lambda: any(e["type"] == "step:complete" for e in tail.events()), "tail shows a finished step")
        stop()
        wait_until(lambda: "reconnecting…" in tail.stderr() or tail.proc.poll() is not None,
                   "tail says it is reconnecting")
        assert tail.proc.poll() is None, f"tail gave up: {tail.stderr()}"
        server.start()
        assert tail.proc.wait(timeout=60) == 0, tail.stderr()
    finally:
        tail.kill()
    events = tail.events()
    assert [e["seq"] for e in events] == list(range(len(events))), "every event once, in order"
    assert events[-1]["type"] == "run:complete"
    assert "reconnected" in tail.stderr()
    return tail


def test_tail_rides_out_a_server_crash_and_follows_the_run_to_its_end(tmp_path: Path, server: ServerProcess) -> None:
    follow_through_an_outage(tmp_path, server, server.kill)


def test_tail_rides_out_a_graceful_restart_and_follows_the_run_to_its_end(
    tmp_path: Path, server: ServerProcess
) -> None:
    follow_through_an_outage(tmp_path, server, server.terminate)
