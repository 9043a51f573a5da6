"""The example pages of the README (web/examples/) in Chromium, against a real ``stepstone serve`` on
127.0.0.1 (memory store, the demo jobs, the site): a click starts a run, the page shows its status,
progress and log live until it completes; a reload mid-run carries on. Local mode resumes the run in
the reloaded tab without running its finished first step again; server mode reattaches to the same
run. No request leaves 127.0.0.1 and no page logs an error (the ``context`` fixture's guard).

The site is a private copy of ``dist/site`` with this tree's ``web/`` pages and ``src/stepstone`` as
the wheel (``private_site``), so the tests never run a stale build.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import ROOT

from .conftest import Guarded
from .harness import LAUNCH, serve_site, wait_for
from .test_server_pages import private_site

pytestmark = pytest.mark.browser

STATUS = "document.getElementById('status').textContent"
LOG = "document.getElementById('log').textContent"


@pytest.fixture(scope="module")
def examples_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(str(LAUNCH["executable_path"])).exists():
        pytest.skip("Chromium is missing at /usr/bin/chromium (python build.py test installs it)")
    site = private_site(tmp_path_factory.mktemp("examples"))
    # private_site refreshes web/'s top-level files; the examples live one folder down. The copy's
    # files are hard links into dist/site: remove them (never write through them), then copy.
    shutil.rmtree(site / "examples", ignore_errors=True)
    shutil.copytree(ROOT / "web" / "examples", site / "examples")
    with serve_site(site) as base:
        yield base


def open_example(page: Any, url: str | None = None) -> str:
    """Open (or reload) an example page and wait until its Python runs; returns the status text."""
    if url is None:
        page.reload()
    else:
        page.goto(url)
    status: str = wait_for(page, f"!{STATUS}.startsWith('starting') && {STATUS}", 90)
    return status


def log_lines(page: Any) -> list[str]:
    text: str = page.evaluate(LOG)
    return text.splitlines()


def finish(page: Any, timeout: float = 60) -> str:
    """Wait (bounded) until the page says the run completed; returns the status text."""
    status: str = wait_for(page, f"{STATUS}.startsWith('completed') && {STATUS}", timeout)
    return status


def test_local_example_runs_and_resumes_after_a_reload(
    context: Any, guarded: Guarded, examples_url: str, tmp_path: Path
) -> None:
    page = context.new_page()
    assert open_example(page, f"{examples_url}/examples/local.html").startswith("idle")
    page.click("#start")
    wait_for(page, f"{LOG}.includes('resize: running')", 30)  # the run is in its second step (2 s)
    assert page.evaluate(STATUS).startswith("running"), page.evaluate(STATUS)
    assert log_lines(page) == ["fetch: running", "resize: running"]

    open_example(page)  # reload: this tab's engine dies mid-step, the reloaded one resumes the run
    status = finish(page)
    assert status == "completed 3 / 3 · save done"
    lines = log_lines(page)
    assert lines.count("fetch: running") == 1, f"the finished first step ran again: {lines}"
    assert lines.count("resize: running") == 2, f"the step cut short by the reload runs again once: {lines}"
    assert lines == ["fetch: running", "resize: running", "resize: running", "save: running"]

    page.screenshot(path=str(tmp_path / "local.png"), full_page=True)
    guarded.check()


def test_server_example_runs_and_reattaches_after_a_reload(
    context: Any, guarded: Guarded, examples_url: str, tmp_path: Path
) -> None:
    page = context.new_page()
    assert open_example(page, f"{examples_url}/examples/server.html").startswith("idle")
    page.click("#start")  # demo-steps, 10 steps of 1 s
    wait_for(page, f"{LOG}.includes('finished step 1')", 30)
    run_id = page.inner_text("#run")
    assert run_id and page.evaluate(STATUS).startswith("running")
    assert run_id in page.evaluate("Object.values(localStorage).join(' ')"), "use_job keeps the run id"

    open_example(page)  # reload: use_job finds the run again from localStorage
    wait_for(page, f"document.getElementById('run').textContent === {json.dumps(run_id)}", 30)
    status = wait_for(page, f"!{STATUS}.startsWith('idle') && {STATUS}", 30)
    assert status.startswith("running"), f"reattached to the run in flight, not after it ended: {status}"
    status = finish(page)
    assert status == "completed 10 / 10 · step 10 of 10"
    assert page.inner_text("#run") == run_id, "the page followed another run"
    assert log_lines(page) == [f"finished step {i}" for i in range(1, 11)], "every line once, in order"
    assert page.inner_text("#error") == ""
    with urllib.request.urlopen(f"{examples_url}/api/run?runId={run_id}", timeout=10) as response:
        assert json.loads(response.read())["status"] == "completed"

    page.screenshot(path=str(tmp_path / "server.png"), full_page=True)
    guarded.check()
