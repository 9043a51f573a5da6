"""Worker mode (web/worker.html) in Chromium: the engine runs in a dedicated Web Worker and the
page drives it through the hooks. A CPU-bound step leaves the page responsive (and freezes it in
local mode); a run survives its tab (steps before the close never run again, the log has no gap);
two tabs never execute one run at once; a durable sleep outlives a closed tab. On ``opfs://`` one
tab's worker holds the database and the others forward to it; on ``indexeddb://`` every tab's
worker runs an engine and Web Locks decide. Every page is guarded: no request leaves 127.0.0.1."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from .harness import run_py, wait_for

pytestmark = pytest.mark.browser

STORES = ["opfs", "indexeddb"]


def open_worker_page(context: Any, base: str, store: str, db: str) -> Any:
    page = context.new_page()
    page.goto(f"{base}/worker.html?store={store}&db={db}")
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 120)
    if state != "ready":
        raise AssertionError(f"worker.html did not start: {page.inner_text('#error')!r}")
    return page


def tab_of(page: Any) -> str:
    tab: str = page.evaluate("document.body.dataset.tab")
    return tab


TRIGGER = """
import __main__, json
_job = __main__.MODES["worker"].job
_runs = [await _job.source.trigger({job!r}, {payload!r}) for _ in range({count})]
json.dumps([r.id for r in _runs])
"""

REPORT = """
import __main__, json
_source = __main__.MODES["worker"].source
_run = await _source.get_run({run_id!r})
_events = [e async for e in _source.subscribe({run_id!r})] if _run.is_terminal else []
_steps = await _source.get_steps({run_id!r})
json.dumps({{
    "status": _run.status, "output": _run.output, "wake_at": _run.wake_at, "owner": _run.owner,
    "events": [[e.seq, e.type, dict(e.data)] for e in _events],
    "steps": [[s.name, s.status, s.output] for s in _steps],
}})
"""


def report(page: Any, run_id: str) -> dict[str, Any]:
    got: dict[str, Any] = run_py(page, REPORT.format(run_id=run_id), timeout=30)
    return got


def wait_status(page: Any, run_id: str, statuses: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = report(page, run_id)
        if got["status"] in statuses:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {got['status']}, not one of {statuses}, after {timeout} s")
        time.sleep(0.2)


def wait_steps_done(page: Any, run_id: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sum(status == "completed" for _, status, _ in report(page, run_id)["steps"]) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not record {count} steps within {timeout} s")
        time.sleep(0.05)


def step_tabs(events: list[Any]) -> dict[int, list[str]]:
    """Which tab ran each step's body (a body logs one line each time it really runs)."""
    tabs: dict[int, list[str]] = {}
    for _seq, kind, data in events:
        inner = data.get("data") or {}
        if kind == "log:write" and "index" in inner:
            tabs.setdefault(inner["index"], []).append(inner["tab"])
    return tabs


def assert_gap_free(events: list[Any]) -> None:
    assert [e[0] for e in events] == list(range(len(events))), "the event log has a gap or a duplicate seq"


# -- responsiveness ----------------------------------------------------------------------------
def test_a_cpu_bound_step_freezes_the_page_only_in_local_mode(context: Any, site_url: str) -> None:
    page = open_worker_page(context, site_url, "opfs", f"cpu-{uuid.uuid4().hex[:8]}")
    page.fill("#steps-input", "2")
    page.fill("#seconds-input", "1.5")
    page.select_option("#kind-input", "cpu")
    page.click("#start")
    wait_for(page, "document.body.dataset.runStatus === 'completed' && document.body.dataset.stallWorker", 60)
    in_worker = float(page.evaluate("document.body.dataset.stallWorker"))
    logs = page.eval_on_selector_all("#log li", "els => els.map(e => e.textContent)")
    assert any("step 2 of 2 done" in line and "(worker)" in line for line in logs), logs
    page.check("#mode-page")
    page.click("#start")
    wait_for(page, "document.body.dataset.mode === 'page' && document.body.dataset.stallPage", 60)
    in_page = float(page.evaluate("document.body.dataset.stallPage"))
    logs = page.eval_on_selector_all("#log li", "els => els.map(e => e.textContent)")
    assert any("step 2 of 2 done" in line and "(page)" in line for line in logs), logs
    # The goal (<= 50 ms) is measured by bench/browser.py; on a loaded 2-core machine frames are
    # late on their own (an idle page's longest gap reaches ~80 ms there), so the test asks for
    # "never frozen for a step": well under one step's 1.5 s in the worker, all of it in the page.
    assert in_worker < 600, f"the page stalled {in_worker:.0f} ms while a CPU-bound step ran in the worker"
    assert in_page >= 1200, f"local mode's CPU-bound step (1.5 s) stalled the page only {in_page:.0f} ms"
    assert page.inner_text("#stall-worker").endswith(" ms") and page.inner_text("#stall-page").endswith(" ms")


# -- a run survives its tab ----------------------------------------------------------------------
@pytest.mark.parametrize("store", STORES)
def test_a_run_resumes_after_its_tab_closes(context: Any, site_url: str, store: str) -> None:
    db = f"resume-{uuid.uuid4().hex[:8]}"
    first = open_worker_page(context, site_url, store, db)
    old_tab = tab_of(first)
    [run_id] = run_py(first, TRIGGER.format(job="busy-steps", payload={"steps": 8, "seconds": 0.5}, count=1))
    wait_steps_done(first, run_id, 3)
    first.close()  # the tab and its worker are gone mid-run
    second = open_worker_page(context, site_url, store, db)
    new_tab = tab_of(second)
    got = wait_status(second, run_id, ("completed", "failed", "cancelled"))
    assert got["status"] == "completed" and got["output"]["finished_in_tab"] == new_tab != old_tab
    events = got["events"]
    assert_gap_free(events)
    assert Counter(e[1] for e in events)["run:start"] == 2, "one execution before the close, one after"
    completes = [e[2]["name"] for e in events if e[1] == "step:complete"]
    assert completes == [f"step-{i}" for i in range(1, 9)], "each step completed once, in order"
    tabs = step_tabs(events)
    done_before = [i for i in range(1, 9) if tabs[i] == [old_tab]]
    assert len(done_before) >= 3 and done_before == list(range(1, len(done_before) + 1)), tabs
    assert all(tabs[i] == [new_tab] for i in range(len(done_before) + 1, 9)), f"later steps ran once, anew: {tabs}"
    recorded = {name: output["tab"] for name, status, output in got["steps"] if status == "completed"}
    assert all(recorded[f"step-{i}"] == old_tab for i in done_before), "steps before the close never re-ran"


# -- several tabs --------------------------------------------------------------------------------
def test_indexeddb_two_tabs_share_runs_and_execute_each_once(context: Any, site_url: str) -> None:
    db = f"share-{uuid.uuid4().hex[:8]}"
    a = open_worker_page(context, site_url, "indexeddb", db)
    b = open_worker_page(context, site_url, "indexeddb", db)
    assert a.evaluate("document.body.dataset.role") == b.evaluate("document.body.dataset.role") == "engine"
    run_ids = run_py(a, TRIGGER.format(job="busy-steps", payload={"steps": 3, "seconds": 0.4}, count=6))
    executed_by = {}
    for run_id in run_ids:
        got = wait_status(b, run_id, ("completed", "failed", "cancelled"))
        assert got["status"] == "completed"
        assert_gap_free(got["events"])
        assert Counter(e[1] for e in got["events"])["run:start"] == 1, f"run {run_id} started twice"
        tabs = step_tabs(got["events"])
        assert sorted(tabs) == [1, 2, 3] and all(len(t) == 1 for t in tabs.values()), tabs
        owners = {t[0] for t in tabs.values()}
        assert len(owners) == 1, f"run {run_id} was executed by several tabs: {tabs}"
        executed_by[run_id] = owners.pop()
    assert set(executed_by.values()) == {tab_of(a), tab_of(b)}, f"both tabs' workers took part: {executed_by}"


def test_opfs_one_tab_executes_the_others_forward_and_take_over_when_it_closes(context: Any, site_url: str) -> None:
    db = f"relay-{uuid.uuid4().hex[:8]}"
    holder = open_worker_page(context, site_url, "opfs", db)
    other = open_worker_page(context, site_url, "opfs", db)
    holder_tab, other_tab = tab_of(holder), tab_of(other)
    wait_for(other, f"document.body.dataset.leader === {holder_tab!r}", 10)
    assert other.evaluate("document.body.dataset.role") == "relay"
    assert f"the worker of tab {holder_tab} executes" in other.inner_text("#status")
    # runs triggered in the forwarding tab execute in the holder's worker, each once
    run_ids = run_py(other, TRIGGER.format(job="busy-steps", payload={"steps": 6, "seconds": 0.4}, count=3))
    wait_steps_done(other, run_ids[0], 2)
    holder.close()  # the holder goes: the other tab's worker takes the database over
    wait_for(other, "document.body.dataset.role === 'engine'", 30)
    for run_id in run_ids:
        got = wait_status(other, run_id, ("completed", "failed", "cancelled"))
        assert got["status"] == "completed" and got["output"]["finished_in_tab"] == other_tab
        assert_gap_free(got["events"])
        tabs = step_tabs(got["events"])
        assert all(len(t) == 1 for t in tabs.values()), f"a step ran twice: {tabs}"
        assert tabs[1] == [holder_tab], "the first steps ran in the holder's worker"
        assert {tab for ran in tabs.values() for tab in ran} <= {holder_tab, other_tab}
    # the page's hooks followed their run across the switch (they reconnect as to a restarted server)
    wait_for(other, f"{run_ids!r}.includes(document.body.dataset.run)", 5)
    wait_for(other, "document.body.dataset.runStatus === 'completed'", 10)
    assert other.is_hidden("#error")


# -- a durable sleep outlives its tab ------------------------------------------------------------
def test_a_sleeping_run_survives_a_closed_tab(context: Any, site_url: str) -> None:
    db = f"nap-{uuid.uuid4().hex[:8]}"
    first = open_worker_page(context, site_url, "opfs", db)
    old_tab = tab_of(first)
    [run_id] = run_py(first, TRIGGER.format(job="napper", payload={"seconds": 4}, count=1))
    parked = wait_status(first, run_id, ("suspended",), timeout=20)
    first.close()  # nothing of this run is in memory any more: it sleeps in OPFS alone
    left = parked["wake_at"] - time.time()
    assert left > 0, "the tab closed only after the run should have woken; make the nap longer"
    second = open_worker_page(context, site_url, "opfs", db)
    new_tab = tab_of(second)
    got = wait_status(second, run_id, ("completed", "failed", "cancelled"), timeout=60)
    assert got["status"] == "completed" and got["output"] == {"before": old_tab, "after": new_tab}
    events = got["events"]
    assert_gap_free(events)
    kinds = Counter(e[1] for e in events)
    assert kinds["run:suspend"] == 1 and kinds["run:resume"] == 1 and kinds["run:complete"] == 1
    befores = [e for e in events if e[1] == "log:write" and e[2].get("message", "").startswith("before the nap")]
    assert len(befores) == 1, "the step before the sleep ran once, in the first tab"


# -- a worker that cannot start says why ---------------------------------------------------------
NOT_STARTING = """
import json
from urllib.parse import quote
from stepstone.browser.worker import start_worker

def data_url(code):
    return "data:text/x-python," + quote(code)

_scripts = [
    "/no-such-script.py",
    data_url("import stepstone\\nengine = stepstone.create_engine('opfs://not/a/name')"),
    data_url("import stepstone\\nengine = stepstone.create_engine('memory:')"),
]
_out = []
for _script in _scripts:
    try:
        await start_worker(_script, timeout=90)
        _out.append(None)
    except Exception as exc:
        _out.append([type(exc).__name__, str(exc)])
json.dumps(_out)
"""


def test_a_worker_that_cannot_start_raises_why_in_the_page(context: Any, site_url: str) -> None:
    from .harness import boot_pyodide

    page = context.new_page()
    boot_pyodide(page, site_url)
    missing, bad_store, no_serve = run_py(page, NOT_STARTING, timeout=240)
    assert missing[0] == "EngineNotStarted" and "GET /no-such-script.py answered 404" in missing[1], missing
    assert bad_store[0] == "StoreError" and "an OPFS database name must be" in bad_store[1], bad_store
    assert no_serve[0] == "EngineNotStarted" and "without calling stepstone.browser.worker.serve" in no_serve[1]
