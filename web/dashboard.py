"""Dashboard (PyScript): the server's runs, live, with filters, paging, details and actions.

``use_runs`` keeps the table current from the run-change feed; ``use_job_run`` follows the selected
run (steps and log); ``use_run_actions`` retries, cancels and deletes. Rendering goes through
``stepstone.hooks.dom``: rows are rebuilt only when their run changed.

Query parameters: ``?api=/api``, ``?token=…`` (bearer token), ``?page_size=10``.
"""

import asyncio
import json

import js
import pyodide_js

from stepstone.client import Client
from stepstone.hooks import use_job_run, use_run_actions, use_runs
from stepstone.hooks.dom import ListView, bind, element, on, progress_text, set_progress, set_text, show

js.window.pyodide = pyodide_js  # tests drive this page's Python through it

PARAMS = js.URLSearchParams.new(js.location.search)
API = str(PARAMS.get("api") or "/api")
TOKEN = PARAMS.get("token")
PAGE_SIZE = int(PARAMS.get("page_size") or 10)
ACTIVE = ("pending", "running")
body = js.document.body.dataset

# reconnect_timeout: after 3 s without the server the hooks say so (and keep retrying)
client = Client(API, headers={"authorization": f"Bearer {TOKEN}"} if TOKEN else None, reconnect_timeout=3)
runs = use_runs(client, page_size=PAGE_SIZE)
detail = use_job_run(client, None)
actions = use_run_actions(client)


def clock(ts):
    return str(js.Date.new(ts * 1000).toLocaleTimeString()) if ts else ""


def button(label, action, run_id):
    return element("button", label, "secondary", type="button", data_action=action, data_run_id=run_id)


def run_row(run):
    row = element("tr", None, "selected" if run.id == detail.run_id else None,
                  data_run_id=run.id, data_status=run.status)
    bar = element("progress")
    set_progress(bar, run.progress)
    badge = element("span", run.status, f"badge {run.status}")
    cells = [
        element("td", run.id[-12:], "mono", title=run.id),
        element("td", run.job_name),
        element("td"),
        element("td"),
        element("td", clock(run.created_at)),
        element("td", None, "actions"),
    ]
    cells[2].append(badge)
    cells[3].append(bar, element("small", " " + progress_text(run.progress), "muted"))
    buttons = [button("Details", "details", run.id)]
    if run.status in ("failed", "cancelled"):
        buttons.append(button("Retry", "retry", run.id))
    if run.status in ACTIVE:
        buttons.append(button("Cancel", "cancel", run.id))
    buttons.append(button("Delete", "delete", run.id))
    cells[5].append(*buttons)
    row.append(*cells)
    return row


# the row's highlight depends on the selection, so the selection is part of its key
ROWS = ListView("runs", key=lambda run: (run.id, run.id == detail.run_id), render=run_row)


def render_runs(state):
    ROWS.update(state.runs)
    first = state.page * state.page_size + 1 if state.total else 0
    last = min(state.total, (state.page + 1) * state.page_size)
    set_text("page-info", f"{first} to {last} of {state.total} runs · page {state.page + 1} of {state.page_count}")
    js.document.getElementById("prev").disabled = not state.has_prev
    js.document.getElementById("next").disabled = not state.has_next
    body.total = str(state.total)
    body.page = str(state.page)
    body.loading = "1" if state.is_loading else ""
    # the selected run came back to life (retried here or elsewhere): follow it again
    for run in state.runs:
        if run.id == detail.run_id and run.status in ACTIVE and detail.is_terminal and not detail.is_following:
            detail.refresh()
    render_error()


def step_row(step):
    row = element("tr", None, None, data_name=step.name, data_status=step.status)
    note = json.dumps(step.output) if step.status == "completed" else step.error or ""
    row.append(element("td", step.index), element("td", step.name),
               element("td", step.status), element("td", note, "mono"))
    return row


def log_line(entry):
    line = element("li", None, None, data_seq=entry.seq)
    line.append(element("span", f"#{entry.seq} ", "seq"), element("span", f"{entry.level}: {entry.message}"))
    return line


STEPS = ListView("detail-steps", key=lambda step: (step.name, step.status), render=step_row)
LOGS = ListView("detail-log", key=lambda entry: (detail.run_id, entry.seq), render=log_line)


async def load_steps():
    """The selected run's stored steps (outputs included), reloaded when its step list changes."""
    run_id = detail.run_id
    if run_id is None:
        return
    try:
        steps = await actions.get_steps(run_id)
    except Exception:
        return  # actions.error has the message
    if run_id == detail.run_id:
        STEPS.update(steps)


SEEN_STEPS = {"key": None}
STEPS_OF = {"run": None}
TASKS = set()


def render_detail(state):
    show("detail", state.run_id is not None)
    body.detail = state.run_id or ""
    body.detailStatus = state.status or ""
    if state.run_id is None:
        return
    set_text("detail-id", state.run_id)
    badge = js.document.getElementById("detail-status")
    set_text(badge, state.status or "loading")
    badge.className = f"badge {state.status or ''}"
    set_progress("detail-progress", state.progress)
    set_text("detail-progress-text", progress_text(state.progress))
    set_text("detail-error", f"Failed: {state.error}" if state.is_failed else "")
    show("detail-error", state.is_failed)
    LOGS.update(state.logs)
    key = (state.run_id, tuple((s.name, s.status) for s in state.steps), state.status)
    if key != SEEN_STEPS["key"]:  # a step started or finished: reload the stored steps
        SEEN_STEPS["key"] = key
        if state.run_id != (STEPS_OF["run"]):
            STEPS.clear()
            STEPS_OF["run"] = state.run_id
        TASKS.add(task := asyncio.ensure_future(load_steps()))
        task.add_done_callback(TASKS.discard)
    render_error()


def render_error():
    problem = runs.error or actions.error or (detail.error if detail.error_code != "run_failed" else None)
    set_text("error", problem or "")
    show("error", bool(problem))
    body.errorCode = runs.error_code or actions.error_code or (detail.error_code or "")


async def on_table_click(event):
    target = event.target
    action = target.dataset.action
    run_id = target.dataset.runId
    if not action or not run_id:
        return
    run_id, action = str(run_id), str(action)
    try:
        if action == "details":
            detail.set_run_id(run_id)
            render_runs(runs)
        elif action == "retry":
            await actions.retry(run_id)
            if detail.run_id == run_id:
                detail.refresh()
        elif action == "cancel":
            await actions.cancel(run_id)
        elif action == "delete":
            await actions.delete_run(run_id)
            if detail.run_id == run_id:
                detail.set_run_id(None)
    except Exception:
        pass  # actions.error has the message
    render_error()


def on_filter(event):
    job = js.document.getElementById("job-filter").value or None
    status = js.document.getElementById("status-filter").value or None
    runs.set_filter(job_name=str(job) if job else None, status=str(status) if status else None)


async def new_run(event):
    try:
        await client.trigger("demo-steps", {"steps": 5, "delay": 1})
    except Exception as exc:
        set_text("error", str(exc))
        show("error", True)


def report(exc):
    set_text("error", f"{type(exc).__name__}: {exc}")
    show("error", True)


async def load_jobs():
    try:
        jobs = await client.jobs()
    except Exception:
        return  # runs.error says what is wrong with the server
    select = js.document.getElementById("job-filter")
    for info in jobs:
        select.append(element("option", info.name, value=info.name))


async def main():
    bind(runs, render_runs)
    bind(detail, render_detail)
    actions.subscribe(lambda _: render_error())
    on("runs", "click", on_table_click, report)
    on("job-filter", "change", on_filter, report)
    on("status-filter", "change", on_filter, report)
    on("prev", "click", lambda event: runs.prev_page(), report)
    on("next", "click", lambda event: runs.next_page(), report)
    on("new-run", "click", new_run, report)
    js.document.getElementById("new-run").disabled = False
    set_text("status", f"Connecting to the stepstone server at {API}…")
    await load_jobs()
    await runs.ready()
    set_text("status", f"Live: runs on the server at {API}.")
    body.readyAt = str(js.Date.now())
    body.state = "ready"


await main()  # noqa: F704 - PyScript runs page scripts with top-level await
