"""The dashboard and the workflow primitives in Chromium, against a real ``stepstone serve`` (the
demo jobs and those of tests/hooks/jobs.py, SQLite, the site) on 127.0.0.1: what a suspended run
waits for (a live countdown, the event, its children with links, its parent), the ``suspended``
filter, sending an event from the page, and the Schedules panel (pause, resume, delete).

The pages come from a private copy of ``dist/site`` with this tree's ``web/`` and ``src/stepstone``
(as test_server_pages.py does), so the tests never depend on a stale build.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server

from .harness import run_py, wait_for
from .test_server_pages import Contexts, api, contexts, dataset, open_page, site

__all__ = ["contexts", "site"]  # fixtures, imported for this module

pytestmark = pytest.mark.browser

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("server"), jobs="stepstone.demo,tests.hooks.jobs", site=site)
    yield proc
    proc.stop()


def trigger(server: ServerProcess, job: str, payload: Any) -> str:
    return str(api(server, "POST", "/trigger", {"jobName": job, "input": payload})["runId"])


def suspended(server: ServerProcess, run_id: str, reason: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api(server, "GET", f"/run?runId={run_id}")
        if run["status"] == "suspended" and (run["wait"] or {}).get("reason") == reason:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is not suspended ({reason}) after {timeout} s: {run}"
        time.sleep(0.05)


def row(run_id: str) -> str:
    return f"tr[data-run-id={json.dumps(run_id)}]"


def wait_text(page: Any, run_id: str) -> str:
    return str(page.inner_text(f"#runs {row(run_id)} small.wait"))


def select(page: Any, run_id: str) -> None:
    page.click(f"#runs {row(run_id)} button[data-action=details]")
    wait_for(page, f"document.body.dataset.detail === {json.dumps(run_id)} && document.body.dataset.detailStatus", 15)


def test_a_suspended_run_says_what_it_waits_for(server: ServerProcess, contexts: Contexts) -> None:
    napper = trigger(server, "napper", {"seconds": 3600})
    approval = trigger(server, "approval", {"timeout": 3600})
    parent = trigger(server, "await-approval", {})
    retrying = trigger(server, "flaky-step", {"fails": 1, "backoff": 3600})
    suspended(server, napper, "sleep")
    suspended(server, approval, "event")
    child = suspended(server, parent, "children")["wait"]["children"][0]
    suspended(server, child, "event")
    suspended(server, retrying, "retry")

    page = open_page(contexts.new(), f"{server.url}/dashboard.html?status=suspended&page_size=50")
    assert page.input_value("#status-filter") == "suspended"
    for run_id in (napper, approval, parent, child, retrying):
        wait_for(page, f"document.querySelector({json.dumps('#runs ' + row(run_id))})?.dataset.status === "
                       "'suspended'", 20)
    assert re.fullmatch(r"sleeps · wakes in (59|60) min \d\d s", wait_text(page, napper)), wait_text(page, napper)
    assert wait_text(page, approval) == "waits for event approval"
    assert wait_text(page, parent) == "waits for 1 child"
    assert re.fullmatch(r"retry in (59|60) min \d\d s", wait_text(page, retrying)), wait_text(page, retrying)
    statuses = page.eval_on_selector_all("#runs tr", "rows => rows.map(r => r.dataset.status)")
    assert set(statuses) == {"suspended"}, "the filter shows suspended runs only"

    # the countdown ticks in place
    before = wait_text(page, napper)
    wait_for(page, f"document.querySelector({json.dumps('#runs ' + row(napper) + ' small.wait')}).innerText "
                   f"!== {json.dumps(before)}", 10)

    select(page, napper)
    assert dataset(page, "detailWait") == "sleep"
    assert re.fullmatch(rf"Sleeping until {DATE} · wakes in (59|60) min \d\d s", page.inner_text("#detail-wait"))
    nap = page.eval_on_selector("#detail-steps tr", "r => [r.dataset.name, r.dataset.status, r.dataset.kind]")
    assert nap == ["nap", "waiting", "sleep"]
    assert re.match(rf"sleeps until {DATE} · wakes in ", page.inner_text("#detail-steps tr td:last-child"))

    select(page, retrying)
    assert dataset(page, "detailWait") == "retry"
    assert re.match(rf"Waiting to retry at {DATE} · next attempt in ", page.inner_text("#detail-wait"))
    assert "after: step call, attempt 1: RuntimeError: attempt 1 failed" in page.inner_text("#detail-wait")
    assert page.get_attribute("#detail-steps tr", "data-status") == "retrying"

    select(page, parent)
    assert dataset(page, "detailWait") == "children"
    assert page.inner_text("#detail-wait") == f"Waiting for its child run {child[-12:]}"
    wait_for(page, "document.body.dataset.children === '1'", 15)
    children = page.eval_on_selector_all("#detail-children tr", "rows => rows.map(r => r.dataset.runId)")
    assert children == [child] and page.is_visible("#children-box")
    assert "waits for event approval" in page.inner_text("#detail-children")
    assert page.inner_text("#detail-steps tr td:last-child") == f"waits for child run {child[-12:]}"

    page.click(f"#detail-children a[data-run-id={json.dumps(child)}]")  # a child's link opens it here
    wait_for(page, f"document.body.dataset.detail === {json.dumps(child)}", 15)
    wait_for(page, "document.body.dataset.detailWait === 'event'", 15)
    assert page.evaluate("location.search").endswith(f"&run={child}")
    facts = dict(zip(page.eval_on_selector_all("#detail-facts dt", "els => els.map(e => e.innerText)"),
                     page.eval_on_selector_all("#detail-facts dd", "els => els.map(e => e.innerText)"), strict=True))
    assert facts["Parent"] == f"{parent} (its step child)"
    assert page.is_hidden("#children-box") and dataset(page, "children") == "0"
    page.click(f"#detail-facts a[data-run-id={json.dumps(parent)}]")  # and the parent's link goes back
    wait_for(page, f"document.body.dataset.detail === {json.dumps(parent)}", 15)
    assert page.is_hidden("#error")

    for run_id in (napper, approval, parent, retrying):
        api(server, "POST", f"/cancel?runId={run_id}")


def test_send_an_event_from_the_dashboard(server: ServerProcess, contexts: Contexts) -> None:
    run_id = trigger(server, "approval", {})
    suspended(server, run_id, "event")
    page = open_page(contexts.new(), f"{server.url}/dashboard.html?status=suspended")
    wait_for(page, f"!!document.querySelector({json.dumps('#runs ' + row(run_id) + ' [data-action=send-event]')})", 20)
    page.click(f"#runs {row(run_id)} button[data-action=send-event]")
    wait_for(page, f"document.body.dataset.detail === {json.dumps(run_id)}", 15)
    wait_for(page, "!document.getElementById('event-box').hidden", 10)
    assert page.input_value("#event-name") == "approval" and page.input_value("#event-data") == "{}"
    assert page.evaluate("document.activeElement.id") == "event-data"
    assert "Waiting for event approval" in page.inner_text("#detail-wait")

    page.fill("#event-data", "{by: ann}")
    page.click("#event-send")
    wait_for(page, "!document.getElementById('event-error').hidden", 10)
    assert page.inner_text("#event-error").startswith("The data is not JSON: Expecting property name")
    page.fill("#event-name", "")
    page.fill("#event-data", "{}")
    page.click("#event-send")
    wait_for(page, "document.getElementById('event-error').innerText.startsWith('Give the event a name')", 10)
    assert api(server, "GET", f"/run?runId={run_id}")["status"] == "suspended", "nothing was sent"

    page.fill("#event-name", "approval")
    page.fill("#event-data", '{"by": "ann"}')
    page.click("#event-send")
    wait_for(page, "!document.getElementById('event-sent').hidden", 10)
    assert page.inner_text("#event-sent") == (
        f"Sent event approval to run {run_id}: it was waiting for it and wakes now.")
    assert page.is_hidden("#event-error")
    wait_for(page, "document.body.dataset.detailStatus === 'completed'", 20)
    wait_for(page, "document.getElementById('event-box').hidden && document.getElementById('detail-wait').hidden", 10)
    assert api(server, "GET", f"/run?runId={run_id}")["output"] == {"approved": True, "data": {"by": "ann"}}
    steps = page.eval_on_selector_all("#detail-steps tr", "rows => rows.map(r => [r.dataset.name, r.dataset.status])")
    assert steps == [["ask", "completed"], ["event:approval", "completed"]]
    assert page.is_hidden("#error")


def schedule_row(name: str) -> str:
    return f"#schedules tr[data-name={json.dumps(name)}]"


def listed(server: ServerProcess, name: str) -> dict[str, Any] | None:
    return next((s for s in api(server, "GET", "/schedules")["schedules"] if s["name"] == name), None)


IN_BETWEEN = """
import dataclasses, json
item = next(item for item in SCHED["items"] if item.name == "NAME")
SCHED["pending"]["NAME"] = item
waking = dataclasses.replace(item, paused=False, next_fire_at=None)
SCHED["items"] = [settled(waking)]
render_schedules()
cell = js.document.querySelector('#schedules tr[data-name="NAME"] td:nth-child(5)').innerText
row = js.document.querySelector('#schedules tr[data-name="NAME"]').dataset.paused
kept = "NAME" in SCHED["pending"]
SCHED["items"] = [settled(item)]  # a listing that shows it waiting again settles it
render_schedules()
json.dumps([cell, row, "paused-by-listing" if kept and "NAME" not in SCHED["pending"] else "not settled"])
"""


def test_the_schedules_panel_pauses_resumes_and_deletes(server: ServerProcess, contexts: Contexts) -> None:
    api(server, "POST", "/schedules", {"name": "ui-nightly", "job": "demo-steps", "cron": "0 7 * * mon-fri",
                                       "timezone": "Europe/Paris"})
    page = open_page(contexts.new(), f"{server.url}/dashboard.html")
    name = "ui-nightly"
    wait_for(page, f"!!document.querySelector({json.dumps(schedule_row(name))})", 20)
    wait_for(page, f"document.querySelector({json.dumps(schedule_row(name) + ' td:nth-child(5)')}).innerText"
                   ".includes(' · in ')", 20)  # planned: its next fire time, with a countdown
    cells = page.eval_on_selector_all(f"{schedule_row(name)} td", "tds => tds.map(td => td.innerText)")
    assert cells[:4] == [name, "demo-steps", "0 7 * * mon-fri", "Europe/Paris"] and cells[5] == "active"
    assert re.fullmatch(rf"{DATE} · in \d+ (d \d+ h|h \d\d min|min \d\d s)", cells[4]), cells

    page.click(f"{schedule_row(name)} button[data-schedule-action=pause]")
    wait_for(page, f"document.querySelector({json.dumps(schedule_row(name))})?.dataset.paused === '1'", 15)
    assert page.inner_text(f"{schedule_row(name)} td:nth-child(5)") == "— (paused)"
    assert page.inner_text(f"{schedule_row(name)} td:nth-child(6)") == "paused"
    deadline = time.monotonic() + 15
    while not (listed(server, name) or {}).get("paused"):
        assert time.monotonic() < deadline, "the server never paused the schedule"
        time.sleep(0.05)
    # a listing taken while the schedule's run wakes to take the pause shows it neither paused nor
    # planned: the row keeps the state the pause returned (it used to flicker to "being planned…")
    assert run_py(page, IN_BETWEEN.replace("NAME", name)) == ["— (paused)", "1", "paused-by-listing"]

    page.click(f"{schedule_row(name)} button[data-schedule-action=resume]")
    wait_for(page, f"document.querySelector({json.dumps(schedule_row(name))})?.dataset.paused === ''", 15)
    wait_for(page, f"document.querySelector({json.dumps(schedule_row(name) + ' td:nth-child(5)')}).innerText"
                   ".includes(' · in ')", 20)

    page.click(f"{schedule_row(name)} button[data-schedule-action=delete]")
    confirm = f"{schedule_row(name)} button[data-schedule-action=confirm-delete]"
    wait_for(page, f"!!document.querySelector({json.dumps(confirm)})", 10)
    assert "Delete this schedule?" in page.inner_text(schedule_row(name))
    assert listed(server, name) is not None, "nothing is deleted before the answer"
    page.click(confirm)
    wait_for(page, f"!document.querySelector({json.dumps(schedule_row(name))})", 15)
    assert listed(server, name) is None
    assert page.is_hidden("#schedules-error") and page.is_hidden("#error")
