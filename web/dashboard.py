"""Dashboard (PyScript): the server's runs, live, with filters, paging, details and actions.

``use_runs`` keeps the table current from the run-change feed; ``use_job_run`` follows the selected
run (its facts, what it waits for, steps and log; its parent and, with ``use_runs(parent_id=)``,
its child runs); ``use_run_actions`` retries, cancels and deletes (after a confirmation in the
row) and sends events. The Schedules panel lists ``client.schedules`` (pause, resume, delete).
Rendering goes through ``stepstone.hooks.dom``: rows are rebuilt only when their run changed;
countdowns (a wake time, a retry, a schedule's next fire) tick once a second in place.

The URL keeps what a reload must not lose: ``?job=``, ``?status=``, ``?page=`` (1-based) and
``?run=`` (the selected run), next to ``?api=/api``, ``?token=…`` (bearer token) and
``?page_size=10`` (1 to 100). A parameter that makes no sense is named in a notice and ignored.
"""

import asyncio
import dataclasses
import json

import js
import pyodide_js

from stepstone.client import Client
from stepstone.hooks import describe_error, use_job_run, use_run_actions, use_runs
from stepstone.hooks.dom import (
    ListView,
    bind,
    countdown,
    countdown_text,
    element,
    on,
    progress_text,
    set_progress,
    set_text,
    show,
)

js.window.pyodide = pyodide_js  # tests drive this page's Python through it

ACTIVE = ("pending", "running", "suspended")
STATUSES = ("pending", "running", "suspended", "completed", "failed", "cancelled")
SCHEDULE_JOB = "stepstone.schedule"  # the built-in job whose runs are the schedules
DEFAULT_PAGE_SIZE = 10
body = js.document.body.dataset


# -- URL parameters --------------------------------------------------------------------------------
def read_params(search):
    """The page's settings from its query string, and a note for each parameter that was ignored."""
    params = js.URLSearchParams.new(search)

    def get(name):
        value = params.get(name)
        return None if value is None or not value else str(value)  # a JS null arrives as jsnull

    notes = []

    def whole(name, default, low, high, meaning):
        text = get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            notes.append(f"{name} must be a whole number from {low} to {high}, not {text!r}: {meaning}")
            return default
        return value

    status = get("status")
    if status is not None and status not in STATUSES:
        notes.append(f"status must be one of {', '.join(STATUSES)}, not {status!r}: showing every status")
        status = None
    settings = {
        "api": get("api") or "/api",
        "token": get("token"),
        "page_size": whole("page_size", DEFAULT_PAGE_SIZE, 1, 100, f"showing {DEFAULT_PAGE_SIZE} runs per page"),
        "page": whole("page", 1, 1, 1_000_000, "showing the first page") - 1,
        "job": get("job"),
        "status": status,
        "run": get("run"),
    }
    return settings, notes


SETTINGS, NOTES = read_params(js.location.search)
API = SETTINGS["api"]
TOKEN = SETTINGS["token"]

# reconnect_timeout: after 3 s without the server the hooks say so (and keep retrying)
client = Client(API, headers={"authorization": f"Bearer {TOKEN}"} if TOKEN else None, reconnect_timeout=3)
runs = use_runs(client, job_name=SETTINGS["job"], status=SETTINGS["status"], page_size=SETTINGS["page_size"])
runs.go_to(SETTINGS["page"])
detail = use_job_run(client, SETTINGS["run"])
actions = use_run_actions(client)
UI = {"confirm_delete": None, "action_failed": False, "loaded": False}


def save_url():
    """Keep the filters, the page and the selected run in the URL (a reload comes back to them)."""
    params = js.URLSearchParams.new(js.location.search)
    wanted = {"job": runs.job_name, "status": runs.status[0] if runs.status else None,
              "page": str(runs.page + 1) if runs.page else None, "run": detail.run_id}
    for name, value in wanted.items():
        if value:
            params.set(name, value)
        else:
            params.delete(name)
    query = str(params.toString())
    if f"?{query}" != str(js.location.search) and (query or js.location.search):
        js.history.replaceState(None, "", f"{js.location.pathname}?{query}" if query else js.location.pathname)


# -- formatting ------------------------------------------------------------------------------------
def when(ts):
    """``2026-01-31 14:05:09`` in the browser's time zone."""
    if not ts:
        return ""
    d = js.Date.new(ts * 1000)
    return (f"{int(d.getFullYear())}-{int(d.getMonth()) + 1:02d}-{int(d.getDate()):02d} "
            f"{int(d.getHours()):02d}:{int(d.getMinutes()):02d}:{int(d.getSeconds()):02d}")


def seconds(start, end):
    if not start or not end or end < start:
        return ""
    return f"{end - start:.2f} s"


def as_json(value):
    return json.dumps(value, ensure_ascii=False)


def now():
    return float(js.Date.now()) / 1000


def tick_countdowns():
    for node in js.document.querySelectorAll(".countdown[data-until]"):
        set_text(node, countdown_text(float(node.dataset.until), now()))


def run_href(run_id):
    """This page's address with ``?run=`` set: the link opens the run here (or in a new tab)."""
    params = js.URLSearchParams.new(js.location.search)
    params.set("run", run_id)
    return f"{js.location.pathname}?{params.toString()}"


def run_link(run_id, text=None):
    return element("a", text or run_id[-12:], "run-link", href=run_href(run_id), title=run_id,
                   data_action="select", data_run_id=run_id)


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 'ren' if word == 'child' else 's'}"


def schedule_name(run):
    spec = run.input if run.job_name == SCHEDULE_JOB and isinstance(run.input, dict) else None
    return spec.get("name") if spec else None


def wait_nodes(run):
    """What a suspended run waits for, short (a table cell): text and countdown nodes."""
    wait = run.wait
    if run.status != "suspended" or wait is None:
        return []
    name = schedule_name(run)
    if name and wait.events == ("control",):
        return [f"schedule {name} fires ", countdown(wait.until)] if wait.until else [f"schedule {name} paused"]
    if wait.reason == "sleep" and wait.until:
        return ["sleeps · wakes ", countdown(wait.until)]
    if wait.reason == "retry" and wait.until:
        return ["retry ", countdown(wait.until)]
    if wait.events:
        return [f"waits for event {' or '.join(wait.events)}"]
    if wait.children:
        return [f"waits for {plural(len(wait.children), 'child')}"]
    return [f"waits ({wait.reason})"]


def waits_for_event(run):
    return run.status == "suspended" and run.wait is not None and bool(run.wait.events) and not schedule_name(run)


# -- the table -------------------------------------------------------------------------------------
def button(label, action, run_id, cls="secondary"):
    return element("button", label, cls, type="button", data_action=action, data_run_id=run_id)


def run_row(run):
    row = element("tr", None, "selected" if run.id == detail.run_id else None,
                  data_run_id=run.id, data_status=run.status)
    bar = element("progress")
    set_progress(bar, run.progress)
    badge = element("span", run.status, f"badge {run.status}")
    waiting = wait_nodes(run)
    cells = [
        element("td", run.id[-12:], "mono", title=run.id),
        element("td", run.job_name, "nowrap"),
        element("td"),
        element("td", None, "nowrap", title=progress_text(run.progress) or None),
        element("td", when(run.created_at), "nowrap"),
        element("td", None, "actions"),
    ]
    cells[2].append(badge)
    if waiting:
        line = element("small", None, "wait")
        line.append(*waiting)
        cells[2].append(line)
    amount = progress_text(dataclasses.replace(run.progress, message=None)) if run.progress else ""
    cells[3].append(bar, element("small", f" {amount}", "muted"))
    if UI["confirm_delete"] == run.id:
        buttons = [element("span", "Delete this run? ", "confirm"),
                   button("Yes, delete", "confirm-delete", run.id, "danger"), button("Keep", "keep", run.id)]
    else:
        buttons = [button("Details", "details", run.id)]
        if waits_for_event(run):
            buttons.append(button("Send event", "send-event", run.id))
        if run.status in ("failed", "cancelled"):
            buttons.append(button("Retry", "retry", run.id))
        if run.status in ACTIVE:
            buttons.append(button("Cancel", "cancel", run.id))
        buttons.append(button("Delete", "delete", run.id))
    cells[5].append(*buttons)
    row.append(*cells)
    return row


# a row depends on the selection and on a pending delete too, so both are part of its key
ROWS = ListView("runs", key=lambda run: (run.id, run.id == detail.run_id, run.id == UI["confirm_delete"]),
                render=run_row)


def filters_text(state):
    parts = [f"job {state.job_name}"] if state.job_name else []
    if state.status:
        parts.append(f"status {', '.join(state.status)}")
    return ", ".join(parts)


def render_runs(state):
    ROWS.update(state.runs)
    first = state.page * state.page_size + 1 if state.total else 0
    last = min(state.total, (state.page + 1) * state.page_size)
    set_text("page-info", f"{first} to {last} of {state.total} runs · page {state.page + 1} of {state.page_count}")
    js.document.getElementById("prev").disabled = not state.has_prev
    js.document.getElementById("next").disabled = not state.has_next
    empty = UI["loaded"] and not state.runs and not state.is_loading and not state.error
    show("empty", empty)
    if empty:
        chosen = filters_text(state)
        set_text("empty", f"No runs match ({chosen})." if chosen else "No runs yet: start one with the button above.")
    body.total = str(state.total)
    body.page = str(state.page)
    body.loading = "1" if state.is_loading else ""
    # the selected run came back to life (retried here or elsewhere): follow it again
    for run in state.runs:
        if run.id == detail.run_id and run.status in ACTIVE and detail.is_terminal and not detail.is_following:
            detail.refresh()
    save_url()
    render_status()


# -- the selected run -------------------------------------------------------------------------------
OUTPUTS = {"run": None, "steps": {}}  # stored step outputs of the selected run, by step name
STEP_NOTES = {"running": "running…", "cancelled": "cancelled (the run was cancelled while it ran)",
              "interrupted": "interrupted (its execution stopped mid-step)"}


def step_note(view):
    """What the last column says about a step: its output, error, or what it waits for."""
    stored = OUTPUTS["steps"].get(view.name)
    output = stored.output if stored is not None else None
    if view.status == "waiting":
        if view.kind == "sleep" and view.until:
            return [f"sleeps until {when(view.until)} · wakes ", countdown(view.until)]
        if view.kind == "event":
            return [f"waits for event {view.event}"] + ([" · gives up ", countdown(view.until)] if view.until else [])
        if view.kind == "invoke" and view.child_id:
            return ["waits for child run ", run_link(view.child_id)]
    if view.status == "retrying":
        return [f"attempt {view.attempt} failed: {view.error or ''} · next attempt ",
                countdown(view.until) if view.until else ""]
    if view.kind == "invoke" and view.child_id and view.status in ("completed", "failed"):
        tail = as_json(output.get("output")) if view.status == "completed" and isinstance(output, dict) else (
            view.error or "")
        return ["child run ", run_link(view.child_id), f" → {tail}"]
    if view.status == "completed":
        if view.kind == "sleep" and view.until:
            return [f"slept until {when(view.until)}"]
        return [as_json(output)] if stored is not None else []
    if view.status == "failed":
        return [view.error or ""]
    note = STEP_NOTES.get(view.status, "")
    return [note + (f" (attempt {view.attempt})" if view.status == "running" and view.attempt > 1 else "")]


def step_row(view):
    row = element("tr", None, view.status, data_name=view.name, data_status=view.status, data_kind=view.kind)
    took = f"{view.duration_ms / 1000:.2f} s" if view.duration_ms is not None else ""
    note = element("td", None, "note")
    note.append(*step_note(view))
    row.append(element("td", view.index + 1), element("td", view.name), element("td", view.status),
               element("td", took, "nowrap"), note)
    return row


def log_line(entry):
    line = element("li", None, None, data_seq=entry.seq)
    line.append(element("span", f"#{entry.seq} ", "seq"), element("span", f"{entry.level}: {entry.message}"))
    return line


STEPS = ListView("detail-steps", key=lambda view: (detail.run_id, view.name, view.status,
                                                   view.name in OUTPUTS["steps"]), render=step_row)
LOGS = ListView("detail-log", key=lambda entry: (detail.run_id, entry.seq), render=log_line)
TASKS = set()


def spawn(coro):
    task = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return task


PENDING_LOADS = set()


async def load_outputs(run_id):
    """The selected run's stored steps (their outputs), read again when a step completes."""
    try:
        records = await client.get_steps(run_id)
    except Exception:
        return  # the run's own state (detail.error) says what is wrong
    if run_id == detail.run_id:
        OUTPUTS["steps"] = {record.name: record for record in records}
        render_detail(detail)


def fact(name, value, cls=None):
    dd = element("dd", None, cls)
    if isinstance(value, list):
        dd.append(*value)
    else:
        dd.textContent = str(value) if value not in (None, "") else "—"
    return [element("dt", name), dd]


def render_facts(run):
    facts = []
    if run is not None:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(run.labels.items())) or "none"
        facts += fact("Job", f"{run.job_name} (version {run.job_version})")
        if run.parent_id:
            facts += fact("Parent", [run_link(run.parent_id, run.parent_id),
                                     f" (its step {run.parent_step})" if run.parent_step else ""])
        facts += fact("Attempt", run.attempt)
        facts += fact("Created", when(run.created_at))
        facts += fact("Started", when(run.started_at))
        facts += fact("Finished", when(run.finished_at) + (
            f" (after {seconds(run.started_at, run.finished_at)})" if run.finished_at and run.started_at else ""))
        facts += fact("Labels", labels)
        facts += fact("Input", as_json(run.input), "mono")
        if run.status == "completed":
            facts += fact("Output", as_json(run.output), "mono")
    js.document.getElementById("detail-facts").replaceChildren(*facts)


WAIT_SHOWN = {"key": None}


def render_wait(state):
    """What the selected run waits for, in a box above its facts (rebuilt only when it changed)."""
    wait = state.wait
    body.detailWait = wait.reason if wait is not None else ""
    show("detail-wait", wait is not None)
    key = (state.run_id, wait, tuple(state.steps) if wait is not None and wait.reason == "retry" else None,
           state.error if wait is not None and wait.reason == "retry" else None)
    if WAIT_SHOWN["key"] == key:
        return
    WAIT_SHOWN["key"] = key
    box = js.document.getElementById("detail-wait")
    if wait is None:
        box.replaceChildren()
        return
    line = element("p")
    nodes = []
    name = schedule_name(state.run) if state.run is not None else None
    if name and wait.events == ("control",):
        line.append(*([f"Schedule {name} fires at {when(wait.until)} · ", countdown(wait.until)] if wait.until else
                      [f"Schedule {name} is paused."]))  # fmt: skip
    elif wait.reason == "sleep" and wait.until:
        line.append(f"Sleeping until {when(wait.until)} · wakes ", countdown(wait.until))
    elif wait.reason == "retry" and wait.until:
        line.append(f"Waiting to retry at {when(wait.until)} · next attempt ", countdown(wait.until))
        step = next((view for view in state.steps if view.status == "retrying"), None)
        if step is not None:  # a step's retries=N
            nodes.append(element("p", f"after: step {step.name}, attempt {step.attempt}: {step.error}", "muted"))
        elif state.error:  # the job's own retries
            nodes.append(element("p", f"after attempt {state.run.attempt - 1}: {state.error}", "muted"))
    elif wait.events:
        line.append(f"Waiting for event {' or '.join(wait.events)}")
        if wait.until:
            line.append(f" until {when(wait.until)} · gives up ", countdown(wait.until))
        nodes.append(element("button", "Send event…", "secondary", type="button", data_action="focus-event"))
    elif wait.children:
        count = len(wait.children)
        line.append("Waiting for its child run " if count == 1 else f"Waiting for {count} child runs: ")
        for i, child_id in enumerate(wait.children):
            line.append(*([", "] if i else []), run_link(child_id))
    else:
        line.append(f"Suspended ({wait.reason}).")
    box.replaceChildren(line, *nodes)


# the selected run's children, live (use_runs with parent_id): one state per selected run
CHILDREN = {"run": None, "state": None, "unbind": None}


def child_row(run):
    row = element("tr", None, None, data_run_id=run.id, data_status=run.status)
    status = element("td")
    status.append(element("span", run.status, f"badge {run.status}"))
    waiting = wait_nodes(run)
    if waiting:
        line = element("small", None, "wait")
        line.append(*waiting)
        status.append(line)
    link = element("td")
    link.append(run_link(run.id))
    row.append(link, element("td", run.job_name), element("td", run.parent_step or ""), status,
               element("td", when(run.created_at), "nowrap"))
    return row


CHILD_ROWS = ListView("detail-children", key=lambda run: run.id, render=child_row)


def follow_children(run_id):
    if CHILDREN["run"] == run_id:
        return
    if CHILDREN["state"] is not None:
        CHILDREN["unbind"]()
        CHILDREN["state"].close()
    CHILDREN.update(run=run_id, state=None, unbind=None)
    CHILD_ROWS.clear()
    show("children-box", False)
    body.children = ""
    if run_id is not None:
        CHILDREN["state"] = use_runs(client, parent_id=run_id, page_size=50)
        CHILDREN["unbind"] = bind(CHILDREN["state"], render_children)


def render_children(state):
    if state is not CHILDREN["state"]:
        return  # a run no longer selected
    show("children-box", state.total > 0)
    shown = sorted(state.runs, key=lambda run: run.created_at)
    set_text("children-count", f"({state.total})" if state.total <= len(shown) else f"({len(shown)} of {state.total})")
    CHILD_ROWS.update(shown)
    body.children = str(state.total)


# the event form of the selected run
FORM = {"run": None, "auto": ""}


def render_event_form(state):
    run = state.run
    usable = state.status in ACTIVE and run is not None and not schedule_name(run)
    show("event-box", usable)
    name_input = js.document.getElementById("event-name")
    if FORM["run"] != state.run_id:  # another run: a fresh form
        FORM["run"], FORM["auto"] = state.run_id, ""
        name_input.value = ""
        js.document.getElementById("event-data").value = "{}"
        show("event-error", False)
        show("event-sent", False)
    wanted = state.wait.events[0] if state.wait is not None and state.wait.events else ""
    if wanted and str(name_input.value) in ("", FORM["auto"]):  # fill in what it waits for, unless typed over
        name_input.value = wanted
        FORM["auto"] = wanted


def render_detail(state):
    missing = state.error_code == "run_not_found"
    show("detail", state.run_id is not None)
    body.detail = state.run_id or ""
    body.detailStatus = state.status or ("missing" if missing else "")
    save_url()
    follow_children(state.run_id if not missing else None)
    if state.run_id is None:
        return
    set_text("detail-id", state.run_id)
    badge = js.document.getElementById("detail-status")
    set_text(badge, state.status or ("not found" if missing else "loading"))
    badge.className = f"badge {state.status or ''}"
    show("detail-body", not missing)
    set_text("detail-missing", f"Run {state.run_id} was not found (it may have been deleted)." if missing else "")
    show("detail-missing", missing)
    set_progress("detail-progress", state.progress)
    set_text("detail-progress-text", progress_text(state.progress))
    set_text("detail-error", f"Failed: {state.error}" if state.is_failed else "")
    show("detail-error", state.is_failed)
    render_wait(state)
    render_facts(state.run)
    render_event_form(state)
    if OUTPUTS["run"] != state.run_id:
        OUTPUTS["run"], OUTPUTS["steps"] = state.run_id, {}
    STEPS.update(state.steps)
    LOGS.update(state.logs)
    done = {view.name for view in state.steps if view.status == "completed"}
    if not done <= set(OUTPUTS["steps"]) and state.run_id not in PENDING_LOADS:
        PENDING_LOADS.add(state.run_id)
        spawn(load_outputs(state.run_id)).add_done_callback(
            lambda t, run_id=state.run_id: PENDING_LOADS.discard(run_id))
    render_status()


async def send_event(event):
    """The event form: a name and JSON data, sent with ``use_run_actions().send_event``."""
    run_id = detail.run_id
    name = str(js.document.getElementById("event-name").value).strip()
    text = str(js.document.getElementById("event-data").value).strip() or "null"
    show("event-sent", False)

    def refuse(message):
        set_text("event-error", message)
        show("event-error", True)

    if not run_id:
        return
    if not name:
        refuse("Give the event a name: the job takes it with step.wait_for_event(name).")
        return
    try:
        data = json.loads(text)
    except ValueError as exc:
        refuse(f"The data is not JSON: {exc}")
        return
    show("event-error", False)
    waited = detail.wait is not None and name in detail.wait.events  # before it wakes
    button_ = js.document.getElementById("event-send")
    button_.disabled = True
    try:
        await actions.send_event(run_id, name, data)
    except Exception:
        refuse(f"Not sent: {actions.error}")
        return
    finally:
        button_.disabled = False
    set_text("event-sent", f"Sent event {name} to run {run_id}" + (
        ": it was waiting for it and wakes now." if waited else
        f"; it is kept for the run's next step.wait_for_event({name!r})."))
    show("event-sent", True)


def focus_event_form(event_name=None):
    if event_name:
        js.document.getElementById("event-name").value = event_name
        FORM["auto"] = event_name
    box = js.document.getElementById("event-box")
    box.scrollIntoView()
    js.document.getElementById("event-data").focus()


def on_detail_click(event):
    """Links to other runs (a parent, a child) open them here; "Send event…" goes to the form."""
    target = event.target.closest("[data-action]")
    if not target:
        return
    action = str(target.dataset.action)
    if action == "select" and not (event.ctrlKey or event.metaKey or event.shiftKey):
        event.preventDefault()
        select(str(target.dataset.runId))
    elif action == "focus-event":
        focus_event_form()


# -- schedules ----------------------------------------------------------------------------------------
SCHED = {"items": [], "error": None, "confirm": None, "loaded": False, "dirty": None, "pending": {}}


def schedule_button(label, action, name, cls="secondary"):
    return element("button", label, cls, type="button", data_schedule_action=action, data_name=name)


def schedule_row(item):
    row = element("tr", None, None, data_name=item.name, data_paused="1" if item.paused else "")
    fire = element("td", None, "nowrap")
    if item.paused:
        fire.textContent = "— (paused)"
    elif item.next_fire_at:
        fire.append(f"{when(item.next_fire_at)} · ", countdown(item.next_fire_at))
    else:
        fire.textContent = "being planned…"
    state = element("td")
    word = "paused" if item.paused else "active"
    state.append(element("span", word, f"badge {word}"))
    acts = element("td", None, "actions")
    if SCHED["confirm"] == item.name:
        acts.append(element("span", "Delete this schedule? ", "confirm"),
                    schedule_button("Yes, delete", "confirm-delete", item.name, "danger"),
                    schedule_button("Keep", "keep", item.name))
    else:
        acts.append(schedule_button("Resume", "resume", item.name) if item.paused else
                    schedule_button("Pause", "pause", item.name),
                    schedule_button("Delete", "delete", item.name))  # fmt: skip
    row.append(element("td", item.name), element("td", item.job, "nowrap"), element("td", item.cron, "mono nowrap"),
               element("td", item.timezone, "nowrap"), fire, state, acts)
    return row


SCHEDULE_ROWS = ListView("schedules", key=lambda item: (item.name, SCHED["confirm"] == item.name),
                         render=schedule_row)


def render_schedules():
    items = SCHED["items"]
    SCHEDULE_ROWS.update(items)
    show("schedules-table", bool(items))
    show("schedules-empty", SCHED["loaded"] and not items)
    set_text("schedules-error", SCHED["error"] or "")
    show("schedules-error", bool(SCHED["error"]))
    body.schedules = str(len(items)) if SCHED["loaded"] else ""


async def load_schedules():
    try:
        items = await client.schedules.list()
    except Exception as exc:
        code, message = describe_error(exc)
        if code != "server_unavailable":  # an outage is the status line's business; keep what we knew
            SCHED["error"] = f"Could not list the schedules: {message}"
            render_schedules()
        return
    SCHED["items"], SCHED["loaded"] = [settled(item) for item in items], True
    if SCHED["error"] and SCHED["error"].startswith("Could not list"):
        SCHED["error"] = None
    render_schedules()


def settled(item):
    """A schedule's run wakes to take a pause or a resume, then waits again: in between it lists
    as neither paused nor planned. Until a listing shows it waiting again, the state the action
    returned stands (a listing that shows anything else, another tab's doing, wins at once)."""
    expected = SCHED["pending"].get(item.name)
    if expected is None:
        return item
    if not item.paused and item.next_fire_at is None:  # between two waits
        return expected
    del SCHED["pending"][item.name]
    return item


def refresh_delay():
    """Seconds until the list should be read again: soon after a tick fires (its next one is then
    known), soon while one is being planned, else every 10 s."""
    delay = 10.0
    for item in SCHED["items"]:
        if item.paused:
            continue
        due = 1.0 if item.next_fire_at is None else max(1.0, item.next_fire_at - now() + 1.0)
        delay = min(delay, due)
    return delay


async def schedules_loop():
    while True:
        await load_schedules()
        SCHED["dirty"].clear()
        try:
            async with asyncio.timeout(refresh_delay()):
                await SCHED["dirty"].wait()
        except TimeoutError:
            pass


async def on_schedules_click(event):
    target = event.target.closest("[data-schedule-action]")
    if not target:
        return
    action, name = str(target.dataset.scheduleAction), str(target.dataset.name)
    if action in ("delete", "keep"):
        SCHED["confirm"] = name if action == "delete" else None
        render_schedules()
        return
    SCHED["error"] = None
    try:
        if action == "confirm-delete":
            SCHED["confirm"] = None
            SCHED["pending"].pop(name, None)
            await client.schedules.delete(name)
            SCHED["items"] = [item for item in SCHED["items"] if item.name != name]
        else:
            changed = await getattr(client.schedules, action)(name)
            SCHED["pending"][name] = changed
            SCHED["items"] = [changed if item.name == name else item for item in SCHED["items"]]
    except Exception as exc:
        SCHED["error"] = f"Could not {action.replace('confirm-', '')} schedule {name}: {describe_error(exc)[1]}"
    render_schedules()
    SCHED["dirty"].set()


async def ticker():
    """Once a second: every countdown in the page."""
    while True:
        await asyncio.sleep(1)
        tick_countdowns()


# -- status line and alerts -------------------------------------------------------------------------
def render_status():
    action_error = actions.error if UI["action_failed"] else None  # until the next action or selection
    problem = runs.error or action_error or (
        detail.error if detail.error_code not in (None, "run_failed", "run_not_found") else None)
    set_text("error", problem or "")
    show("error", bool(problem))
    body.errorCode = runs.error_code or (actions.error_code if action_error else "") or (
        detail.error_code if detail.error_code != "run_failed" else "") or ""
    if body.state != "ready":
        return
    down = "server_unavailable" in (runs.error_code, detail.error_code)
    if down:
        set_text("status", f"Reconnecting… the server at {API} is unreachable; the table shows what it last knew.")
        body.feed = "reconnecting"
    elif runs.error:
        set_text("status", f"Not live: {runs.error}")
        body.feed = "offline"
    else:
        set_text("status", f"Live: runs on the server at {API}.")
        body.feed = "live"


# -- actions ----------------------------------------------------------------------------------------
def select(run_id):
    UI["action_failed"] = False
    detail.set_run_id(run_id)
    render_runs(runs)


async def act(action, run_id):
    UI["action_failed"] = False
    if action == "retry":
        await actions.retry(run_id)
        if detail.run_id == run_id:
            detail.refresh()
    elif action == "cancel":
        await actions.cancel(run_id)
    elif action == "confirm-delete":
        UI["confirm_delete"] = None
        await actions.delete_run(run_id)
        if detail.run_id == run_id:
            detail.set_run_id(None)


async def on_table_click(event):
    target = event.target
    action = target.dataset.action
    run_id = target.dataset.runId
    if not action or not run_id:
        return
    run_id, action = str(run_id), str(action)
    if action == "details":
        select(run_id)
    elif action == "send-event":
        shown = next((run for run in runs.runs if run.id == run_id), None)
        select(run_id)
        await detail.wait_for(lambda s: s.run_id != run_id or s.run is not None or s.error is not None)
        render_detail(detail)
        focus_event_form(shown.wait.events[0] if shown is not None and shown.wait and shown.wait.events else None)
    elif action in ("delete", "keep"):
        UI["confirm_delete"] = run_id if action == "delete" else None
        render_runs(runs)
    else:
        try:
            await act(action, run_id)
        except Exception:
            UI["action_failed"] = True  # actions.error has the message
        render_runs(runs)


def on_filter(event):
    UI["action_failed"] = False
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
    """The job filter's choices; a ?job= the server does not know is named in the notice."""
    select_job = js.document.getElementById("job-filter")
    try:
        jobs = await client.jobs()
    except Exception:
        jobs = None  # runs.error says what is wrong with the server
    names = sorted(info.name for info in jobs or [])
    for name in names:
        select_job.append(element("option", name, value=name))
    wanted = SETTINGS["job"]
    if wanted and jobs is not None and wanted not in names:
        NOTES.append(f"no job named {wanted!r} on this server ({', '.join(names) or 'it has none'}): showing every job")
        runs.set_filter(job_name=None, status=runs.status)
    elif wanted and wanted not in names:
        select_job.append(element("option", wanted, value=wanted))
    select_job.value = runs.job_name or ""
    js.document.getElementById("status-filter").value = runs.status[0] if runs.status else ""


def show_notes():
    set_text("notice", "Ignored in the address: " + "; ".join(NOTES) + "." if NOTES else "")
    show("notice", bool(NOTES))


async def main():
    show_notes()
    bind(runs, render_runs)
    bind(detail, render_detail)
    actions.subscribe(lambda _: render_status())
    on("runs", "click", on_table_click, report)
    on("job-filter", "change", on_filter, report)
    on("status-filter", "change", on_filter, report)
    on("prev", "click", lambda event: runs.prev_page(), report)
    on("next", "click", lambda event: runs.next_page(), report)
    on("new-run", "click", new_run, report)
    on("detail", "click", on_detail_click, report)
    on("event-form", "submit", send_event, report, prevent_default=True)
    on("schedules", "click", on_schedules_click, report)
    SCHED["dirty"] = asyncio.Event()
    spawn(schedules_loop())
    spawn(ticker())
    js.document.getElementById("new-run").disabled = False
    set_text("status", f"Connecting to the stepstone server at {API}…")
    await load_jobs()
    show_notes()
    await runs.ready()
    UI["loaded"] = True
    body.readyAt = str(js.Date.now())
    body.state = "ready"
    render_runs(runs)


try:
    await main()  # noqa: F704 - PyScript runs page scripts with top-level await
except Exception as exc:  # say so, instead of a traceback and a page that never becomes ready
    set_text("error", f"The dashboard failed to start: {type(exc).__name__}: {exc}")
    show("error", True)
    body.state = "error"
    js.console.warn(f"stepstone dashboard: {type(exc).__name__}: {exc}")
