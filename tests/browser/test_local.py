"""Local mode (web/local.html) in Chromium: a run survives its tab (close, reload, browser restart)
and resumes at its first unfinished step; two tabs never execute one run at once; bad input and
storage failures show a clear message on the page."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .harness import LAUNCH, boot_pyodide, run_py, wait_for

pytestmark = pytest.mark.browser

STEPS = 10
SECONDS = 0.6  # per step: long enough that a close right after step 3 lands inside step 4


def fresh_db() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def open_local(context: Any, base: str, db: str, expect: str = "ready") -> Any:
    """Open local.html on database ``db`` and wait until it is ready (or shows an error)."""
    page = context.new_page()
    page.goto(f"{base}/local.html?db={db}")
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 90)
    if state != expect:
        raise AssertionError(f"page state {state!r}, expected {expect!r}; error box: {page.inner_text('#error')!r}")
    return page


def start_demo(page: Any, steps: int = STEPS, seconds: float = SECONDS) -> str:
    page.fill("#steps-input", str(steps))
    page.fill("#seconds-input", str(seconds))
    page.click("#start")
    run_id: str = wait_for(page, "document.body.dataset.run", 10)
    return run_id


def wait_step_done(page: Any, index: int, timeout: float = 30) -> None:
    """Wait until the page shows step ``index`` completed (its commit is in IndexedDB by then)."""
    item = f"document.querySelector('#steps li[data-name=\"step-{index}\"]')"
    wait_for(page, f"{item}?.className === 'completed'", timeout)


def wait_steps_recorded(page: Any, run_id: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` steps of the run are recorded completed (whichever tab runs it)."""
    code = f"""
import __main__, json
json.dumps(sum(s.status == "completed" for s in await __main__.ENGINE.store.get_steps({run_id!r})))
"""
    deadline = time.monotonic() + timeout
    while run_py(page, code) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not record {count} steps within {timeout} s")
        time.sleep(0.05)


def report(page: Any, run_id: str) -> dict[str, Any]:
    """The run as this page's engine reads it back from IndexedDB."""
    code = f"""
import __main__, json
_e = __main__.ENGINE
_run = await _e.get_run({run_id!r})
_events = await _e.store.read_events({run_id!r}, 0, 100000)
_steps = await _e.store.get_steps({run_id!r})
json.dumps({{
    "status": _run.status, "output": _run.output, "tab": __main__.TAB,
    "events": [[e.seq, e.type, dict(e.data), e.at] for e in _events],
    "steps": [[s.name, s.status, s.output] for s in _steps],
}})
"""
    result: dict[str, Any] = run_py(page, code)
    return result


def wait_finished(page: Any, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = report(page, run_id)
        if got["status"] in ("completed", "failed", "cancelled"):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {got['status']} after {timeout} s")
        time.sleep(0.2)


def step_log_tabs(events: list[Any]) -> dict[int, list[str]]:
    """Which tab wrote each step's "done" log line (a body that ran writes one per execution)."""
    tabs: dict[int, list[str]] = {}
    for _seq, kind, data, _at in events:
        inner = data.get("data") or {}
        if kind == "log:write" and "index" in inner:
            tabs.setdefault(inner["index"], []).append(inner["tab"])
    return tabs


def assert_resumed_at_step_4(got: dict[str, Any], old_tab: str, new_tab: str) -> None:
    assert got["status"] == "completed", got["status"]
    assert old_tab != new_tab
    events = got["events"]
    assert [e[0] for e in events] == list(range(len(events))), "the event log has a gap or a duplicate seq"
    kinds = Counter(e[1] for e in events)
    assert kinds["run:start"] == 2, "one execution before the close, one after"
    assert kinds["run:complete"] == 1 and events[-1][1] == "run:complete"
    completes = [e[2]["name"] for e in events if e[1] == "step:complete"]
    assert completes == [f"step-{i}" for i in range(1, STEPS + 1)], "each step completed once, in order"
    starts = Counter(e[2]["name"] for e in events if e[1] == "step:start")
    assert all(starts[f"step-{i}"] == 1 for i in (1, 2, 3)), f"steps 1-3 started again: {starts}"
    tabs = step_log_tabs(events)
    assert {i: tabs[i] for i in (1, 2, 3)} == {1: [old_tab], 2: [old_tab], 3: [old_tab]}, "steps 1-3 ran once"
    assert all(tabs[i] == [new_tab] for i in range(4, STEPS + 1)), f"steps 4-10 ran in the new tab once: {tabs}"
    recorded = {name: output["tab"] for name, status, output in got["steps"] if status == "completed"}
    assert recorded == {f"step-{i}": old_tab if i <= 3 else new_tab for i in range(1, STEPS + 1)}
    assert got["output"] == {"steps": STEPS, "finished_in_tab": new_tab}


def test_closed_tab_run_resumes_at_step_4_in_a_new_page(context: Any, site_url: str) -> None:
    db = fresh_db()
    page = open_local(context, site_url, db)
    old_tab = page.evaluate("document.body.dataset.tab")
    run_id = start_demo(page)
    wait_step_done(page, 3)
    page.close()
    page = open_local(context, site_url, db)
    assert page.evaluate("document.body.dataset.run") == run_id, "the reopened page shows the unfinished run"
    got = wait_finished(page, run_id)
    assert_resumed_at_step_4(got, old_tab, got["tab"])
    wait_for(page, "document.body.dataset.runStatus === 'completed'", 10)
    items = page.eval_on_selector_all("#steps li", "els => els.map(e => e.className)")
    assert items == ["completed"] * STEPS, "the page shows every step done"


def test_reloaded_tab_run_resumes_at_step_4(context: Any, site_url: str) -> None:
    db = fresh_db()
    page = open_local(context, site_url, db)
    old_tab = page.evaluate("document.body.dataset.tab")
    run_id = start_demo(page)
    wait_step_done(page, 3)
    page.reload()
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 90)
    assert state == "ready", page.inner_text("#error")
    got = wait_finished(page, run_id)
    assert_resumed_at_step_4(got, old_tab, got["tab"])


def test_run_resumes_after_a_full_browser_restart(
    playwright: Any, site_url: str, tmp_path: Path, new_guarded_context: Any
) -> None:
    profile = tmp_path / "profile"
    db = fresh_db()
    first = new_guarded_context(playwright.chromium.launch_persistent_context(str(profile), **LAUNCH))
    page = open_local(first, site_url, db)
    old_tab = page.evaluate("document.body.dataset.tab")
    run_id = start_demo(page)
    wait_step_done(page, 3)
    first.close()  # the whole browser goes away with its profile on disk
    second = new_guarded_context(playwright.chromium.launch_persistent_context(str(profile), **LAUNCH))
    page = open_local(second, site_url, db)
    got = wait_finished(page, run_id)
    assert_resumed_at_step_4(got, old_tab, got["tab"])
    second.close()


TRIGGER = """
import __main__, json
_runs = [await __main__.DEMO.trigger({{"steps": {steps}, "seconds": {seconds}}}) for _ in range({count})]
json.dumps([r.id for r in _runs])
"""


def test_two_tabs_share_runs_and_execute_each_once(context: Any, site_url: str) -> None:
    db = fresh_db()
    a = open_local(context, site_url, db)
    b = open_local(context, site_url, db)
    tabs = {a.evaluate("document.body.dataset.tab"), b.evaluate("document.body.dataset.tab")}
    run_ids = run_py(a, TRIGGER.format(steps=3, seconds=0.5, count=6))
    executed_by: dict[str, str] = {}
    for run_id in run_ids:
        got = wait_finished(b, run_id)
        assert got["status"] == "completed"
        events = got["events"]
        assert [e[0] for e in events] == list(range(len(events)))
        kinds = Counter(e[1] for e in events)
        assert kinds["run:start"] == 1, f"run {run_id} was started {kinds['run:start']} times"
        step_tabs = step_log_tabs(events)
        assert sorted(step_tabs) == [1, 2, 3] and all(len(t) == 1 for t in step_tabs.values()), step_tabs
        owners = {t[0] for t in step_tabs.values()}
        assert len(owners) == 1, f"run {run_id} was executed by several tabs: {step_tabs}"
        executed_by[run_id] = owners.pop()
    assert set(executed_by.values()) == tabs, f"both tabs took part (each engine runs at most 4): {executed_by}"


WAIT_IN_OTHER_TAB = """
import asyncio, json, time
from stepstone.stores.indexeddb import IndexedDBStore
_store = IndexedDBStore({db!r})
await _store.init()
_changes = await _store.run_changes(0, 100000)
_version = _changes[-1].version if _changes else 0

async def _timed(coro):
    t0 = time.monotonic()
    await coro
    return time.monotonic() - t0

async def _both():
    # Nothing in this page writes: only the other tab's BroadcastChannel message can wake these.
    changes = await _timed(_store.wait_run_changes(_version, 20))
    run = await _store.get_run((await _store.run_changes(_version, 1))[0].run_id)
    events = await _timed(_store.wait_events(run.id, run.last_seq, 20))
    return {{"changes": changes, "events": events}}

_waiting = asyncio.ensure_future(_both())
json.dumps(True)
"""


def test_another_tabs_writes_wake_this_tabs_waiters(context: Any, site_url: str) -> None:
    """A page with no engine waits on the store; the run is written by the other tab only."""
    db = fresh_db()
    writer = open_local(context, site_url, db)
    watcher = context.new_page()
    boot_pyodide(watcher, site_url)
    assert run_py(watcher, WAIT_IN_OTHER_TAB.format(db=db)) is True
    start_demo(writer, steps=2, seconds=0.5)
    waited = run_py(watcher, "import json\njson.dumps(await _waiting)", timeout=30)
    assert waited["changes"] < 5 and waited["events"] < 5, f"woke by timeout, not by the other tab: {waited}"


STALL = """
import __main__, json, time
_e = __main__.ENGINE
for _task in _e._worker._tasks:  # the claim loop and the heartbeat: as if the browser throttled
    _task.cancel()               # this tab's timers past its lease while the run keeps going
await __main__.asyncio.sleep(0)
json.dumps(await _e.store.expire_leases(_e.owner, time.time()))
"""

OWNER = "import __main__, json\njson.dumps([__main__.ENGINE.owner, (await __main__.ENGINE.get_run({run_id!r})).owner])"


def executor(pages: list[Any], run_id: str) -> tuple[Any, Any]:
    """(the page whose engine executes ``run_id``, the other page)."""
    for page in pages:
        mine, owner = run_py(page, OWNER.format(run_id=run_id))
        if mine == owner:
            return page, next(p for p in pages if p is not page)
    raise AssertionError(f"no open page executes run {run_id}")


def test_a_live_tab_keeps_its_run_when_its_lease_lapses(context: Any, site_url: str) -> None:
    """The lease lapses but the tab still holds the run's Web Lock: the other tab must not take over."""
    db = fresh_db()
    pages = [open_local(context, site_url, db), open_local(context, site_url, db)]
    [run_id] = run_py(pages[0], TRIGGER.format(steps=4, seconds=0.6, count=1))
    wait_steps_recorded(pages[0], run_id, 1)
    running, other = executor(pages, run_id)
    tab = running.evaluate("document.body.dataset.tab")
    assert run_py(running, STALL) == 1, "the run's lease is now expired"
    got = wait_finished(other, run_id)
    kinds = Counter(e[1] for e in got["events"])
    assert kinds["run:start"] == 1, "the other tab took the run over from a live tab"
    assert got["output"] == {"steps": 4, "finished_in_tab": tab}


def test_closing_a_tab_hands_its_run_to_an_open_tab_before_the_lease_lapses(context: Any, site_url: str) -> None:
    """The closed tab's Web Lock is free at once: the open tab resumes without waiting out the lease."""
    db = fresh_db()
    pages = [open_local(context, site_url, db), open_local(context, site_url, db)]
    [run_id] = run_py(pages[0], TRIGGER.format(steps=6, seconds=0.5, count=1))
    wait_steps_recorded(pages[0], run_id, 2)
    running, other = executor(pages, run_id)
    old_tab, new_tab = running.evaluate("document.body.dataset.tab"), other.evaluate("document.body.dataset.tab")
    code = f"import __main__, json\njson.dumps((await __main__.ENGINE.get_run({run_id!r})).lease_expires_at)"
    lease = run_py(other, code)
    running.close()
    got = wait_finished(other, run_id)
    starts = [e for e in got["events"] if e[1] == "run:start"]
    assert len(starts) == 2
    assert starts[1][3] < lease, "the open tab resumed the run only after the closed tab's lease ran out"
    assert got["output"] == {"steps": 6, "finished_in_tab": new_tab}
    assert step_log_tabs(got["events"])[1] == [old_tab]


def test_invalid_input_shows_a_message_and_creates_nothing(context: Any, site_url: str) -> None:
    page = open_local(context, site_url, fresh_db())
    for steps, seconds, fragment in (
        ("abc", "1", "steps must be a whole number from 1 to 50, not 'abc'"),
        ("0", "1", "steps must be a whole number from 1 to 50, not 0"),
        ("3", "-1", "seconds per step must be a number from 0 to 30, not -1"),
    ):
        page.fill("#steps-input", steps)
        page.fill("#seconds-input", seconds)
        page.click("#start")
        wait_for(page, f"document.getElementById('input-error').textContent.includes({json.dumps(fragment)})", 10)
        message = page.inner_text("#input-error")
        assert message.startswith("Invalid input:") and fragment in message, message
    count = run_py(page, "import __main__, json\njson.dumps((await __main__.ENGINE.get_runs()).total)")
    assert count == 0
    assert page.evaluate("document.body.dataset.run") is None


HOLD_OLD_CONNECTION = """(name) => new Promise((resolve, reject) => {
  // A database of this name at version 1 with nothing in it, kept open by this tab, which does
  // not close it when another tab asks to upgrade: that upgrade is blocked.
  const request = indexedDB.open(name);
  request.onsuccess = () => { window.heldDb = request.result; resolve(request.result.version); };
  request.onerror = () => reject(String(request.error));
})"""

NEWER_SCHEMA = """(name) => new Promise((resolve, reject) => {
  const request = indexedDB.open(name, 7);
  request.onupgradeneeded = () => {
    const meta = request.result.createObjectStore("meta", { keyPath: "key" });
    meta.put({ key: "schema", value: 99 });
  };
  request.onsuccess = () => { request.result.close(); resolve(true); };
  request.onerror = () => reject(String(request.error));
})"""


def test_storage_errors_show_a_clear_message(context: Any, site_url: str) -> None:
    holder = context.new_page()
    holder.goto(f"{site_url}/index.html")
    blocked_db, newer_db = fresh_db(), fresh_db()
    assert holder.evaluate(HOLD_OLD_CONNECTION, blocked_db) == 1
    assert holder.evaluate(NEWER_SCHEMA, newer_db) is True

    page = open_local(context, site_url, blocked_db, expect="error")
    message = page.inner_text("#error")
    assert message.startswith("Storage error:") and "blocked" in message and "Close the other tabs" in message, message
    assert page.is_disabled("#start")

    newer = open_local(context, site_url, newer_db, expect="error")
    message = newer.inner_text("#error")
    assert "schema version 99" in message and "newer than this stepstone" in message, message

    holder.evaluate("() => window.heldDb.close()")
    page.reload()
    state = wait_for(page, "document.body.dataset.state !== 'booting' && document.body.dataset.state", 90)
    assert state == "ready", "once the old connection is gone the page opens normally"
    assert page.is_hidden("#error")


def test_cancelling_mid_step_shows_that_step_cancelled(context: Any, site_url: str) -> None:
    """The log ends ``step:start``, ``run:cancel``: the step must not stay "running…" forever."""
    page = open_local(context, site_url, fresh_db())
    start_demo(page, steps=3, seconds=30)
    step = "document.querySelector('#steps li[data-name=\"step-1\"]')"
    wait_for(page, f"{step}?.className === 'running'", 15)
    page.click("#cancel")
    wait_for(page, "document.body.dataset.runStatus === 'cancelled'", 15)
    assert page.evaluate(f"{step}.className") == "cancelled"
    assert page.inner_text("#steps li[data-name='step-1'] small") == "cancelled"
    assert page.eval_on_selector_all("#steps li.running", "els => els.length") == 0
