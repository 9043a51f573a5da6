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
import shutil
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server

from .harness import ROOT, collect_page_errors, ensure_site, guard_offline, run_py, wait_for

pytestmark = pytest.mark.browser

#: Chromium reports every failed fetch on the console; tests that cause them on purpose allow these.
EXPECTED_FAILURES = ("Failed to load resource", "net::ERR_")


def private_site(dest: Path) -> Path:
    """dist/site's vendored runtimes (hard links), this tree's web/ pages, src/stepstone as the wheel."""
    base = ensure_site()
    site = dest / "site"
    shutil.copytree(base, site, copy_function=os.link)
    for page in (ROOT / "web").iterdir():
        if page.is_file():
            (site / page.name).unlink(missing_ok=True)
            shutil.copy2(page, site / page.name)
    wheels = list((site / "wheels").glob("stepstone-*.whl"))
    assert wheels, f"no stepstone wheel in {base / 'wheels'}"
    for wheel in wheels:  # pyscript.json unpacks this archive into site-packages
        wheel.unlink()
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted((ROOT / "src" / "stepstone").rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(ROOT / "src").as_posix())
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

    def new(self) -> Any:
        context = self.browser.new_context()
        self.opened.append((context, guard_offline(context), collect_page_errors(context)))
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
    assert "steps must be between 1 and 1000" in page.inner_text("#input-error")
    assert hook_error(page)[1] == "invalid_input"


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
        proc.start()
        wait_for(page, "document.body.dataset.runStatus === 'completed'", 60)
        wait_for(page, "document.getElementById('error').hidden", 15)
        assert dataset(page, "run") == run_id
        seqs = [seq for seq, _ in log_lines(page)]
        assert seqs == sorted(set(seqs)), "no log event shown twice"
        assert log_lines(page)[-1][1].endswith("finished step 5")
    finally:
        proc.stop()


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
        page.click(f"tr[data-run-id='{run_id}'] button[data-action=delete]")
        wait_for(page, f"!document.querySelector('tr[data-run-id={json.dumps(run_id)}]')", 20)
    assert page.is_hidden("#error") and dataset(page, "detail") == ""


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
