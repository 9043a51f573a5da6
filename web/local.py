"""Local mode (PyScript, main thread): a stepstone engine runs in this tab on IndexedDB.

The page defines a demo job, starts runs from a form, shows the current run live (progress bar,
steps, log) and the past runs stored in this browser. A run whose tab was closed or reloaded is
resumed by the next tab that opens this page, at its first unfinished step; two open tabs share the
work and never execute one run twice at once (the store's lease, plus Web Locks).

``?db=NAME`` picks the IndexedDB database (default ``stepstone-local``).
"""

import asyncio
import uuid

import js
import pyodide_js
from pyodide.ffi import create_proxy

import stepstone
from stepstone import InvalidInput, StepstoneError
from stepstone.hooks.dom import field_value

js.window.pyodide = pyodide_js  # tests and benchmarks drive this page's Python through it

document = js.document
PARAMS = js.URLSearchParams.new(js.location.search)
DB = str(PARAMS.get("db") or "stepstone-local")
TAB = uuid.uuid4().hex[:6]
ACTIVE = ("pending", "running")


# -- the demo job ------------------------------------------------------------------------------
def check_input(payload):
    """The demo's input: ``{"steps": 1..50, "seconds": 0..30}``; anything else is refused."""
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"steps": 10, "seconds": 1}')
    unknown = sorted(set(payload) - {"steps", "seconds"})
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    steps = payload.get("steps", 10)
    seconds = payload.get("seconds", 1.0)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 50:
        raise ValueError(f"steps must be a whole number from 1 to 50, not {steps!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 30:
        raise ValueError(f"seconds per step must be a number from 0 to 30, not {seconds!r}")
    return {"steps": steps, "seconds": float(seconds)}


@stepstone.job("demo-steps", version="1", input=check_input)
async def demo_steps(step, payload):
    n, seconds = payload["steps"], payload["seconds"]
    step.log.info(f"execution started in tab {TAB} (attempt {step.attempt})", tab=TAB)
    for i in range(1, n + 1):

        async def work(i=i):
            await asyncio.sleep(seconds)
            step.log.info(f"step {i} of {n} done in tab {TAB}", tab=TAB, index=i)
            step.progress(i, n, f"step {i} of {n}")
            return {"step": i, "tab": TAB}

        await step.run(f"step-{i}", work)
    return {"steps": n, "finished_in_tab": TAB}


ENGINE = stepstone.create_engine(f"indexeddb://{DB}", owner=f"tab-{TAB}")
DEMO = ENGINE.register(demo_steps)


# -- DOM helpers -------------------------------------------------------------------------------
def el(element_id):
    return document.getElementById(element_id)


def make(tag, text=None, cls=None):
    node = document.createElement(tag)
    if text is not None:
        node.textContent = str(text)
    if cls:
        node.className = cls
    return node


def show(element_id, message):
    node = el(element_id)
    node.textContent = message
    node.hidden = not message


def fatal(message):
    show("error", message)
    show("status", "")
    document.body.dataset.state = "error"
    el("start").disabled = True


def clock(ts):
    return str(js.Date.new(ts * 1000).toLocaleTimeString()) if ts else ""


def spawn(coro):
    task = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(_task_done)
    return task


def _task_done(task):
    TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        show("error", f"Unexpected error: {type(exc).__name__}: {exc}")


TASKS = set()


# -- the current run ---------------------------------------------------------------------------
class RunView:
    """Shows one run: rebuilt from its event log (seq 0 on), then live as events arrive."""

    def __init__(self):
        self.run_id = None
        self.task = None
        self.steps = {}

    def follow(self, run_id):
        if self.task is not None and not self.task.done():
            if self.run_id == run_id:
                return
            self.task.cancel()
        self.run_id = run_id
        document.body.dataset.run = run_id
        self.task = spawn(self._follow(run_id))

    async def _follow(self, run_id):
        run = await ENGINE.get_run(run_id)
        if run is None:
            return
        self._reset(run)
        async for event in ENGINE.subscribe(run_id):
            self._apply(event)
        run = await ENGINE.get_run(run_id)
        if run is not None:
            self._status(run.status)

    def _reset(self, run):
        el("current").hidden = False
        el("run-id").textContent = run.id
        el("log").replaceChildren()
        steps = el("steps")
        steps.replaceChildren()
        self.steps = {}
        total = (run.input or {}).get("steps", 0) if isinstance(run.input, dict) else 0
        for i in range(1, total + 1):
            item = make("li", None, "pending")
            item.append(make("span", f"Step {i}"), make("small", "waiting"))
            item.dataset.name = f"step-{i}"
            steps.append(item)
            self.steps[f"step-{i}"] = item
        self._progress(run.progress.current if run.progress else 0, total or 1, "")
        self._status(run.status)

    def _status(self, status):
        badge = el("run-status")
        badge.textContent = status
        badge.className = f"badge {status}"
        document.body.dataset.runStatus = status
        el("cancel").hidden = status not in ACTIVE
        el("retry").hidden = status not in ("failed", "cancelled")

    def _progress(self, current, total, message):
        bar = el("progress")
        bar.max = total or 1
        bar.value = current
        el("progress-text").textContent = message or f"{current:g} of {total:g}"

    def _step(self, name, state, note):
        item = self.steps.get(name)
        if item is not None:
            item.className = state
            item.lastChild.textContent = note

    def _end_running_steps(self, state):
        """The run ended (or a new execution began) while a step ran: nothing else will end it."""
        for item in self.steps.values():
            if item.className == "running":
                item.className = state
                item.lastChild.textContent = state

    def _apply(self, event):
        data = dict(event.data or {})
        kind = event.type
        text = kind
        if kind == "run:start":
            self._end_running_steps("interrupted")  # an earlier execution stopped mid-step
            self._status("running")
            text = f"run:start (attempt {data.get('attempt')})"
        elif kind == "step:start":
            self._step(data.get("name"), "running", "running…")
            text = f"step:start {data.get('name')}"
        elif kind == "step:complete":
            self._step(data.get("name"), "completed", f"done in {data.get('durationMs', 0) / 1000:.2f} s")
            text = f"step:complete {data.get('name')}"
        elif kind == "step:fail":
            self._step(data.get("name"), "failed", "failed")
            text = f"step:fail {data.get('name')}: {data.get('error')}"
        elif kind == "run:progress":
            self._progress(data.get("current", 0), data.get("total") or 1, data.get("message"))
            text = f"run:progress {data.get('message') or data.get('current')}"
        elif kind == "log:write":
            text = f"{data.get('level', 'info')}: {data.get('message')}"
        elif kind in ("run:complete", "run:fail", "run:cancel"):
            self._end_running_steps("cancelled" if kind == "run:cancel" else "interrupted")
            self._status({"run:complete": "completed", "run:fail": "failed", "run:cancel": "cancelled"}[kind])
            if kind == "run:fail":
                text = f"run:fail {data.get('error')}"
        elif kind == "run:retry":
            self._status("pending")
        line = make("li")
        line.append(make("span", f"#{event.seq} ", "seq"), make("span", f"{clock(event.at)} {text}"))
        line.dataset.seq = str(event.seq)
        line.dataset.type = kind
        log = el("log")
        log.append(line)
        log.scrollTop = log.scrollHeight


VIEW = RunView()


# -- past runs ---------------------------------------------------------------------------------
async def refresh_runs():
    runs = await ENGINE.get_runs(limit=20)
    body = el("runs")
    rows = []
    for run in runs:
        row = make("tr", None, "current" if run.id == VIEW.run_id else None)
        row.dataset.runId = run.id
        progress = f"{run.progress.current:g} / {run.progress.total:g}" if run.progress and run.progress.total else ""
        badge = make("span", run.status, f"badge {run.status}")
        cells = [make("td", run.id[-12:], "mono"), make("td"), make("td", progress), make("td", clock(run.created_at))]
        cells[1].append(badge)
        view = make("button", "Show", "secondary")
        view.type = "button"
        view.dataset.runId = run.id
        action = make("td")
        action.append(view)
        row.append(*cells, action)
        rows.append(row)
    body.replaceChildren(*rows)
    el("runs-total").textContent = f"({runs.total} in this browser)"


async def watch_runs():
    """Refresh the table whenever any run changes, in this tab or another one (at most 10 times a second)."""
    dirty = asyncio.Event()
    dirty.set()

    async def mark():
        async for _change in ENGINE.subscribe_runs():
            dirty.set()

    spawn(mark())
    while True:
        await dirty.wait()
        dirty.clear()
        await refresh_runs()
        await asyncio.sleep(0.1)


# -- actions -----------------------------------------------------------------------------------
async def start_run():
    show("input-error", "")
    payload = {"steps": field_value(el("steps-input").value), "seconds": field_value(el("seconds-input").value)}
    try:
        run = await DEMO.trigger(payload)
    except InvalidInput as exc:
        show("input-error", f"Invalid input: {exc}")
        return
    VIEW.follow(run.id)


async def act(action):
    if VIEW.run_id is None:
        return
    try:
        await (ENGINE.cancel if action == "cancel" else ENGINE.retry)(VIEW.run_id)
    except StepstoneError as exc:
        show("error", f"{action.title()} failed: {exc}")
        return
    if action == "retry":
        VIEW.task = None
        VIEW.follow(VIEW.run_id)


def on_submit(event):
    event.preventDefault()
    spawn(start_run())


def on_runs_click(event):
    run_id = event.target.dataset.runId
    if event.target.tagName == "BUTTON" and run_id:
        VIEW.follow(str(run_id))


HANDLERS = {
    "start-form": ("submit", create_proxy(on_submit)),
    "runs": ("click", create_proxy(on_runs_click)),
    "cancel": ("click", create_proxy(lambda e: spawn(act("cancel")))),
    "retry": ("click", create_proxy(lambda e: spawn(act("retry")))),
}


# -- start -------------------------------------------------------------------------------------
async def main():
    show("status", f"Opening the IndexedDB database “{DB}”…")
    try:
        await ENGINE.init()
    except StepstoneError as exc:
        fatal(f"Storage error: {exc}")
        return
    except Exception as exc:  # a JS error the store did not expect
        fatal(f"Storage error: {type(exc).__name__}: {exc}")
        return
    for element_id, (kind, handler) in HANDLERS.items():
        el(element_id).addEventListener(kind, handler)
    active = await ENGINE.get_runs(status=ACTIVE, limit=1)
    latest = active or await ENGINE.get_runs(limit=1)
    if latest:  # an unfinished run first: this tab (or another) is resuming it
        VIEW.follow(latest[0].id)
    spawn(watch_runs())
    el("start").disabled = False
    body = document.body.dataset
    body.tab = TAB
    body.readyAt = str(js.Date.now())
    body.state = "ready"
    show("status", f"Ready: tab {TAB} executes runs stored in IndexedDB database “{DB}”.")


await main()  # noqa: F704 - PyScript runs page scripts with top-level await
