"""The CLI and the workflow primitives, against a real ``stepstone serve`` (the demo jobs and those
of tests/hooks/jobs.py) on 127.0.0.1: ``send-event`` and its refusals, what ``runs`` says a
suspended run waits for and a child's parent, ``tail`` lines for suspend / resume / retry / cancel,
and ``schedules list | create | pause | resume | delete``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server

pytest.importorskip("httpx")

CLOCK = r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d"  # a time of today, or a date and time
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("cli-workflows"), jobs="tests.hooks.jobs,stepstone.demo")
    yield proc
    proc.stop()


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepstone.cli", *args, "--server", server.url], capture_output=True, text=True,
        timeout=60, env={**os.environ, "STEPSTONE_SERVER": "", "STEPSTONE_TOKEN": ""},
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stepstone: error: "), result.stderr
    return lines[0].removeprefix("stepstone: error: ")


def api(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        server.api_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def trigger(server: ServerProcess, job: str, payload: Any) -> str:
    return str(api(server, "POST", "/trigger", {"jobName": job, "input": payload})["runId"])


def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)
    return value


def run_of(server: ServerProcess, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api(server, "GET", f"/run?runId={run_id}")
    return run


def waiting(server: ServerProcess, run_id: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        run = run_of(server, run_id)
        return run if run["status"] == "suspended" and (run["wait"] or {}).get("reason") == reason else None

    found: dict[str, Any] = until(check, f"run {run_id} suspended ({reason})")
    return found


def finished(server: ServerProcess, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = until(
        lambda: (run := run_of(server, run_id))["status"] in ("completed", "failed", "cancelled") and run,
        f"run {run_id} finished")
    return found


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A table printed by the CLI: its header and its rows as dicts, cut at the header's columns."""
    lines = [line for line in text.splitlines() if line and not line.startswith("(")]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = [{name: line[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
            for line in lines[1:]]  # fmt: skip
    return names, rows


# -- send-event --------------------------------------------------------------------------------------
def test_send_event_wakes_a_waiting_run(server: ServerProcess) -> None:
    run_id = trigger(server, "approval", {})
    waiting(server, run_id, "event")
    out = ok(cli(server, "send-event", run_id, "approval", "--data", '{"by": "ann"}'))
    assert re.fullmatch(
        rf"sent event approval to run {run_id} \(approval, suspended: waits for event approval, attempt 1, "
        rf"created {DATE}\); it was waiting for it and wakes now\n", out), out
    assert finished(server, run_id)["output"] == {"approved": True, "data": {"by": "ann"}}


def test_send_event_before_the_wait_is_kept_for_it(server: ServerProcess) -> None:
    run_id = trigger(server, "demo-approval", {"delay": 0, "sleep": 0.5, "timeout": 60})
    waiting(server, run_id, "sleep")
    out = ok(cli(server, "send-event", run_id, "approval", "--data", '{"ok": false, "by": "bob"}', "--json"))
    sent = json.loads(out)
    assert sent["sent"] is True and sent["name"] == "approval" and sent["run"]["status"] == "suspended"
    assert re.match(ISO, sent["run"]["wait"]["until"]) and re.match(ISO, sent["run"]["createdAt"])
    assert finished(server, run_id)["output"] == {"approved": False, "by": "bob"}


def test_send_event_refusals_are_one_line(server: ServerProcess) -> None:
    assert one_line_error(cli(server, "send-event", "no-such-run", "approval")) == "no run with id 'no-such-run'"
    done = trigger(server, "tick", None)
    finished(server, done)
    assert one_line_error(cli(server, "send-event", done, "approval", "--data", "{}")) == (
        f"run {done!r} is already completed; it takes no more events")
    assert one_line_error(cli(server, "send-event", done, "approval", "--data", "{by: ann}")) == (
        "--data is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
    help_text = ok(subprocess.run([sys.executable, "-m", "stepstone.cli", "send-event", "--help"],
                                  capture_output=True, text=True, timeout=30))
    assert "--data" in help_text and "--server" in help_text and "--token" in help_text


# -- runs: the wait and the parent ---------------------------------------------------------------------
def test_runs_says_what_each_suspended_run_waits_for_and_names_parents(server: ServerProcess) -> None:
    napper = trigger(server, "napper", {"seconds": 3600})
    approval = trigger(server, "approval", {"timeout": 3600})
    parent = trigger(server, "await-approval", {})
    retrying = trigger(server, "flaky-step", {"fails": 1, "backoff": 3600})
    waiting(server, napper, "sleep")
    waiting(server, approval, "event")
    child = waiting(server, parent, "children")["wait"]["children"][0]
    waiting(server, child, "event")
    waiting(server, retrying, "retry")

    names, rows = table(ok(cli(server, "runs", "--status", "suspended", "--limit", "100")))
    assert names == ["RUN ID", "JOB", "STATUS", "PROGRESS", "ATTEMPT", "CREATED", "WAITING FOR", "PARENT"]
    by_id = {row["RUN ID"]: row for row in rows}
    assert re.fullmatch(rf"sleeps until {CLOCK}", by_id[napper]["WAITING FOR"])
    assert re.fullmatch(rf"waits for event approval until {CLOCK}", by_id[approval]["WAITING FOR"])
    assert by_id[parent]["WAITING FOR"] == "waits for 1 child" and by_id[parent]["PARENT"] == ""
    assert by_id[child]["WAITING FOR"] == "waits for event approval" and by_id[child]["PARENT"] == parent
    assert re.fullmatch(rf"retry at {CLOCK}", by_id[retrying]["WAITING FOR"])

    names, rows = table(ok(cli(server, "runs", "--job", "approval", "--limit", "100")))
    assert "WAITING FOR" in names and "PARENT" in names  # the child of await-approval is an approval run
    listed = json.loads(ok(cli(server, "runs", "--status", "suspended", "--json", "--limit", "100")))["runs"]
    napper_json = next(r for r in listed if r["id"] == napper)
    assert napper_json["wait"]["reason"] == "sleep" and re.match(ISO, napper_json["wait"]["until"])
    assert re.match(ISO, napper_json["wakeAt"])

    for run_id in (napper, approval, parent, retrying):
        cancelled = ok(cli(server, "cancel", run_id))
        assert re.fullmatch(rf"cancelled run {run_id} \([\w-]+, (cancelling|cancelled), attempt 1, created {DATE}\); "
                            r"it was suspended\n", cancelled), cancelled
    finished(server, child)  # cancelling a parent cancels its unfinished child


def test_runs_leaves_the_wait_and_parent_columns_out_when_no_run_has_one(server: ServerProcess) -> None:
    run_id = trigger(server, "tick", None)
    finished(server, run_id)
    names, _ = table(ok(cli(server, "runs", "--job", "tick", "--limit", "1")))
    assert names == ["RUN ID", "JOB", "STATUS", "PROGRESS", "ATTEMPT", "CREATED"]


# -- tail ----------------------------------------------------------------------------------------------
def lines_of(server: ServerProcess, run_id: str) -> list[tuple[str, str]]:
    """``tail --plain`` of a finished run: (type, summary) per line."""
    result = cli(server, "tail", run_id, "--plain")
    assert result.returncode in (0, 1), result.stderr
    found = [re.fullmatch(r"\s*\d+  \d\d:\d\d:\d\d  (\S+)\s*(.*)", line) for line in result.stdout.splitlines()]
    assert all(found), result.stdout
    return [(m.group(1), m.group(2)) for m in found if m]


def test_tail_prints_suspend_resume_and_waiting_steps_readably(server: ServerProcess) -> None:
    run_id = trigger(server, "demo-approval", {"delay": 0, "sleep": 0.2, "timeout": 3600})
    waiting(server, run_id, "event")
    ok(cli(server, "send-event", run_id, "approval", "--data", '{"ok": true, "by": "ann"}'))
    finished(server, run_id)
    lines = lines_of(server, run_id)
    text = "\n".join(f"{kind} {summary}" for kind, summary in lines)
    assert re.search(rf"^step:start cool-down sleeps until {CLOCK}$", text, re.M), text
    assert re.search(rf"^run:suspend sleeps until {CLOCK}$", text, re.M), text
    assert "run:resume resumed after its sleep (attempt 1)" in text
    assert re.search(rf"^step:start event:approval waits for event approval until {CLOCK}$", text, re.M), text
    assert re.search(rf"^run:suspend waits for event approval until {CLOCK}$", text, re.M), text
    assert "run:resume resumed after its event wait (attempt 1)" in text
    assert lines[-1] == ("run:complete", 'output {"approved": true, "by": "ann"}')


def test_tail_prints_retries_cancels_and_children(server: ServerProcess) -> None:
    flaky = trigger(server, "flaky-step", {"fails": 2, "backoff": 0.01})
    finished(server, flaky)
    retries = [summary for kind, summary in lines_of(server, flaky) if kind == "step:retry"]
    assert len(retries) == 2 and all(
        re.fullmatch(rf"call attempt {n} failed: RuntimeError: attempt {n} failed; next attempt at {CLOCK}", line)
        for n, line in enumerate(retries, 1)), retries
    assert ("step:start", "call (attempt 3)") in lines_of(server, flaky)

    run_job = trigger(server, "flaky-run", {})
    finished(server, run_job)
    suspend = [summary for kind, summary in lines_of(server, run_job) if kind == "run:suspend"]
    assert len(suspend) == 1 and re.fullmatch(
        rf"retry at {CLOCK} \(attempt 2\) after: RuntimeError: attempt 1 fails", suspend[0]), suspend

    slow = trigger(server, "steps", {"steps": 2, "delay": 30})
    until(lambda: run_of(server, slow)["lastSeq"] >= 2, "step s0 started")  # run:trigger, run:start, step:start
    ok(cli(server, "cancel", slow))
    finished(server, slow)
    cancels = [summary for kind, summary in lines_of(server, slow) if kind == "step:cancel"]
    assert len(cancels) == 1 and re.fullmatch(
        rf"s0 \(\d+ ms\) cancelled: RunCancelled: run '{slow}' was cancelled during step 's0'", cancels[0]), cancels

    parent = trigger(server, "fan-out", 2)
    finished(server, parent)
    starts = [summary for kind, summary in lines_of(server, parent) if kind == "step:start"]
    assert all(re.fullmatch(r"d\d invokes double as run \S+", line) for line in starts) and len(starts) == 2


# -- schedules -------------------------------------------------------------------------------------------
def schedule(server: ServerProcess, name: str) -> dict[str, Any] | None:
    return next((s for s in api(server, "GET", "/schedules")["schedules"] if s["name"] == name), None)


def test_schedules_create_list_pause_resume_delete(server: ServerProcess) -> None:
    assert one_line_error(cli(server, "schedules", "create", "bad", "tick", "0 25 * * *")) == (
        "schedule 'bad': the hour field: 25 is out of range 0-23")
    assert one_line_error(cli(server, "schedules", "create", "bad", "nope", "* * * * *")) == (
        "schedule 'bad': no job named 'nope' is registered here")
    mars = cli(server, "schedules", "create", "bad", "tick", "0 7 * * *", "--timezone", "Mars/Base")
    assert one_line_error(mars) == (
        "schedule 'bad': unknown time zone 'Mars/Base' (an IANA name like 'Europe/Paris' or 'UTC')")
    assert one_line_error(cli(server, "schedules", "create", "bad", "tick", "* * * * *", "--input", "{")).startswith(
        "--input is not valid JSON")

    created = ok(cli(server, "schedules", "create", "nightly", "tick", "0 7 * * mon-fri", "--timezone", "Europe/Paris",
                     "--input", '{"tag": "n"}', "--missed", "catch_up", "--catch-up", "2"))
    assert re.fullmatch(rf"created schedule nightly: job tick at '0 7 \* \* mon-fri' \(Europe/Paris\); "
                        rf"next fire {DATE} \(in \d+ (d|h|min|s)( \d+ (h|min))?\)\n", created), created
    again = ok(cli(server, "schedules", "create", "nightly", "tick", "0 7 * * mon-fri", "--timezone", "Europe/Paris",
                   "--input", '{"tag": "n"}', "--missed", "catch_up", "--catch-up", "2"))
    assert again.startswith("unchanged: schedule nightly: job tick")
    until(lambda: (s := schedule(server, "nightly")) and s["nextFireAt"], "the schedule planned its next tick")

    names, rows = table(ok(cli(server, "schedules", "list")))
    assert names == ["NAME", "JOB", "CRON", "TIMEZONE", "NEXT FIRE", "STATE"]
    row = next(r for r in rows if r["NAME"] == "nightly")
    assert (row["JOB"], row["CRON"], row["TIMEZONE"], row["STATE"]) == ("tick", "0 7 * * mon-fri", "Europe/Paris",
                                                                        "active")
    next_fire = schedule(server, "nightly")["nextFireAt"]  # type: ignore[index]
    assert row["NEXT FIRE"].startswith(time.strftime("%Y-%m-%d %H:%M:%S (in ", time.localtime(next_fire)))
    runs = table(ok(cli(server, "runs", "--job", "stepstone.schedule", "--status", "suspended", "--limit", "100")))[1]
    assert any(re.fullmatch(rf"schedule nightly fires at {DATE}", r["WAITING FOR"]) for r in runs), runs
    listed = json.loads(ok(cli(server, "schedules", "list", "--json")))["schedules"]
    nightly = next(s for s in listed if s["name"] == "nightly")
    assert re.match(ISO, nightly["nextFireAt"]) and nightly["input"] == {"tag": "n"} and nightly["catchUp"] == 2

    assert ok(cli(server, "schedules", "pause", "nightly")) == (
        "paused schedule nightly (job tick at '0 7 * * mon-fri' (Europe/Paris)); ticks passed while paused are not "
        "fired\n")
    until(lambda: (s := schedule(server, "nightly")) and s["paused"], "the schedule paused")
    row = next(r for r in table(ok(cli(server, "schedules", "list")))[1] if r["NAME"] == "nightly")
    assert (row["NEXT FIRE"], row["STATE"]) == ("- (paused)", "paused")
    runs = table(ok(cli(server, "runs", "--job", "stepstone.schedule", "--status", "suspended", "--limit", "100")))[1]
    assert any(r["WAITING FOR"] == "schedule nightly paused" for r in runs), runs
    resumed = ok(cli(server, "schedules", "resume", "nightly"))
    assert re.fullmatch(rf"resumed schedule nightly \(job tick at '0 7 \* \* mon-fri' \(Europe/Paris\)\); "
                        rf"next fire {DATE} \(in .+\)\n", resumed), resumed
    until(lambda: (s := schedule(server, "nightly")) and not s["paused"] and s["nextFireAt"], "the schedule resumed")

    assert ok(cli(server, "schedules", "delete", "nightly")) == (
        "deleted schedule nightly (job tick at '0 7 * * mon-fri' (Europe/Paris)); the runs it fired are kept\n")
    until(lambda: schedule(server, "nightly") is None, "the schedule deleted")
    for action in ("pause", "resume", "delete"):
        assert one_line_error(cli(server, "schedules", action, "nightly")) == "no schedule named 'nightly'"


def test_a_schedule_fires_and_the_list_says_when_next(server: ServerProcess) -> None:
    out = ok(cli(server, "schedules", "create", "every-second", "tick", "* * * * * *"))
    assert out.startswith("created schedule every-second: job tick at '* * * * * *' (UTC); next fire ")
    until(lambda: api(server, "GET", "/runs?jobName=tick&status=completed&limit=0")["total"] >= 2, "two ticks fired")
    row = next(r for r in table(ok(cli(server, "schedules", "list")))[1] if r["NAME"] == "every-second")
    assert re.fullmatch(rf"{DATE} \((in \d+ s|due now)\)", row["NEXT FIRE"]), row
    ok(cli(server, "schedules", "delete", "every-second"))
