"""The ``stepstone`` command against a real server (``--server``) and a store file (``--store``):
output, exit statuses, one-line errors, and the live progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import HERE, TEST_JOBS, Server, free_port, post, wait_status


def cli(*args: str, timeout: float = 30, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepstone.cli", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(HERE), "STEPSTONE_SERVER": "", "STEPSTONE_TOKEN": ""},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stepstone: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    server = Server(tmp_path_factory.mktemp("cli") / "jobs.db", free_port(), [])
    server.start()
    yield server  # type: ignore[misc]
    server.kill()


def test_trigger_wait_prints_the_finished_run(server: Server) -> None:
    result = cli("trigger", "echo", "--input", '{"a": 1}', "--wait", "--server", server.url, "--label", "k=v")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "completed" and run["output"] == {"got": {"a": 1}} and run["labels"] == {"k": "v"}


def test_trigger_prints_the_run_id_and_repeats_idempotently(server: Server) -> None:
    first = json.loads(cli("trigger", "echo", "--idempotency-key", "cli-1", "--server", server.api).stdout)
    again = json.loads(cli("trigger", "echo", "--idempotency-key", "cli-1", "--server", server.api).stdout)
    assert first["created"] is True and again["created"] is False and first["runId"] == again["runId"]


def test_trigger_wait_exits_1_when_the_run_fails(server: Server) -> None:
    result = cli("trigger", "flaky", "--wait", "--server", server.url)
    assert result.returncode == 1 and json.loads(result.stdout)["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["trigger", "no-such-job"], "no-such-job"),
        (["trigger", "steps", "--input", '{"steps": "x"}'], "steps"),
        (["trigger", "echo", "--input", "{bad"], "--input is not valid JSON"),
        (["trigger", "echo", "--input", "@/nonexistent.json"], "cannot read --input file"),
        (["trigger", "echo", "--label", "novalue"], "key=value"),
        (["runs", "--status", "bogus"], "bogus"),
        (["tail", "no-such-run"], "no-such-run"),
    ],
)
def test_errors_are_one_line_and_exit_1(server: Server, args: list[str], fragment: str) -> None:
    assert_one_line_error(cli(*args, "--server", server.url), fragment)


def test_unreachable_server_is_a_one_line_error() -> None:
    assert_one_line_error(cli("runs", "--server", f"http://127.0.0.1:{free_port()}"))


def test_runs_table_and_json(server: Server) -> None:
    run_id = json.loads(cli("trigger", "echo", "--wait", "--server", server.url).stdout)["id"]
    table = cli("runs", "--job", "echo", "--status", "completed", "--server", server.url)
    assert table.returncode == 0 and run_id in table.stdout and "RUN ID" in table.stdout
    listed = json.loads(cli("runs", "--json", "--limit", "1", "--server", server.url).stdout)
    assert len(listed["runs"]) == 1 and listed["total"] >= 1


def test_tail_prints_every_event_and_exit_status(server: Server) -> None:
    run_id = post(server, "/trigger", json={"jobName": "steps", "input": {"steps": 3, "delay": 0.05}}).json()["runId"]
    result = cli("tail", run_id, "--server", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "run:trigger" in lines[0] and "run:complete" in lines[-1]
    assert any("INFO  done 2" in line for line in lines) and any("3/3 step 3" in line for line in lines)
    later = cli("tail", run_id, "--from", "5", "--json", "--server", server.url)
    assert json.loads(later.stdout.splitlines()[0])["seq"] == 5
    failed = json.loads(cli("trigger", "flaky", "--server", server.url).stdout)["runId"]
    wait_status(server, failed, {"failed"})
    assert cli("tail", failed, "--server", server.url).returncode == 1


def test_tail_on_a_terminal_draws_a_live_progress_bar(server: Server) -> None:
    run_id = post(server, "/trigger", json={"jobName": "steps", "input": {"steps": 4, "delay": 0.05}}).json()["runId"]
    master, slave = pty.openpty()
    out = b""
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "stepstone.cli", "tail", run_id, "--server", server.url],
            stdout=slave, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(HERE)},
        ) as proc:
            os.close(slave)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        os.close(master)
    text = out.decode()
    assert "\r\x1b[K" in text and "[" + "#" * 30 + "] 4/4 step 4" in text
    assert "run:progress" not in text  # progress is the bar, not lines
    assert "INFO  done 4" in text and "run:complete" in text


def test_store_mode_triggers_lists_and_tails_without_a_server(server: Server, tmp_path: Path) -> None:
    store = ["--store", server.store, "--jobs", TEST_JOBS]
    # the running server (same SQLite file, another process) executes what the CLI enqueues
    result = cli("trigger", "echo", "--input", "7", "--wait", *store)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["output"] == {"got": 7}
    assert run["id"] in cli("runs", "--store", server.store).stdout
    tailed = cli("tail", run["id"], "--json", "--store", server.store)
    assert json.loads(tailed.stdout.splitlines()[-1])["type"] == "run:complete"
    assert_one_line_error(cli("trigger", "echo", "--store", server.store), "echo")  # no --jobs: unknown job


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--jobs", "no_such_module_xyz"], "no_such_module_xyz"),
        (["--jobs", "json"], "defines no stepstone.Job"),
        (["--jobs", TEST_JOBS, "--store", "nosql://x"], "nosql://x"),
        ([], "--jobs"),
    ],
)
def test_serve_errors_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    store = [] if "--store" in args else ["--store", f"sqlite:///{tmp_path}/x.db"]
    result = cli("serve", *store, *args, "--port", str(free_port()), timeout=20)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and fragment in result.stderr, result.stderr


def test_serve_port_in_use_is_an_error(server: Server, tmp_path: Path) -> None:
    result = cli("serve", "--store", f"sqlite:///{tmp_path}/x.db", "--jobs", TEST_JOBS, "--port", str(server.port))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "address already in use" in result.stderr.lower() or "errno 98" in result.stderr.lower(), result.stderr


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"steps": "abc"}', "steps must be a whole number from 1 to 1000, not 'abc'"),
        ('{"steps": 2.5}', "steps must be a whole number from 1 to 1000, not 2.5"),
        ('{"delay": -1}', "delay must be a number of seconds from 0 to 60, not -1"),
        ('{"stepz": 3}', "unknown field 'stepz'; expected steps, delay"),
        ("[1]", 'expected an object like {"steps": 10, "delay": 1}, not [1]'),
    ],
)
def test_demo_input_errors_are_plain_words_not_class_names(tmp_path: Path, payload: str, message: str) -> None:
    store = ["--store", f"sqlite:///{tmp_path}/demo.db", "--jobs", "stepstone.demo"]
    result = cli("trigger", "demo-steps", "--input", payload, *store)
    assert_one_line_error(result, f"input rejected by job 'demo-steps': {message}")
    assert "StepsInput" not in result.stderr


def test_demo_jobs_take_no_input_as_every_default(tmp_path: Path) -> None:
    store = ["--store", f"sqlite:///{tmp_path}/demo.db", "--jobs", "stepstone.demo"]
    result = cli("trigger", "demo-steps", *store)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"]["status"] == "pending"
