"""Worker mode (PyScript, main thread): the engine runs in a dedicated Web Worker of this tab
(worker_engine.py, started by worker.html's head script), and this page drives it through the
hooks, exactly as local mode drives an Engine: ``use_job(worker, "busy-steps")``.

The same jobs (worker_jobs.py) can also run in this page (local mode, on IndexedDB) to compare:
the page measures the longest gap between its animation frames while a run executes.

``?store=opfs`` (default) or ``?store=indexeddb``, ``?db=NAME`` (default ``stepstone-worker``).
With OPFS, one tab's worker holds the database and executes every run; the workers of the other
tabs forward to it and the next one takes over when that tab closes.
"""

import asyncio

import js
import pyodide_js
from pyodide.http import pyfetch

import stepstone
from stepstone import InvalidInput, StepstoneError
from stepstone.browser.worker import start_worker
from stepstone.hooks import LocalStorage, use_job, use_runs
from stepstone.hooks.dom import ListView, bind, element, field_value, on, progress_text, set_progress, set_text, show

js.window.pyodide = pyodide_js  # tests drive this page's Python through it

PAGE = js.window.stepstonePage
TAB, STORE, DB = str(PAGE.tab), str(PAGE.store), str(PAGE.db)
body = js.document.body.dataset
PLACES = {"worker": "in the worker", "page": "in this page"}


class Mode:
    """Where runs execute: the worker (a WorkerSource) or this page (an Engine on IndexedDB)."""

    def __init__(self, name, source):
        self.name = name
        self.source = source
        storage = LocalStorage(prefix=f"stepstone-worker-page:{name}:")
        self.job = use_job(source, "busy-steps", storage=storage)
        self.runs = use_runs(source, page_size=8)
        self.measuring = None  # the run whose stall the meter measures
        self.job.subscribe(self.on_change)

    def on_change(self, state):
        meter = js.window.stallMeter
        if state.status == "running" and self.measuring is None and not meter.running:
            self.measuring = state.current_run_id  # a run resumed here (after a reload, another tab)
            meter.start()
        if self.measuring is not None and (state.current_run_id != self.measuring or state.is_terminal):
            self.measuring = None
            stall = float(meter.stop())
            set_text(f"stall-{self.name}", f"{stall:.0f} ms")
            setattr(body, "stall" + self.name.title(), f"{stall:.1f}")
            grade()


MODES = {}
SELECTED = {"mode": "worker"}


def grade():
    shown = {name: js.document.getElementById(f"stall-{name}").textContent for name in PLACES}
    if all(text.endswith(" ms") for text in shown.values()):
        best = min(PLACES, key=lambda name: float(shown[name][:-3]))
        for name in PLACES:
            js.document.getElementById(f"stall-{name}-box").className = "best" if name == best else "worst"


# -- rendering ---------------------------------------------------------------------------------
def step_item(view):
    item = element("li", None, view.status, data_name=view.name)
    note = view.status if view.duration_ms is None else f"{view.status} in {view.duration_ms / 1000:.2f} s"
    item.append(element("span", view.name), element("small", "running…" if view.status == "running" else note))
    return item


def log_item(entry):
    line = element("li", None, None, data_seq=entry.seq)
    line.append(element("span", f"#{entry.seq} ", "seq"), element("span", f"{entry.level}: {entry.message}"))
    return line


def run_row(run):
    row = element("tr", None, "current" if run.id == mode().job.current_run_id else None, data_run_id=run.id)
    status = element("td")
    status.append(element("span", run.status, f"badge {run.status}"))
    created = str(js.Date.new(run.created_at * 1000).toLocaleTimeString())
    row.append(element("td", run.id[-12:], "mono"), element("td", run.job_name), status,
               element("td", progress_text(run.progress)), element("td", created))  # fmt: skip
    return row


STEPS = ListView("steps", key=lambda v: v.name, render=step_item)
LOGS = ListView("log", key=lambda e: e.seq, render=log_item)
ROWS = ListView("runs", key=lambda r: (r.id, r.version, r.status), render=run_row)


def mode():
    return MODES[SELECTED["mode"]]


def render(_state=None):
    if not MODES:
        return
    current = mode()
    job = current.job
    show("current", job.current_run_id is not None)
    set_text("run-id", job.current_run_id or "")
    set_text("run-status", job.status or "")
    js.document.getElementById("run-status").className = f"badge {job.status or ''}"
    set_text("run-place", PLACES[current.name])
    set_progress("progress", job.progress)
    set_text("progress-text", progress_text(job.progress))
    STEPS.update(job.steps)
    LOGS.update(job.logs)
    show("cancel", job.is_active)
    ROWS.update(current.runs.runs)
    set_text("runs-total", f"({current.runs.total} {PLACES[current.name]}'s store)")
    body.mode = current.name
    body.run = job.current_run_id or ""
    body.runStatus = job.status or ""


# -- actions -----------------------------------------------------------------------------------
PAGE_ENGINE = asyncio.Lock()


async def page_engine():
    """The same jobs on an engine in this page (local mode), started the first time it is used."""
    async with PAGE_ENGINE:
        if "page" in MODES:
            return MODES["page"]
        text = await (await pyfetch("/worker_jobs.py", cache="no-store")).string()
        with open("/home/pyodide/worker_jobs.py", "w") as out:
            out.write(text)
        import worker_jobs

        engine = stepstone.create_engine(f"indexeddb://{DB}-page", owner=f"tab-{TAB}-page")
        worker_jobs.register(engine, TAB, "page")
        await engine.init()
        MODES["page"] = Mode("page", engine)
        bind(MODES["page"].job, render)
        bind(MODES["page"].runs, render)
        return MODES["page"]


async def start_run(event):
    show("input-error", "")
    selected = "page" if js.document.getElementById("mode-page").checked else "worker"
    target = await page_engine() if selected == "page" else MODES["worker"]
    SELECTED["mode"] = selected
    payload = {
        "steps": field_value(js.document.getElementById("steps-input").value),
        "seconds": field_value(js.document.getElementById("seconds-input").value),
        "cpu": js.document.getElementById("kind-input").value == "cpu",
    }
    render()
    js.window.stallMeter.start()
    try:
        run = await target.job.trigger(payload)
    except InvalidInput as exc:
        js.window.stallMeter.stop()
        show("input-error", f"Invalid input: {exc}")
        return
    target.measuring = run.id


async def cancel(event):
    current = mode()
    if current.job.current_run_id is None:
        return
    try:
        await current.source.cancel(current.job.current_run_id)
    except StepstoneError as exc:
        show("error", f"Cancel failed: {exc}")


def fatal(message):
    show("error", message)
    set_text("status", "")
    body.state = "error"


async def watch_role(source):
    """Which tab's worker executes the runs: this one, or another tab's (OPFS, one holder)."""
    while True:
        try:
            info = await source.describe()
        except StepstoneError:  # the executing tab just closed: this tab's worker is taking over
            await asyncio.sleep(0.5)
            continue
        executes_here = info.get("tab") == TAB
        body.role = "engine" if executes_here else "relay"
        body.leader = str(info.get("tab"))
        where = "this tab's worker executes" if executes_here else f"the worker of tab {info.get('tab')} executes"
        take_over = "" if executes_here else " (this tab takes over if that one closes)"
        set_text("status", f"Ready: {where} the runs of {STORE}{take_over}. This is tab {TAB}.")
        await asyncio.sleep(2)


# -- start -------------------------------------------------------------------------------------
async def main():
    set_text("store-name", STORE)
    body.tab = TAB
    body.store = STORE
    try:
        worker = await start_worker(worker=js.window.stepstoneWorker, timeout=90)
    except StepstoneError as exc:
        fatal(f"The worker could not start: {exc}")
        return
    MODES["worker"] = Mode("worker", worker)
    bind(MODES["worker"].job, render)
    bind(MODES["worker"].runs, render)
    on("start-form", "submit", start_run, lambda exc: fatal(f"Unexpected error: {exc}"), prevent_default=True)
    on("cancel", "click", cancel)
    on("mode-page", "change", lambda e: asyncio.ensure_future(select("page")))
    on("mode-worker", "change", lambda e: asyncio.ensure_future(select("worker")))
    asyncio.ensure_future(watch_role(worker))
    await MODES["worker"].job.ready(timeout=30)
    render()
    js.document.getElementById("start").disabled = False
    body.readyAt = str(js.Date.now())
    body.state = "ready"


async def select(name):
    if name == "page":
        await page_engine()
    SELECTED["mode"] = name
    render()


await main()  # noqa: F704 - PyScript runs page scripts with top-level await
