"""Server mode (PyScript): trigger ``demo-steps`` on the stepstone server and follow it live.

Everything here is ``stepstone.hooks.use_job`` over a ``stepstone.client.Client`` (fetch in the
browser) rendered with ``stepstone.hooks.dom``: the current run id is kept in localStorage, so a
reload reattaches to the run in flight; a run of the job started in another tab takes over
(``follow_latest``); a server that goes away is retried and the page says so meanwhile.

Query parameters: ``?api=/api`` (the API's base path), ``?token=…`` (sent as a bearer token),
``?run=RUN_ID`` (follow this run).
"""

import json

import js
import pyodide_js

from stepstone import InvalidInput
from stepstone.client import Client
from stepstone.hooks import use_job, use_run_actions
from stepstone.hooks.dom import ListView, bind, element, field_value, on, progress_text, set_progress, set_text, show

js.window.pyodide = pyodide_js  # tests drive this page's Python through it

PARAMS = js.URLSearchParams.new(js.location.search)
API = str(PARAMS.get("api") or "/api")
TOKEN = PARAMS.get("token")
RUN = PARAMS.get("run")
JOB = "demo-steps"
ACTIVE = ("pending", "running")
body = js.document.body.dataset

# reconnect_timeout: after 3 s without the server the hooks say so (and keep retrying)
client = Client(API, headers={"authorization": f"Bearer {TOKEN}"} if TOKEN else None, reconnect_timeout=3)
job = use_job(client, JOB, initial_run_id=str(RUN) if RUN else None)
actions = use_run_actions(client)


def log_line(entry):
    line = element("li", None, None, data_seq=entry.seq)
    line.append(element("span", f"#{entry.seq} ", "seq"), element("span", f"{entry.level}: {entry.message}"))
    return line


def step_item(view):
    note = {"running": "running…", "completed": "done", "failed": "failed"}.get(view.status, view.status)
    if view.status == "completed" and view.duration_ms is not None:
        note = f"done in {view.duration_ms / 1000:.2f} s"
    item = element("li", None, view.status, data_name=view.name)
    item.append(element("span", view.name), element("small", note))
    return item


LOGS = ListView("log", key=lambda entry: entry.seq, render=log_line)
STEPS = ListView("steps", key=lambda view: view.name, render=step_item)


def render(state):
    problem = state.error if state.error_code not in (None, "run_failed") else actions.error
    set_text("error", problem or "")
    show("error", bool(problem))
    body.errorCode = state.error_code or ""
    body.run = state.current_run_id or ""
    body.runStatus = state.status or ""
    show("current", state.current_run_id is not None)
    if state.current_run_id is None:
        LOGS.clear()
        STEPS.clear()
        return
    set_text("run-id", state.current_run_id)
    badge = js.document.getElementById("run-status")
    set_text(badge, state.status or "loading")
    badge.className = f"badge {state.status or ''}"
    set_progress("progress", state.progress)
    set_text("progress-text", progress_text(state.progress))
    STEPS.update(state.steps)
    LOGS.update(state.logs)
    set_text("run-error", f"Failed: {state.error}" if state.is_failed else "")
    show("run-error", state.is_failed)
    set_text("output", json.dumps(state.output, indent=2) if state.is_completed else "")
    show("output", state.is_completed)
    show("cancel", state.status in ACTIVE)


async def start(event):
    show("input-error", False)
    payload = {"steps": field_value(js.document.getElementById("steps-input").value),
               "delay": field_value(js.document.getElementById("delay-input").value)}
    try:
        await job.trigger(payload)
    except InvalidInput as exc:
        set_text("input-error", f"Invalid input: {exc}")
        show("input-error", True)
    except Exception:
        pass  # job.error has the message; render() shows it


async def cancel(event):
    if job.current_run_id:
        try:
            await actions.cancel(job.current_run_id)
        except Exception:
            render(job)  # actions.error has the message


def report(exc):
    set_text("error", f"{type(exc).__name__}: {exc}")
    show("error", True)


async def main():
    bind(job, render)
    actions.subscribe(lambda _: render(job))
    on("start-form", "submit", start, report, prevent_default=True)
    on("cancel", "click", cancel, report)
    on("forget", "click", lambda event: job.reset(), report)
    js.document.getElementById("start").disabled = False
    set_text("status", f"Connecting to the stepstone server at {API}…")
    await job.ready()
    set_text("status", f"Ready: runs of {JOB} on the server at {API}.")
    body.readyAt = str(js.Date.now())
    body.state = "ready"


await main()  # noqa: F704 - PyScript runs page scripts with top-level await
