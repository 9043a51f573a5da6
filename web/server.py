"""Server mode (PyScript): trigger a demo job on the stepstone server and follow it live.

Everything here is ``stepstone.hooks.use_job`` over a ``stepstone.client.Client`` (fetch in the
browser) rendered with ``stepstone.hooks.dom``: the current run id is kept in localStorage, so a
reload reattaches to the run in flight; a run of the job started in another tab takes over
(``follow_latest``); a server that goes away is retried and the page says so meanwhile. A
suspended run (``demo-approval`` sleeps, then waits for the event ``approval``) shows what it waits
for with a live countdown, and Approve / Reject send the event (``use_run_actions().send_event``).

Query parameters: ``?job=demo-steps`` or ``?job=demo-approval``, ``?api=/api`` (the API's base
path), ``?token=…`` (sent as a bearer token), ``?run=RUN_ID`` (follow this run).
"""

import asyncio
import json

import js
import pyodide_js

from stepstone.client import Client
from stepstone.hooks import use_job, use_run_actions
from stepstone.hooks.dom import (
    ListView,
    bind,
    countdown,
    countdown_text,
    element,
    field_value,
    on,
    progress_text,
    set_progress,
    set_text,
    show,
)

js.window.pyodide = pyodide_js  # tests drive this page's Python through it

PARAMS = js.URLSearchParams.new(js.location.search)
API = str(PARAMS.get("api") or "/api")
TOKEN = PARAMS.get("token")
RUN = PARAMS.get("run")
JOBS = ("demo-steps", "demo-approval")
JOB = str(PARAMS.get("job") or "") if str(PARAMS.get("job") or "") in JOBS else "demo-steps"
FIELDS = {"demo-steps": ("steps", "delay"), "demo-approval": ("delay", "sleep", "timeout")}
ACTIVE = ("pending", "running", "suspended")
body = js.document.body.dataset

# reconnect_timeout: after 3 s without the server the hooks say so (and keep retrying)
client = Client(API, headers={"authorization": f"Bearer {TOKEN}"} if TOKEN else None, reconnect_timeout=3)
job = use_job(client, JOB, initial_run_id=str(RUN) if RUN else None)
actions = use_run_actions(client)


def log_line(entry):
    line = element("li", None, None, data_seq=entry.seq)
    line.append(element("span", f"#{entry.seq} ", "seq"), element("span", f"{entry.level}: {entry.message}"))
    return line


STEP_NOTES = {"running": "running…", "completed": "done", "failed": "failed", "cancelled": "cancelled",
              "interrupted": "interrupted", "retrying": "retrying"}


def step_item(view):
    note = STEP_NOTES.get(view.status, view.status)
    if view.status == "waiting":
        note = {"sleep": "sleeping · wakes", "event": f"waiting for {view.event} · gives up",
                "invoke": "waiting for its child run"}.get(view.kind, "waiting")
        if not view.until:
            note = {"event": f"waiting for {view.event}"}.get(view.kind, note)
    elif view.duration_ms is not None and view.status != "running":
        took = f"{view.duration_ms / 1000:.2f} s"
        if view.status == "completed":
            note = f"waited {took}" if view.kind in ("sleep", "event", "invoke") else f"done in {took}"
        else:
            note = f"{note} in {took}"
    item = element("li", None, view.status, data_name=view.name)
    small = element("small", note)
    if view.status == "waiting" and view.until:
        small.append(" ", countdown(view.until))
    item.append(element("span", view.name), small)
    return item


LOGS = ListView("log", key=lambda entry: entry.seq, render=log_line)
STEPS = ListView("steps", key=lambda view: (view.name, view.status), render=step_item)
WAIT_SHOWN = {"key": None}


def clock(ts):
    d = js.Date.new(ts * 1000)
    return f"{int(d.getHours()):02d}:{int(d.getMinutes()):02d}:{int(d.getSeconds()):02d}"


def render_wait(state):
    """What a suspended run waits for, with a countdown; Approve / Reject for an approval."""
    wait = state.wait
    body.runWait = wait.reason if wait is not None else ""
    show("run-wait", wait is not None)
    key = (state.current_run_id, wait)
    if WAIT_SHOWN["key"] == key:
        return
    WAIT_SHOWN["key"] = key
    box = js.document.getElementById("run-wait")
    if wait is None:
        box.replaceChildren()
        return
    line = element("p")
    parts = []
    if wait.reason == "sleep" and wait.until:
        line.append(f"Sleeping until {clock(wait.until)}: wakes ", countdown(wait.until), ".")
        parts.append(element("p", "The run is suspended: it holds no worker, and wakes on time even if the server "
                                  "restarts meanwhile.", "muted"))
    elif wait.reason == "retry" and wait.until:
        line.append(f"Waiting to retry at {clock(wait.until)}: next attempt ", countdown(wait.until), ".")
    elif wait.events:
        line.append(f"Waiting for the event {' or '.join(wait.events)}")
        if wait.until:
            line.append(f" until {clock(wait.until)} (gives up ", countdown(wait.until), ")")
        line.append(".")
        if "approval" in wait.events:
            parts.append(element("button", "Approve", None, type="button", id="approve", data_ok="1"))
            parts.append(element("button", "Reject", "secondary", type="button", id="reject", data_ok=""))
    elif wait.children:
        count = len(wait.children)
        line.append("Waiting for its child run." if count == 1 else f"Waiting for {count} child runs.")
    else:
        line.append(f"Suspended ({wait.reason}).")
    box.replaceChildren(line, *parts)


async def decide(event):
    """Approve / Reject: send the event ``approval`` to the run shown."""
    target = event.target.closest("button[data-ok]")
    if not target or not job.current_run_id:
        return
    FAILED_ACTION["run"] = job.current_run_id
    target.disabled = True
    try:
        await actions.send_event(job.current_run_id, "approval", {"ok": bool(str(target.dataset.ok)),
                                                                 "by": "server.html"})
    except Exception:
        target.disabled = False
        render(job)  # actions.error has the message


async def ticker():
    """Once a second: every countdown in the page."""
    while True:
        await asyncio.sleep(1)
        for node in js.document.querySelectorAll(".countdown[data-until]"):
            set_text(node, countdown_text(float(node.dataset.until)))


def render(state):
    # Each problem shows in one place: bad input under the form; a failed run in its card; the rest
    # (server down, 401, a failed action on the run shown) in the alert box.
    bad_input = state.error if state.error_code == "invalid_input" else None
    set_text("input-error", f"Invalid input: {bad_input}" if bad_input else "")
    show("input-error", bool(bad_input))
    problem = None
    if state.error_code not in (None, "run_failed", "invalid_input"):
        problem = state.error
    elif actions.error and FAILED_ACTION["run"] == state.current_run_id:  # not once it follows another run
        problem = actions.error
    missing = state.error_code == "run_not_found"
    if missing:  # one clear state: no card with a "loading" badge and an empty log beside it
        problem = f"Run {state.current_run_id} was not found (it may have been deleted). Start a new run below."
    set_text("error", problem or "")
    show("error", bool(problem))
    body.errorCode = state.error_code or ""
    render_status(state)
    body.run = state.current_run_id or ""
    body.runStatus = state.status or ""
    show("current", state.current_run_id is not None and not missing)
    if state.current_run_id is None or missing:
        LOGS.clear()
        STEPS.clear()
        return
    set_text("run-id", state.current_run_id)
    badge = js.document.getElementById("run-status")
    set_text(badge, state.status or "loading")
    badge.className = f"badge {state.status or ''}"
    set_progress("progress", state.progress)
    set_text("progress-text", progress_text(state.progress))
    render_wait(state)
    STEPS.update(state.steps)
    LOGS.update(state.logs)
    set_text("run-error", f"Failed: {state.error}" if state.is_failed else "")
    show("run-error", state.is_failed)
    set_text("output", json.dumps(state.output, indent=2) if state.is_completed else "")
    show("output", state.is_completed)
    show("cancel", state.status in ACTIVE)


FAILED_ACTION = {"run": None}  # the run the last failed action was about


def render_status(state):
    """The status line: ready, or reconnecting while the server is out of reach (the hooks keep
    retrying with backoff and the run goes on there; the page catches up when it is back)."""
    if body.state != "ready":
        return
    if state.error_code == "server_unavailable":
        set_text("status", f"Reconnecting… the server at {API} is unreachable; this page catches up when it is back.")
        body.connection = "reconnecting"
    else:
        set_text("status", f"Ready: runs of {JOB} on the server at {API}.")
        body.connection = "live"


async def start(event):
    payload = {name: field_value(js.document.getElementById(f"{name}-input").value) for name in FIELDS[JOB]}
    try:
        await job.trigger(payload)
    except Exception:
        pass  # job.error has the message (bad input, server down, ...); render() shows it


async def cancel(event):
    if job.current_run_id:
        FAILED_ACTION["run"] = job.current_run_id
        try:
            await actions.cancel(job.current_run_id)
        except Exception:
            render(job)  # actions.error has the message


def report(exc):
    set_text("error", f"{type(exc).__name__}: {exc}")
    show("error", True)


def choose_job(event):
    """Another job: the page for it (each job keeps its own current run)."""
    params = js.URLSearchParams.new(js.location.search)
    params.set("job", str(js.document.getElementById("job-select").value))
    params.delete("run")
    js.location.search = f"?{params.toString()}"


def show_fields():
    js.document.getElementById("job-select").value = JOB
    set_text("job-name", JOB)
    for label in js.document.querySelectorAll("label[data-job]"):
        label.hidden = str(label.dataset.job) != JOB
    body.job = JOB


TASKS = set()


async def main():
    show_fields()
    bind(job, render)
    actions.subscribe(lambda _: render(job))
    on("start-form", "submit", start, report, prevent_default=True)
    on("cancel", "click", cancel, report)
    on("forget", "click", lambda event: job.reset(), report)
    on("job-select", "change", choose_job, report)
    on("run-wait", "click", decide, report)
    task = asyncio.ensure_future(ticker())
    TASKS.add(task)
    js.document.getElementById("start").disabled = False
    set_text("status", f"Connecting to the stepstone server at {API}…")
    await job.ready()
    body.readyAt = str(js.Date.now())
    body.state = "ready"
    render_status(job)


await main()  # noqa: F704 - PyScript runs page scripts with top-level await
