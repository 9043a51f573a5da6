"""Suspension on IndexedDB in Chromium, engine and all: a durable sleep outlives the tab that
started it (a tab opened after the wake time finishes the run without running the step before the
sleep again), an event sent from one tab wakes a run waiting for it in another, and child runs,
cancellation of a sleeping run and step retries work as on memory and SQLite."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from .harness import boot_pyodide, run_py

pytestmark = pytest.mark.browser

NAP = 3.0  # seconds: the sleep the first tab must not outlive

ENGINE = """
import asyncio, json, uuid
import stepstone

TAB = uuid.uuid4().hex[:8]


async def napper(step, payload):
    def before():
        step.log.info("before", tab=TAB)
        return {{"tab": TAB}}

    await step.run("before", before)
    await step.sleep("nap", payload["seconds"])
    after = await step.run("after", lambda: {{"tab": TAB}})
    return {{"after": after["tab"]}}


async def waiter(step, payload):
    def ask():
        step.log.info("ask", tab=TAB)
        return {{"tab": TAB}}

    await step.run("ask", ask)
    data = await step.wait_for_event("approval", timeout=120)
    return {{"by": data["by"], "tab": TAB}}


ENGINE = stepstone.create_engine("indexeddb://{db}", worker={worker})
ENGINE.register(stepstone.define_job("napper", napper))
ENGINE.register(stepstone.define_job("waiter", waiter))
await ENGINE.init()
json.dumps(TAB)
"""

TRIGGER = """
import json
_run = await ENGINE.trigger({job!r}, {payload!r})
json.dumps(_run.id)
"""

STATE = """
import json
_run = await ENGINE.get_run({run_id!r})
json.dumps({{"status": _run.status, "wake_at": _run.wake_at, "wait": _run.wait and _run.wait.to_json()}})
"""

REPORT = """
import json
_run = await ENGINE.get_run({run_id!r})
_events = await ENGINE.store.read_events({run_id!r}, 0, 100000)
_steps = await ENGINE.store.get_steps({run_id!r})
json.dumps({{
    "status": _run.status, "output": _run.output, "finished_at": _run.finished_at,
    "events": [[e.seq, e.type, dict(e.data)] for e in _events],
    "steps": [[s.name, s.status, s.output] for s in _steps],
}})
"""

SEND = """
import json, time
await ENGINE.send_event({run_id!r}, "approval", {{"by": "the other tab"}})
json.dumps(time.time())
"""


def open_engine(context: Any, site_url: str, db: str, worker: bool = True) -> tuple[Any, str]:
    """A new tab with Pyodide and an engine on ``indexeddb://db``; returns (page, tab id)."""
    page = context.new_page()
    boot_pyodide(page, site_url)
    tab: str = run_py(page, ENGINE.format(db=db, worker=worker), timeout=60)
    return page, tab


def wait_state(page: Any, run_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = run_py(page, STATE.format(run_id=run_id))
        if state["status"] == status:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {state['status']}, not {status}, after {timeout} s")
        time.sleep(0.1)


def wait_report(page: Any, run_id: str, timeout: float = 30) -> dict[str, Any]:
    wait_state(page, run_id, "completed", timeout)
    report: dict[str, Any] = run_py(page, REPORT.format(run_id=run_id))
    return report


def body_tabs(events: list[Any], step: str) -> list[str]:
    """The tab of each execution of ``step``'s body (its body logs one line per execution)."""
    return [d["data"]["tab"] for _, kind, d in events if kind == "log:write" and d.get("step") == step]


def test_a_sleep_outlives_its_tab_and_ends_in_a_tab_opened_after_it(context: Any, site_url: str) -> None:
    db = f"nap-{uuid.uuid4().hex[:10]}"
    first, old_tab = open_engine(context, site_url, db)
    run_id = run_py(first, TRIGGER.format(job="napper", payload={"seconds": NAP}))
    parked = wait_state(first, run_id, "suspended")
    assert parked["wait"]["reason"] == "sleep" and parked["wake_at"] is not None
    first.close()  # nothing of this stepstone runs any more: the run sleeps in IndexedDB alone
    left = parked["wake_at"] - time.time()
    assert left > 0, "the first tab was closed only after the run should have woken; make NAP longer"
    time.sleep(left + 0.2)

    second, new_tab = open_engine(context, site_url, db)
    got = wait_report(second, run_id)
    assert got["output"] == {"after": new_tab} and new_tab != old_tab
    assert got["finished_at"] >= parked["wake_at"], "not a moment early"
    events = got["events"]
    assert [e[0] for e in events] == list(range(len(events))), "the event log has a gap or a duplicate seq"
    kinds = Counter(e[1] for e in events)
    assert kinds["run:start"] == 1 and kinds["run:suspend"] == 1 and kinds["run:resume"] == 1
    assert kinds["run:complete"] == 1 and events[-1][1] == "run:complete"
    assert body_tabs(events, "before") == [old_tab], "the step before the sleep ran once, in the first tab"
    assert [(name, status) for name, status, _ in got["steps"]] == [
        ("before", "completed"),
        ("nap", "completed"),
        ("after", "completed"),
    ]
    assert got["steps"][0][2] == {"tab": old_tab} and got["steps"][2][2] == {"tab": new_tab}


def test_an_event_sent_from_another_tab_wakes_the_waiting_run(context: Any, site_url: str) -> None:
    db = f"event-{uuid.uuid4().hex[:10]}"
    waiting, tab = open_engine(context, site_url, db)
    run_id = run_py(waiting, TRIGGER.format(job="waiter", payload={}))
    parked = wait_state(waiting, run_id, "suspended")
    assert parked["wait"]["events"] == ["approval"]
    # The sender runs no worker: only the waiting tab can execute the run, so it must notice.
    sender, _ = open_engine(context, site_url, db, worker=False)
    assert wait_state(sender, run_id, "suspended")["status"] == "suspended"
    sent_at = run_py(sender, SEND.format(run_id=run_id))
    got = wait_report(waiting, run_id, timeout=20)
    assert got["output"] == {"by": "the other tab", "tab": tab}
    assert got["finished_at"] - sent_at < 5, "woken by the event, within a few polls"
    kinds = Counter(e[1] for e in got["events"])
    assert kinds["run:start"] == 1 and kinds["run:resume"] == 1 and kinds["run:complete"] == 1
    assert body_tabs(got["events"], "ask") == [tab], "the step before the wait ran once"
    steps = {name: (status, output) for name, status, output in got["steps"]}
    assert [status for status, _ in steps.values()] == ["completed", "completed"], steps
    assert any(output == {"event": "approval", "data": {"by": "the other tab"}} for _, output in steps.values())


WORKFLOWS = """
import asyncio, json, time
import stepstone


async def child(step, payload):
    await step.sleep("nap", payload["t"])
    if payload.get("fail"):
        raise ValueError("child failed")
    return payload["t"]


async def parent(step, payload):
    return list(await asyncio.gather(step.invoke("a", "child", {"t": 0.3}), step.invoke("b", "child", {"t": 0.6})))


async def careless(step, payload):
    try:
        await step.invoke("a", "child", {"t": 0.2, "fail": True})
    except stepstone.ChildRunFailed:
        return "caught"


async def sleeper(step, payload):
    try:
        await step.sleep("long", 3600)
    except stepstone.RunCancelled:
        await step.run("cleanup", lambda: "cleaned")
        raise


def call(ok_after):
    if time.time() < ok_after:
        raise ValueError("not yet")
    return "ok"


async def flaky(step, payload):
    return await step.run("call", lambda: call(payload["ok_after"]), retries=5, backoff=0.3)


_jobs = {"child": child, "parent": parent, "careless": careless, "sleeper": sleeper, "flaky": flaky}
for _name, _fn in _jobs.items():
    ENGINE.register(stepstone.define_job(_name, _fn))
_out = {}
_run = await ENGINE.trigger("parent")
_out["parent"] = (await ENGINE.wait(_run.id, timeout=20)).output
_out["children"] = sorted(r.status for r in await ENGINE.get_runs(parent_id=_run.id))
_run = await ENGINE.trigger("careless")
_out["careless"] = (await ENGINE.wait(_run.id, timeout=20)).output
_run = await ENGINE.trigger("sleeper")
while (await ENGINE.get_run(_run.id)).status != "suspended":
    await asyncio.sleep(0.05)
await ENGINE.cancel(_run.id)
_done = await ENGINE.wait(_run.id, timeout=20)
_out["cancelled"] = [_done.status, [s.name for s in await ENGINE.get_steps(_run.id)]]
_run = await ENGINE.trigger("flaky", {"ok_after": time.time() + 0.4})
_done = await ENGINE.wait(_run.id, timeout=20)
_out["flaky"] = [_done.output, [(s.name, s.status, s.attempt > 1) for s in await ENGINE.get_steps(_run.id)]]
json.dumps(_out)
"""


def test_children_cancellation_and_step_retries_on_indexeddb(context: Any, site_url: str) -> None:
    page, _ = open_engine(context, site_url, f"flows-{uuid.uuid4().hex[:10]}")
    got = run_py(page, WORKFLOWS, timeout=90)
    assert got["parent"] == [0.3, 0.6] and got["children"] == ["completed", "completed"]
    assert got["careless"] == "caught", "a failed child wakes its parent with ChildRunFailed"
    assert got["cancelled"] == ["cancelled", ["long", "cleanup"]], "a sleeping run is woken to clean up"
    assert got["flaky"] == ["ok", [["call", "completed", True]]], "a step retried after a durable backoff"
