"""``stepstone retry / cancel / delete``, the hints of ``stepstone runs``, the live progress of
``stepstone trigger --wait`` and readable dates in every output, against a real ``stepstone serve``
of the demo jobs on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.serve import ServeProcess

pytest.importorskip("httpx")

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("cli-commands")
    proc = ServeProcess(tmp / "demo.db", jobs="stepstone.demo", polling_interval=0.05).start()
    yield proc
    proc.stop()


def cli(server: ServeProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepstone.cli", *args, "--server", server.url], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "STEPSTONE_SERVER": "", "STEPSTONE_TOKEN": ""},
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stepstone: error: "), result.stderr
    return lines[0].removeprefix("stepstone: error: ")


def trigger(server: ServeProcess, job: str, payload: dict[str, Any]) -> str:
    result = cli(server, "trigger", job, "--input", json.dumps(payload))
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["runId"])


def _get(server: ServeProcess, run_id: str) -> str:
    with urllib.request.urlopen(f"{server.api_url}/run?runId={run_id}", timeout=10) as response:
        return response.read().decode()


def wait_status(server: ServeProcess, run_id: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while json.loads(_get(server, run_id))["status"] != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is not {wanted} after {timeout} s"
        time.sleep(0.05)


def test_retry_cancel_and_delete_say_what_they_did(server: ServeProcess) -> None:
    flaky = trigger(server, "demo-flaky", {"steps": 3, "failAt": 2, "delay": 0})
    wait_status(server, flaky, "failed")
    retried = cli(server, "retry", flaky)
    assert retried.returncode == 0, retried.stderr
    assert re.fullmatch(
        rf"retried run {flaky} \(demo-flaky, pending, attempt 2, 1/3 done, created {DATE}\); "
        r"it resumes where it stopped\n", retried.stdout), retried.stdout
    wait_status(server, flaky, "completed")

    long = trigger(server, "demo-steps", {"steps": 50, "delay": 1})
    wait_status(server, long, "running")
    cancelled = cli(server, "cancel", long)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"cancelled run {long} (demo-steps, cancelled, attempt 1")
    assert cancelled.stdout.endswith("); it was running\n")

    deleted = cli(server, "delete", flaky)
    assert deleted.returncode == 0, deleted.stderr
    assert re.fullmatch(rf"deleted run {flaky} \(demo-flaky, completed, attempt 2, 3/3 done, created {DATE}\) "
                        r"with its steps and events\n", deleted.stdout), deleted.stdout
    as_json = json.loads(cli(server, "delete", long, "--json").stdout)
    assert as_json["deleted"] is True and as_json["run"]["id"] == long


def test_retry_cancel_and_delete_refuse_unknown_runs_and_wrong_states(server: ServeProcess) -> None:
    for command in ("retry", "cancel", "delete"):
        assert one_line_error(cli(server, command, "no-such-run")) == "no run with id 'no-such-run'"
    done = trigger(server, "demo-steps", {"steps": 1, "delay": 0})
    wait_status(server, done, "completed")
    assert one_line_error(cli(server, "retry", done)) == (
        f"run {done!r} is completed; only failed or cancelled runs can be retried")
    assert one_line_error(cli(server, "cancel", done)) == (
        f"run {done!r} is already completed; only unfinished runs can be cancelled")


def test_runs_says_when_nothing_matches_and_names_the_servers_jobs(server: ServeProcess) -> None:
    nope = cli(server, "runs", "--job", "nope")
    assert nope.returncode == 0 and nope.stdout == (
        "no runs match (job 'nope' is not a job on this server; its jobs: "
        "demo-approval, demo-flaky, demo-steps, demo-stream)\n")
    none = cli(server, "runs", "--job", "demo-stream", "--status", "running", "--label", "team=x")
    assert none.returncode == 0 and none.stdout == (
        "no runs match (job 'demo-stream'; status running; label team=x)\n")


def test_trigger_wait_shows_progress_on_stderr_and_prints_the_run(server: ServeProcess) -> None:
    result = cli(server, "trigger", "demo-steps", "--input", '{"steps": 3, "delay": 0.05}', "--wait")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "completed" and run["output"] == {"steps": 3}
    lines = result.stderr.splitlines()
    assert lines[0] == f"stepstone: started run {run['id']} of demo-steps; waiting for it to finish…"
    assert re.search(r"^\s+\d+  \d\d:\d\d:\d\d  run:progress\s+3/3 step 3 of 3$", result.stderr, re.M), result.stderr
    assert "run:complete" in lines[-1]
    quiet = cli(server, "trigger", "demo-steps", "--input", '{"steps": 1, "delay": 0}', "--wait", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["status"] == "completed"


def test_trigger_wait_timeout_is_a_one_line_error(server: ServeProcess) -> None:
    result = cli(server, "trigger", "demo-steps", "--input", '{"steps": 5, "delay": 1}', "--wait", "--quiet",
                 "--timeout", "0.5")
    assert one_line_error(result).endswith("is still not finished after 0.5 s")


def test_times_are_dates_everywhere(server: ServeProcess) -> None:
    run_id = trigger(server, "demo-steps", {"steps": 1, "delay": 0})
    wait_status(server, run_id, "completed")
    table = cli(server, "runs", "--job", "demo-steps", "--limit", "1").stdout.splitlines()
    assert table[0].endswith("CREATED") and re.search(rf"  {DATE}$", table[1]), table
    listed = json.loads(cli(server, "runs", "--json", "--limit", "1").stdout)["runs"][0]
    assert all(re.match(ISO, listed[key]) for key in ("createdAt", "updatedAt", "startedAt", "finishedAt"))
    triggered = json.loads(cli(server, "trigger", "demo-steps", "--input", '{"steps": 1}').stdout)
    assert re.match(ISO, triggered["run"]["createdAt"]) and triggered["run"]["finishedAt"] is None
    events = [json.loads(line) for line in cli(server, "tail", run_id, "--json").stdout.splitlines()]
    assert events and all(re.match(ISO, event["at"]) for event in events)
    plain = cli(server, "tail", run_id, "--plain").stdout.splitlines()
    assert all(re.match(r"^\s+\d+  \d\d:\d\d:\d\d  \S", line) for line in plain), plain


def test_every_command_has_help(server: ServeProcess) -> None:
    for command in ("retry", "cancel", "delete"):
        result = subprocess.run([sys.executable, "-m", "stepstone.cli", command, "--help"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and "--server" in result.stdout and "--token" in result.stdout
