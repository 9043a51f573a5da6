"""Server mode in Chromium: web/server.html and web/dashboard.html against a real ``stepstone serve``
(SQLite, the demo jobs, the site) on 127.0.0.1. A reload mid-run reattaches with no duplicated log
line; a run started elsewhere takes over the page; the dashboard's actions update it live; an open
page survives a server crash and restart; bad input (server down, 401/403, unknown run, invalid
input) shows a clear message in the page and in the hook's ``error``; no request leaves 127.0.0.1.

The pages are served from a private copy of ``dist/site`` with this tree's ``web/`` pages and
``src/stepstone`` in place of the wheel, so the tests never depend on a stale build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server
from tests.support.serve import ServeProcess

from .harness import ROOT, collect_page_errors, ensure_site, guard_offline, run_py, wait_for

pytestmark = pytest.mark.browser

#: Chromium reports every failed fetch on the console; tests that cause them on purpose allow these.
EXPECTED_FAILURES = ("Failed to load resource", "net::ERR_")


def private_site(dest: Path) -> Path:
    """dist/site's vendored runtimes (hard links), this tree's web/ pages, src/stepstone as the wheel
    and the zip. The loader's memory snapshot holds the stepstone modules of dist/site's build, so
    this site's loader starts Python instead (its path without a snapshot)."""
    base = ensure_site()
    site = dest / "site"
    shutil.copytree(base, site, copy_function=os.link)
    for page in (ROOT / "web").iterdir():
        if page.is_file():
            (site / page.name).unlink(missing_ok=True)
            shutil.copy2(page, site / page.name)
    archives = list((site / "wheels").glob("stepstone-*.whl")) + list((site / "wheels").glob("stepstone-*.zip"))
    assert len(archives) == 2, f"no stepstone wheel and zip in {base / 'wheels'}"
    for wheel in archives:  # the pages import the zip (stepstone-pyodide.mjs), workers and micropip the wheel
        wheel.unlink()
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted((ROOT / "src" / "stepstone").rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(ROOT / "src").as_posix())
    loader = site / "stepstone-pyodide.mjs"
    text = loader.read_text()
    loader.unlink()  # a hard link into dist/site
    no_snapshot = re.sub(r"^export const snapshot = .*;$", "export const snapshot = null;", text, count=1, flags=re.M)
    loader.write_text(no_snapshot)
    assert "export const snapshot = null;" in loader.read_text()
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is missing at /usr/bin/chromium")
    return private_site(tmp_path_factory.mktemp("pages"))


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("server"), jobs="stepstone.demo", site=site)
    yield proc
    proc.stop()


class Contexts:
    """Browser contexts of one test: each may only reach 127.0.0.1 and must log no page error
    (except failed loads, where a test causes them on purpose)."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.opened: list[tuple[Any, list[str], list[str]]] = []
        self.allow_failed_loads = False

    def new(self, *, route_guard: bool = True) -> Any:
        """A context whose requests may only go to 127.0.0.1; with ``route_guard=False`` that is left
        to Chromium's --host-resolver-rules alone (the guard delays every request by a round trip
        through Playwright, which hides races that a real browser runs into)."""
        context = self.browser.new_context()
        self.opened.append((context, guard_offline(context) if route_guard else [], collect_page_errors(context)))
        return context

    def check(self) -> None:
        outside = [url for _, urls, _ in self.opened for url in urls]
        assert not outside, f"pages asked for other origins (blocked): {outside}"
        errors = [e for _, _, errs in self.opened for e in errs]
        if self.allow_failed_loads:
            errors = [e for e in errors if not any(marker in e for marker in EXPECTED_FAILURES)]
        assert not errors, f"pages logged errors: {errors}"


@pytest.fixture
def contexts(browser: Any) -> Iterator[Contexts]:
    c = Contexts(browser)
    yield c
    for context, _, _ in c.opened:
        context.close()
    c.check()


def api(server: ServerProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        server.api_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def open_page(context: Any, url: str, expect: str = "ready") -> Any:
    page = context.new_page()
    page.goto(url)
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 90)
    assert state == expect, f"page state {state!r}; error box: {page.inner_text('#error')!r}"
    return page


def dataset(page: Any, name: str) -> str:
    return str(page.evaluate(f"document.body.dataset.{name} || ''"))


def log_lines(page: Any) -> list[tuple[int, str]]:
    rows = page.eval_on_selector_all("#log li", "items => items.map(li => [li.dataset.seq, li.innerText])")
    return [(int(seq), text) for seq, text in rows]


def hook_error(page: Any, name: str = "job") -> list[Any]:
    """The hook's own ``error`` and ``error_code``, read in the page's Python."""
    return run_py(page, f"import __main__, json\njson.dumps([__main__.{name}.error, __main__.{name}.error_code])")


def start(page: Any, steps: int, delay: float) -> str:
    page.fill("#steps-input", str(steps))
    page.fill("#delay-input", str(delay))
    page.click("#start")
    run_id: str = wait_for(page, "document.body.dataset.run", 15)
    return run_id


# -- server.html -----------------------------------------------------------------------------------
def test_reload_mid_run_reattaches_and_completes_without_duplicated_log_lines(
    server: ServerProcess, contexts: Contexts
) -> None:
    context = contexts.new()
    page = open_page(context, f"{server.url}/server.html")
    run_id = start(page, steps=10, delay=1.5)  # 15 s: a reload (Pyodide boots again) lands mid-run
    wait_for(page, "document.querySelectorAll('#log li').length >= 2", 20)
    page.reload()
    wait_for(page, "document.body.dataset.state === 'ready'", 90)
    assert dataset(page, "run") == run_id
    assert dataset(page, "runStatus") in ("pending", "running"), "the reload should land mid-run"
    wait_for(page, "document.body.dataset.runStatus === 'completed'", 30)
    lines = log_lines(page)
    assert [text for _, text in lines] == [f"#{seq} info: finished step {i}" for i, (seq, _) in enumerate(lines, 1)]
    assert len(lines) == 10 and len({seq for seq, _ in lines}) == 10
    assert page.inner_text("#progress-text") == "10 / 10 · step 10 of 10"
    assert json.loads(page.inner_text("#output")) == {"steps": 10}
    assert run_py(page, "import __main__, json\njson.dumps([__main__.job.status, len(__main__.job.logs)])") == [
        "completed", 10,
    ]


def test_a_run_started_in_another_tab_or_client_takes_over(server: ServerProcess, contexts: Contexts) -> None:
    context = contexts.new()
    watcher = open_page(context, f"{server.url}/server.html")
    other_tab = open_page(context, f"{server.url}/server.html")
    from_tab = start(other_tab, steps=2, delay=0.3)
    wait_for(watcher, f"document.body.dataset.run === {json.dumps(from_tab)}", 20)
    wait_for(watcher, "document.body.dataset.runStatus === 'completed'", 20)
    from_api = api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 2, "delay": 0.3}})["runId"]
    for page in (watcher, other_tab):
        wait_for(page, f"document.body.dataset.run === {json.dumps(from_api)}", 20)
        wait_for(page, "document.body.dataset.runStatus === 'completed'", 20)
        assert [text.split(": ", 1)[1] for _, text in log_lines(page)] == ["finished step 1", "finished step 2"]


def test_bad_input_and_an_unknown_run_show_clear_messages(server: ServerProcess, contexts: Contexts) -> None:
    contexts.allow_failed_loads = True  # the 404 of the unknown run
    page = open_page(contexts.new(), f"{server.url}/server.html?run=no-such-run")
    wait_for(page, "document.body.dataset.errorCode === 'run_not_found'", 20)
    assert "no-such-run" in page.inner_text("#error") and page.is_visible("#error")
    error, code = hook_error(page)
    assert code == "run_not_found" and "no-such-run" in error
    page.fill("#steps-input", "0")
    page.click("#start")
    wait_for(page, "!document.getElementById('input-error').hidden", 10)
    assert "steps must be a whole number from 1 to 1000, not 0" in page.inner_text("#input-error")
    assert hook_error(page)[1] == "invalid_input"


def test_bad_input_shows_once_in_plain_words_and_goes_when_another_run_is_followed(
    server: ServerProcess, contexts: Contexts
) -> None:
    contexts.allow_failed_loads = True  # the 422
    page = open_page(contexts.new(), f"{server.url}/server.html")
    page.fill("#steps-input", "abc")
    page.click("#start")
    wait_for(page, "!document.getElementById('input-error').hidden", 10)
    assert page.inner_text("#input-error") == (
        "Invalid input: input rejected by job 'demo-steps': steps must be a whole number from 1 to 1000, not 'abc'"
    )
    assert page.is_hidden("#error"), "the same message twice: in the alert box too"
    other = api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 1, "delay": 0}})["runId"]
    wait_for(page, f"document.body.dataset.run === {json.dumps(other)}", 20)
    wait_for(page, "document.getElementById('input-error').hidden", 5)
    assert page.is_hidden("#error") and hook_error(page) == [None, None]


BUSY_BARS = "[...document.querySelectorAll('progress')].filter(p => p.offsetParent && p.position === -1).length"


def test_an_unknown_run_is_one_clear_not_found_state(server: ServerProcess, contexts: Contexts) -> None:
    contexts.allow_failed_loads = True  # the 404 of the unknown run
    page = open_page(contexts.new(), f"{server.url}/server.html?run=no-such-run")
    wait_for(page, "document.body.dataset.errorCode === 'run_not_found'", 20)
    assert page.inner_text("#error") == (
        "Run no-such-run was not found (it may have been deleted). Start a new run below."
    )
    assert page.is_hidden("#current"), "no run card (a 'loading' badge, a busy bar, an empty log) beside it"
    assert page.evaluate(BUSY_BARS) == 0


def test_no_progress_is_an_empty_bar_not_a_busy_one(server: ServerProcess, contexts: Contexts) -> None:
    page = open_page(contexts.new(), f"{server.url}/server.html")
    code = """
import js, json
from stepstone import Progress
from stepstone.hooks.dom import set_progress
bar = js.document.createElement("progress")
js.document.body.append(bar)
seen = []
for progress in (None, Progress(2, 4), None):
    set_progress(bar, progress)
    seen.append([bar.position, bar.hasAttribute("value")])
bar.remove()
json.dumps(seen)
"""
    # position is -1 for an indeterminate (animated) bar; an empty one is at 0
    assert run_py(page, code) == [[0, True], [0.5, True], [0, True]]


def test_wrong_api_path_says_so(server: ServerProcess, contexts: Contexts) -> None:
    contexts.allow_failed_loads = True
    page = open_page(contexts.new(), f"{server.url}/server.html?api=/not-the-api")
    wait_for(page, "!document.getElementById('error').hidden", 20)
    assert "is the api_url right?" in page.inner_text("#error")


def test_unauthorized_shows_a_clear_message(site: Path, tmp_path: Path, contexts: Contexts) -> None:
    contexts.allow_failed_loads = True  # the 401 and 403 answers
    secured = start_server(tmp_path, token="s3cret", jobs="stepstone.demo", site=site)
    try:
        context = contexts.new()
        page = open_page(context, f"{secured.url}/server.html")
        wait_for(page, "document.body.dataset.errorCode === 'unauthorized'", 20)
        assert "not authorized (401)" in page.inner_text("#error")
        assert hook_error(page)[1] == "unauthorized"
        page.close()
        page = open_page(context, f"{secured.url}/server.html?token=s3cret")
        start(page, steps=1, delay=0)
        wait_for(page, "document.body.dataset.runStatus === 'completed'", 20)
        assert page.is_hidden("#error")
    finally:
        secured.stop()


def test_an_open_page_survives_a_server_crash_and_restart(site: Path, tmp_path: Path, contexts: Contexts) -> None:
    contexts.allow_failed_loads = True  # requests while the server is down
    proc = start_server(tmp_path, jobs="stepstone.demo", site=site)
    try:
        page = open_page(contexts.new(), f"{proc.url}/server.html")
        run_id = start(page, steps=5, delay=0.6)
        wait_for(page, "document.querySelectorAll('#log li').length >= 2", 20)
        proc.kill()
        wait_for(page, "document.body.dataset.errorCode === 'server_unavailable'", 30)
        assert "unreachable" in page.inner_text("#error")
        error, code = hook_error(page)
        assert code == "server_unavailable" and "unreachable" in error
        wait_for(page, "document.body.dataset.connection === 'reconnecting'", 5)
        assert page.inner_text("#status").startswith("Reconnecting…")
        proc.start()
        wait_for(page, "document.body.dataset.runStatus === 'completed'", 60)
        wait_for(page, "document.getElementById('error').hidden", 15)
        assert page.inner_text("#status").startswith("Ready:") and dataset(page, "connection") == "live"
        assert dataset(page, "run") == run_id
        seqs = [seq for seq, _ in log_lines(page)]
        assert seqs == sorted(set(seqs)), "no log event shown twice"
        assert log_lines(page)[-1][1].endswith("finished step 5")
    finally:
        proc.stop()


def test_cancelling_mid_step_shows_that_step_cancelled(server: ServerProcess, contexts: Contexts) -> None:
    """The log ends ``step:start``, ``run:cancel``: the step must not stay "running…" forever."""
    page = open_page(contexts.new(), f"{server.url}/server.html")
    start(page, steps=3, delay=30)
    step = "document.querySelector('#steps li[data-name=\"step-1\"]')"
    wait_for(page, f"{step}?.className === 'running'", 15)
    page.click("#cancel")
    wait_for(page, "document.body.dataset.runStatus === 'cancelled'", 15)
    wait_for(page, f"{step}.className === 'cancelled'", 5)
    assert page.inner_text("#steps li[data-name='step-1'] small").startswith("cancelled in ")
    assert page.eval_on_selector_all("#steps li.running", "els => els.length") == 0


def test_an_open_page_follows_its_run_through_a_graceful_restart(
    site: Path, tmp_path: Path, contexts: Contexts
) -> None:
    """SIGTERM the server mid-run (it hands the run back), restart it on the same port and SQLite
    file: the page says it is reconnecting, then follows the run to its end (no freeze at 3 / 12)."""
    contexts.allow_failed_loads = True  # the 503s while it stops, refused requests while it is down
    # the timings of `python3 build.py serve` (the test servers' short leases hide the freeze)
    proc = ServeProcess(tmp_path / "demo.db", jobs="stepstone.demo", site=site, log=tmp_path / "serve.log").start()
    try:
        page = open_page(contexts.new(route_guard=False), f"{proc.url}/server.html")
        run_id = start(page, steps=12, delay=1)
        wait_for(page, "document.querySelectorAll('#log li').length >= 3", 30)
        proc.terminate()
        wait_for(page, "document.body.dataset.connection === 'reconnecting'", 30)
        proc.start()
        wait_for(page, "document.body.dataset.runStatus === 'completed'", 40)  # 9 steps of 1 s are left
        wait_for(page, "document.body.dataset.connection === 'live'", 15)
        assert dataset(page, "run") == run_id and page.is_hidden("#error")
        assert [text.split(": ", 1)[1] for _, text in log_lines(page)] == [f"finished step {i}" for i in range(1, 13)]
    finally:
        proc.stop()


def test_a_sleeping_then_waiting_run_shows_its_wait_and_is_approved_from_the_page(
    server: ServerProcess, contexts: Contexts
) -> None:
    """demo-approval: the page shows the sleep with a countdown (not a frozen bar), then the wait
    for the event with Approve / Reject; Approve sends it and the run finishes."""
    page = open_page(contexts.new(), f"{server.url}/server.html?job=demo-approval")
    assert dataset(page, "job") == "demo-approval" and page.input_value("#job-select") == "demo-approval"
    assert page.is_hidden("#steps-input") and page.is_visible("#sleep-input")
    page.fill("#delay-input", "0")
    page.fill("#sleep-input", "2")
    page.fill("#timeout-input", "600")
    page.click("#start")
    wait_for(page, "document.body.dataset.runWait === 'sleep'", 20)
    assert dataset(page, "runStatus") == "suspended"
    assert re.fullmatch(r"Sleeping until \d\d:\d\d:\d\d: wakes (in \d s|due now)\.", page.inner_text("#run-wait p"))
    assert page.get_attribute("#steps li[data-name='cool-down']", "class") == "waiting"
    assert page.is_visible("#cancel"), "a suspended run can be cancelled"
    wait_for(page, "document.body.dataset.runWait === 'event'", 20)
    assert re.fullmatch(r"Waiting for the event approval until \d\d:\d\d:\d\d \(gives up in \d+ min \d\d s\)\.",
                        page.inner_text("#run-wait p"))
    assert page.get_attribute("#steps li[data-name='cool-down']", "class") == "completed"
    page.click("#approve")
    wait_for(page, "document.body.dataset.runStatus === 'completed'", 20)
    assert json.loads(page.inner_text("#output")) == {"approved": True, "by": "server.html"}
    assert page.is_hidden("#run-wait") and dataset(page, "runWait") == ""
    assert [text.split(": ", 1)[1] for _, text in log_lines(page)][-1] == "approved by server.html"
    page.select_option("#job-select", "demo-steps")  # another job: the page for it
    wait_for(page, "document.body.dataset.state === 'ready' && document.body.dataset.job === 'demo-steps'", 90)
    assert page.is_visible("#steps-input") and page.is_hidden("#sleep-input")


# -- dashboard.html --------------------------------------------------------------------------------
def row_status(run_id: str) -> str:
    return f"document.querySelector('tr[data-run-id={json.dumps(run_id)}]')?.dataset.status"


def test_dashboard_retry_cancel_delete_update_live(server: ServerProcess, contexts: Contexts) -> None:
    page = open_page(contexts.new(), f"{server.url}/dashboard.html")
    flaky = api(server, "POST", "/trigger", {"jobName": "demo-flaky", "input": {"steps": 3, "failAt": 2, "delay": 0.1}})
    flaky_id = flaky["runId"]
    wait_for(page, f"{row_status(flaky_id)} === 'failed'", 20)
    page.click(f"tr[data-run-id='{flaky_id}'] button[data-action=details]")
    wait_for(page, "document.body.dataset.detailStatus === 'failed'", 15)
    assert "step 2 failed on attempt 1" in page.inner_text("#detail-log")

    page.click(f"tr[data-run-id='{flaky_id}'] button[data-action=retry]")
    wait_for(page, f"{row_status(flaky_id)} === 'completed'", 20)
    wait_for(page, "document.body.dataset.detailStatus === 'completed'", 15)
    wait_for(page, "document.querySelectorAll('#detail-steps tr[data-status=completed]').length === 3", 15)
    assert "finished step 3" in page.inner_text("#detail-log")

    long = api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 50, "delay": 1}})["runId"]
    wait_for(page, f"{row_status(long)} === 'running'", 20)
    page.click(f"tr[data-run-id='{long}'] button[data-action=cancel]")
    wait_for(page, f"{row_status(long)} === 'cancelled'", 20)
    assert api(server, "GET", f"/run?runId={long}")["status"] == "cancelled"

    for run_id in (flaky_id, long):
        delete_run(page, run_id)
    assert page.is_hidden("#error") and dataset(page, "detail") == ""


def delete_run(page: Any, run_id: str) -> None:
    """Delete, confirm in the row, and wait until the row is gone."""
    row = f"tr[data-run-id='{run_id}']"
    page.click(f"{row} button[data-action=delete]")
    page.click(f"{row} button[data-action=confirm-delete]")
    wait_for(page, f"!document.querySelector('tr[data-run-id={json.dumps(run_id)}]')", 20)


def test_dashboard_pages_filters_and_shows_new_runs(server: ServerProcess, contexts: Contexts) -> None:
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?page_size=3")
    before = int(dataset(page, "total"))
    ids = [api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 1, "delay": 0}})["runId"]
           for _ in range(4)]
    total = before + 4
    wait_for(page, f"document.body.dataset.total === '{total}'", 20)
    wait_for(page, f"{row_status(ids[-1])} === 'completed'", 20)  # newest first, live
    pages = -(-total // 3)
    assert page.inner_text("#page-info") == f"1 to 3 of {total} runs · page 1 of {pages}"
    page.click("#next")
    wait_for(page, "document.body.dataset.page === '1' && !document.body.dataset.loading", 15)
    assert page.inner_text("#page-info").startswith(f"4 to {min(6, total)} of {total} runs")
    page.select_option("#status-filter", "failed")
    wait_for(page, "document.body.dataset.page === '0' && !document.body.dataset.loading", 15)
    failed = api(server, "GET", "/runs?status=failed&limit=0")["total"]
    assert dataset(page, "total") == str(failed)
    page.select_option("#status-filter", "")
    page.select_option("#job-filter", "demo-steps")
    wait_for(page, "!document.body.dataset.loading", 15)
    assert dataset(page, "total") == str(api(server, "GET", "/runs?jobName=demo-steps&limit=0")["total"])
    assert all(cell == "demo-steps" for cell in page.eval_on_selector_all(
        "#runs tr td:nth-child(2)", "cells => cells.map(c => c.innerText)"))


def test_dashboard_delete_asks_first(server: ServerProcess, contexts: Contexts) -> None:
    run_id = api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 1, "delay": 0}})["runId"]
    page = open_page(contexts.new(), f"{server.url}/dashboard.html")
    row = f"tr[data-run-id='{run_id}']"
    wait_for(page, f"{row_status(run_id)} === 'completed'", 20)
    page.click(f"{row} button[data-action=delete]")
    wait_for(page, f"!!document.querySelector(\"{row} button[data-action=confirm-delete]\")", 5)
    assert "Delete this run?" in page.inner_text(row)
    assert api(server, "GET", f"/run?runId={run_id}")["id"] == run_id, "nothing is deleted before the answer"
    page.click(f"{row} button[data-action=keep]")
    wait_for(page, f"!!document.querySelector(\"{row} button[data-action=details]\")", 5)
    assert api(server, "GET", f"/run?runId={run_id}")["id"] == run_id
    delete_run(page, run_id)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        api(server, "GET", f"/run?runId={run_id}")
    assert page.is_hidden("#error")


def test_dashboard_bad_url_parameters_are_named_and_ignored(server: ServerProcess, contexts: Contexts) -> None:
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?page_size=abc&status=done&page=0&job=nope")
    notice = page.inner_text("#notice")
    assert "page_size must be a whole number from 1 to 100, not 'abc': showing 10 runs per page" in notice
    assert "status must be one of pending, running, suspended, completed, failed, cancelled, not 'done'" in notice
    assert "page must be a whole number from 1 to 1000000, not '0'" in notice
    assert "no job named 'nope' on this server (demo-approval, demo-flaky, demo-steps, demo-stream)" in notice
    assert "Traceback" not in page.inner_text("body") and page.is_hidden("#error")
    assert page.inner_text("#status").startswith("Live:")


def test_dashboard_keeps_filters_page_and_selection_in_the_url(server: ServerProcess, contexts: Contexts) -> None:
    ids = [api(server, "POST", "/trigger", {"jobName": "demo-steps", "input": {"steps": 1, "delay": 0}})["runId"]
           for _ in range(3)]
    for run_id in ids:
        wait_status_api(server, run_id, "completed")
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?page_size=2")
    page.select_option("#job-filter", "demo-steps")
    page.select_option("#status-filter", "completed")
    wait_for(page, "!document.body.dataset.loading && document.body.dataset.page === '0'", 15)
    page.click("#next")
    wait_for(page, "document.body.dataset.page === '1' && !document.body.dataset.loading", 15)
    chosen = page.get_attribute("#runs tr:first-child", "data-run-id")
    page.click("#runs tr:first-child button[data-action=details]")
    wait_for(page, f"document.body.dataset.detail === {json.dumps(chosen)}", 10)
    assert page.evaluate("location.search") == (
        f"?page_size=2&job=demo-steps&status=completed&page=2&run={chosen}"
    )
    page.reload()
    wait_for(page, "document.body.dataset.state === 'ready'", 90)
    wait_for(page, f"document.body.dataset.detail === {json.dumps(chosen)}", 10)
    assert page.input_value("#job-filter") == "demo-steps" and page.input_value("#status-filter") == "completed"
    assert dataset(page, "page") == "1"
    wait_for(page, "document.body.dataset.detailStatus === 'completed'", 10)


def test_dashboard_says_when_no_run_matches(server: ServerProcess, contexts: Contexts) -> None:
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?job=demo-stream&status=running")
    wait_for(page, "!document.getElementById('empty').hidden", 15)
    assert page.inner_text("#empty") == "No runs match (job demo-stream, status running)."
    page.select_option("#status-filter", "")
    page.select_option("#job-filter", "demo-steps")
    wait_for(page, "document.getElementById('empty').hidden", 15)


def test_dashboard_detail_shows_the_whole_run(server: ServerProcess, contexts: Contexts) -> None:
    body = {"jobName": "demo-steps", "input": {"steps": 2, "delay": 0}, "labels": {"team": "ui"}}
    run_id = api(server, "POST", "/trigger", body)["runId"]
    wait_status_api(server, run_id, "completed")
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?run={run_id}")
    wait_for(page, "document.body.dataset.detailStatus === 'completed'", 15)
    wait_for(page, "document.querySelectorAll('#detail-steps tr').length === 2", 10)
    facts = dict(zip(page.eval_on_selector_all("#detail-facts dt", "els => els.map(e => e.innerText)"),
                     page.eval_on_selector_all("#detail-facts dd", "els => els.map(e => e.innerText)"), strict=True))
    assert facts["Job"] == "demo-steps (version 1)" and facts["Attempt"] == "1" and facts["Labels"] == "team=ui"
    assert json.loads(facts["Input"]) == {"steps": 2, "delay": 0} and json.loads(facts["Output"]) == {"steps": 2}
    date = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert all(re.match(date, facts[name]) for name in ("Created", "Started", "Finished")), facts
    steps = page.eval_on_selector_all("#detail-steps tr", "rows => rows.map(r => r.innerText.split('\\t'))")
    assert [row[:3] for row in steps] == [["1", "step-1", "completed"], ["2", "step-2", "completed"]]
    wait_for(page, "document.querySelector('#detail-steps tr td:last-child').innerText !== ''", 10)
    assert json.loads(page.inner_text("#detail-steps tr:first-child td:last-child")) == {"step": 1}
    created = page.inner_text(f"tr[data-run-id='{run_id}'] td:nth-child(5)")
    assert re.match(date, created), f"the Created column has a date: {created!r}"


def test_dashboard_status_says_reconnecting_while_the_server_is_down(
    site: Path, tmp_path: Path, contexts: Contexts
) -> None:
    contexts.allow_failed_loads = True  # requests while the server is down
    proc = start_server(tmp_path, jobs="stepstone.demo", site=site)
    try:
        page = open_page(contexts.new(), f"{proc.url}/dashboard.html")
        assert page.inner_text("#status").startswith("Live:") and dataset(page, "feed") == "live"
        proc.kill()
        wait_for(page, "document.body.dataset.feed === 'reconnecting'", 30)
        assert page.inner_text("#status").startswith("Reconnecting…")
        proc.start()
        wait_for(page, "document.body.dataset.feed === 'live'", 30)
        assert page.inner_text("#status").startswith("Live:") and page.is_hidden("#error")
    finally:
        proc.stop()


def wait_status_api(server: ServerProcess, run_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while api(server, "GET", f"/run?runId={run_id}")["status"] != status:
        assert time.monotonic() < deadline, f"run {run_id} is not {status} after {timeout} s"
        time.sleep(0.05)
