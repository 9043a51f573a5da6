"""``use_job_run`` and ``use_job_logs``: follow one run's log and keep its state current.

A ``RunState`` loads the run, replays its log from seq 0 (logs, steps, stream items), then tails it
live until the terminal event: one ``subscribe`` stream, so no log line is ever shown twice. Status
comes from the snapshot for everything the snapshot already covers and from events after it. A
server that goes away is retried (``error`` says so meanwhile) and the stream resumes where it
stopped. Completion callbacks fire once per attempt, and only for a run this state saw active.

Stdlib + asyncio only; must never import js, pyodide or httpx.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .._errors import RunNotFound, ServerUnavailable, StepstoneError
from .._models import ACTIVE_STATUSES, TERMINAL_STATUSES, Event, Progress, Run, RunStatus, Wait
from ._base import HookState, RunCallback, TerminalCallbacks, backoff_delays, log
from ._source import Source

__all__ = ["LogEntry", "LogsState", "RunState", "StepView", "use_job_logs", "use_job_run"]

TerminalHook = Callable[[Run, bool], None]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One ``step.log`` line of a run."""

    seq: int
    run_id: str
    level: str
    message: str
    data: Any = None
    step: str | None = None
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "runId": self.run_id,
            "level": self.level,
            "message": self.message,
            "data": self.data,
            "step": self.step,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class StepView:
    """A step as the run's log tells it.

    ``status`` is ``running`` (its body runs), ``waiting`` (a sleep, an event wait or a child run:
    the run may be ``suspended`` meanwhile), ``retrying`` (an attempt failed, another comes at
    ``until``), ``completed``, ``failed`` or ``cancelled`` (its body was interrupted by a cancel);
    or, for a step that started but never ended, ``cancelled`` (the run was cancelled while it
    ran or waited) or ``interrupted`` (its execution ended without finishing it: a crash, a
    restart, a lost lease).

    ``kind`` says what the step is: ``None`` for ``step.run``, ``"sleep"``, ``"event"`` or
    ``"invoke"``. ``until`` is when a waiting step stops waiting (a sleep's wake time, an event
    wait's deadline, or None) or when a ``retrying`` step's next attempt starts; ``event`` is the
    event name an event wait takes, ``child_id`` the child run of an invoke, ``attempt`` the
    attempt of ``step.run(..., retries=N)`` the view is about (1 when it has no retries).

    ``index`` is the engine's 0-based position of the step within its execution; ``duration_ms``
    is how long it ran or waited (until it ended, or until the run ended around it). One view per
    step name: a step re-run by a resumed execution or a retry replaces its earlier view.
    """

    name: str
    index: int
    status: str
    error: str | None = None
    duration_ms: float | None = None
    kind: str | None = None
    until: float | None = None
    event: str | None = None
    child_id: str | None = None
    attempt: int = 1

    @property
    def is_open(self) -> bool:
        """Started and not ended (yet): running, waiting, or between two attempts."""
        return self.status in _OPEN

    @property
    def is_waiting(self) -> bool:
        """A sleep, an event wait or a child run that has not got its answer yet."""
        return self.status == "waiting"


_OPEN = frozenset({"running", "waiting", "retrying"})
_STEP_STATUS = {"step:start": "running", "step:complete": "completed", "step:fail": "failed",
                "step:cancel": "cancelled", "step:retry": "retrying"}  # fmt: skip
_WAITS = frozenset({"sleep", "event", "invoke"})

#: What a step still open becomes when its run or its execution ends around it. A resumed
#: execution (``run:resume``) ends only the steps whose body was running: sleeps, event waits,
#: child runs and retries still waiting are ended by their own events when the replay reaches them.
_UNFINISHED = {"run:cancel": "cancelled", "run:fail": "interrupted", "run:complete": "interrupted",
               "run:start": "interrupted", "run:resume": "interrupted"}


class RunState(TerminalCallbacks, HookState):
    """The live state of one run (see :func:`use_job_run`)."""

    def __init__(
        self, source: Source, run_id: str | None = None, *, max_logs: int | None = None, initial: Run | None = None
    ) -> None:
        super().__init__()
        if max_logs is not None and max_logs < 1:
            raise ValueError(f"max_logs must be >= 1 or None, not {max_logs!r}")
        self.source = source
        self.max_logs = max_logs
        self._callbacks_by_status: dict[str, list[RunCallback]] = {"completed": [], "failed": [], "cancelled": []}
        self._terminal_hooks: list[TerminalHook] = []
        self._follow: asyncio.Task[None] | None = None
        self._refresh_pending = False
        self._reset(run_id)
        if run_id is not None:
            self._start(initial)
        else:
            self._ready.set()

    # -- fields ----------------------------------------------------------------------------------
    def _reset(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.run: Run | None = None
        self.status: str | None = None
        self.output: Any = None
        self.progress: Progress | None = None
        self.logs: list[LogEntry] = []
        self.steps: list[StepView] = []
        self._step_started: dict[str, float] = {}
        self.items: list[Any] = []
        self._run_error: str | None = None
        self._next_seq = 0
        self._snap_seq = -1
        self._snapshot: Run | None = None
        self._catching_up = False
        self._log_attempt = 1  # 1 + the run:retry events read so far (the log is read from seq 0)
        self._watch_from: int | None = None  # the first seq written after we first looked
        self._active_attempt: int | None = None
        self._settled_attempt: int | None = None
        self._problem = None
        self._problem_code = None
        self._refresh_pending = False

    @property
    def error(self) -> str | None:
        """The problem reaching the run (server down, 401, not found), else the run's own error."""
        return self._problem if self._problem is not None else self._run_error

    @property
    def error_code(self) -> str | None:
        if self._problem_code is not None:
            return self._problem_code
        return "run_failed" if self.status == "failed" else None

    @property
    def is_following(self) -> bool:
        """True while this state holds a stream (or retries one); False once the run ended."""
        return self._follow is not None and not self._follow.done()

    @property
    def last_seq(self) -> int:
        """The seq of the last event applied (-1 before any)."""
        return self._next_seq - 1

    is_pending = property(lambda self: self.status == "pending", doc="The run waits for a worker.")
    is_running = property(lambda self: self.status == "running", doc="A worker executes the run.")
    is_completed = property(lambda self: self.status == "completed", doc="The run finished with an output.")
    is_failed = property(lambda self: self.status == "failed", doc="The run failed; ``error`` says why.")
    is_cancelled = property(lambda self: self.status == "cancelled", doc="The run was cancelled.")
    is_suspended = property(
        lambda self: self.status == "suspended",
        doc="The run is parked (asleep, waiting for an event, its children or a retry): see ``wait``.",
    )
    is_active = property(lambda self: self.status in ACTIVE_STATUSES, doc="Pending, running or suspended.")
    is_terminal = property(
        lambda self: self.status in TERMINAL_STATUSES, doc="Completed, failed or cancelled."
    )

    @property
    def wait(self) -> Wait | None:
        """While the run is ``suspended``: what it waits for (``reason``: ``sleep``, ``event``,
        ``children`` or ``retry``; ``until``, ``events``, ``children``), else None."""
        run = self.run
        return run.wait if run is not None and self.status == "suspended" else None

    @property
    def parent_id(self) -> str | None:
        """The run that invoked this one (``step.invoke``), else None."""
        return self.run.parent_id if self.run is not None else None

    @property
    def parent_step(self) -> str | None:
        """The parent's step that invoked this run, else None."""
        return self.run.parent_step if self.run is not None else None

    # -- control ---------------------------------------------------------------------------------
    def set_run_id(self, run_id: str | None, initial: Run | None = None) -> None:
        """Follow another run (or none); the state starts over."""
        if run_id == self.run_id and run_id is not None and self._follow is not None:
            return
        self._stop_follow()
        self._reset(run_id)
        self._ready.clear()
        if run_id is not None:
            self._start(initial)
        else:
            self._ready.set()
        self._changed()

    def refresh(self) -> None:
        """Pick the run up again after its stream ended (it was retried, or a 401 was fixed). Asked
        while the stream is still winding down (the run just finished, and was retried at once),
        it is done as soon as that stream has ended."""
        if self.run_id is None or self.closed:
            return
        if self._follow is None or self._follow.done():
            self._start(None)
        else:
            self._refresh_pending = True

    def clear_logs(self) -> None:
        """Forget the log lines shown so far (new ones still arrive)."""
        self.logs = []
        self._changed()

    def _start(self, initial: Run | None) -> None:
        if initial is not None:  # known now: show it before the first await
            self.run, self.status, self.output = initial, initial.status, initial.output
            self.progress, self._run_error = initial.progress, initial.error
        self._follow = self._spawn(self._follow_run(self.run_id or "", initial), f"stepstone-run-{self.run_id}")

    def _stop_follow(self) -> None:
        if self._follow is not None and not self._follow.done():
            self._follow.cancel()
        self._follow = None

    # -- following -------------------------------------------------------------------------------
    async def _follow_run(self, run_id: str, snapshot: Run | None) -> None:
        try:
            await self._follow_loop(run_id, snapshot)
        finally:
            if not self.closed and self.run_id == run_id:
                self._loop.call_soon(self._changed)  # is_following turned False
                if self._refresh_pending:  # asked while this stream wound down: once it is done
                    self._refresh_pending = False
                    self._loop.call_soon(self.refresh)

    async def _follow_loop(self, run_id: str, snapshot: Run | None) -> None:
        next_delay = backoff_delays()
        while True:
            try:
                if snapshot is None:
                    snapshot = await self.source.get_run(run_id)
                    if snapshot is None:
                        raise RunNotFound(f"run {run_id!r} not found (it may have been deleted)")
                self._apply_snapshot(snapshot)
                if snapshot.is_terminal and snapshot.last_seq < self._next_seq:
                    return
                async for event in self.source.subscribe(run_id, from_seq=self._next_seq):
                    self._apply_event(event)
                return
            except ServerUnavailable as exc:
                self._ready.set()
                self._set_problem(exc)
                await asyncio.sleep(next_delay())
                snapshot = None
            except StepstoneError as exc:  # not found, unauthorized, ...: retrying will not help
                self._ready.set()
                self._set_problem(exc)
                return

    def _apply_snapshot(self, run: Run) -> None:
        self._snapshot = run
        self._snap_seq = run.last_seq
        if self._watch_from is None:
            self._watch_from = run.last_seq + 1
        if run.status in ACTIVE_STATUSES:
            self._active_attempt = run.attempt
        self._problem = None
        self._problem_code = None
        # Until the log is read up to the snapshot, the fields keep showing the older state: the
        # status and the log lines change together.
        self._catching_up = run.last_seq >= self._next_seq
        if not self._catching_up:
            self._caught_up()

    def _caught_up(self) -> None:
        run = self._snapshot
        if run is not None and (self.run is None or run.last_seq >= self.run.last_seq):
            self.run = run
            self.status = run.status
            self.output = run.output
            self._run_error = run.error
            self.progress = run.progress
        self._ready.set()
        self._changed()
        self._settle()

    def _apply_event(self, event: Event) -> None:
        self._next_seq = event.seq + 1
        data = event.data
        kind = event.type
        if kind == "run:retry":
            self._log_attempt += 1
        elif kind in ("run:start", "run:resume", "run:suspend") and isinstance(data.get("attempt"), int):
            self._log_attempt = int(data["attempt"])  # a job's own retries count attempts too
        if self._watch_from is not None and event.seq >= self._watch_from and not event.is_terminal:
            self._active_attempt = self._log_attempt  # it was active while we were watching
        if kind == "log:write":
            self.logs.append(
                LogEntry(
                    event.seq,
                    event.run_id,
                    str(data.get("level", "info")),
                    str(data.get("message", "")),
                    data.get("data"),
                    data.get("step"),
                    event.at,
                )
            )
            if self.max_logs is not None and len(self.logs) > self.max_logs:
                del self.logs[: len(self.logs) - self.max_logs]
        elif kind.startswith("step:"):
            self._apply_step(event)
        elif kind in _UNFINISHED:
            self._end_open_steps(event)
        elif kind == "stream":
            self.items.append(data.get("value"))
        if event.seq > self._snap_seq:  # newer than the snapshot: the event decides the status
            self._apply_status(event)
        if self._catching_up:
            if event.seq >= self._snap_seq:
                self._catching_up = False
                self._caught_up()
            return
        self._changed()
        if event.is_terminal:
            self._settle()

    def _apply_step(self, event: Event) -> None:
        data = event.data
        name = str(data.get("name", ""))
        index = int(data.get("index", len(self.steps)))
        status = _STEP_STATUS.get(event.type)
        if status is None:
            return
        position = next((i for i, view in enumerate(self.steps) if view.name == name), None)
        earlier = self.steps[position] if position is not None else None
        kind = data.get("kind")
        kind = str(kind) if kind in _WAITS else earlier.kind if earlier is not None else None
        duration = data.get("durationMs")
        if status == "running":
            if kind in _WAITS:
                status = "waiting"
            self._step_started[name] = event.at
        else:
            started = self._step_started.pop(name, None)
            if duration is None and kind in _WAITS and started is not None and event.at >= started:
                duration = round((event.at - started) * 1000, 3)  # how long it waited
        until = data.get("until", data.get("deadline"))
        if event.type == "step:retry":
            until = data.get("nextAttemptAt")
        elif until is None and earlier is not None and kind in _WAITS:
            until = earlier.until  # a wait's wake time or deadline stays known once it ends
        view = StepView(
            name, index, status, data.get("error"), duration, kind,
            until if isinstance(until, int | float) and not isinstance(until, bool) else None,
            _text(data.get("event")) or (earlier.event if earlier is not None else None),
            _text(data.get("childId")) or (earlier.child_id if earlier is not None else None),
            int(data.get("attempt") or (earlier.attempt if earlier is not None and status != "running" else 1)),
        )  # fmt: skip
        if position is not None:
            self.steps[position] = view
        else:
            self.steps.append(view)

    def _end_open_steps(self, event: Event) -> None:
        """The run ended (or a new execution started) while steps were open: nothing will end
        them in the log, so end them here (a step a new execution runs again starts over)."""
        status = _UNFINISHED[event.type]
        for i, view in enumerate(self.steps):
            if view.status == "running" or (view.is_open and event.type != "run:resume"):
                started = self._step_started.pop(view.name, None)
                duration = round((event.at - started) * 1000, 3) if started and event.at >= started else None
                self.steps[i] = dataclasses.replace(view, status=status, duration_ms=duration)

    def _apply_status(self, event: Event) -> None:
        data = event.data
        run = self.run
        attempt = run.attempt if run is not None else 1
        changes: dict[str, Any] = {}
        if event.type in ("run:start", "run:resume"):
            attempt = int(data.get("attempt", attempt))
            changes = {"status": "running", "attempt": attempt}
        elif event.type == "run:suspend":
            wait = self._wait_of(data)
            changes = {"status": "suspended", "wait": wait, "wake_at": wait.until}
            if isinstance(data.get("attempt"), int):  # the job retries the run itself after ``until``
                changes["attempt"] = data["attempt"]
            if data.get("error"):
                changes["error"] = self._run_error = str(data["error"])
        elif event.type == "run:progress":
            self.progress = Progress.from_json(data)
            changes = {"progress": self.progress}
        elif event.type == "run:retry":
            attempt = self._log_attempt
            changes = {"status": "pending", "attempt": attempt, "output": None, "error": None}
            self.output, self._run_error = None, None
        elif event.type == "run:complete":
            self.output = data.get("output")
            changes = {"status": "completed", "output": self.output, "finished_at": event.at}
        elif event.type == "run:fail":
            self._run_error = data.get("error")
            changes = {"status": "failed", "error": self._run_error, "finished_at": event.at}
        elif event.type == "run:cancel":
            changes = {"status": "cancelled", "finished_at": event.at}
        if "status" in changes:
            self.status = changes["status"]
        if run is not None:
            self.run = dataclasses.replace(run, last_seq=event.seq, **changes)

    def _wait_of(self, data: Any) -> Wait:
        """The wait a ``run:suspend`` event describes. The event counts the children; their ids
        are those of the invoke steps still waiting."""
        until = data.get("until")
        children = tuple(v.child_id for v in self.steps if v.kind == "invoke" and v.is_waiting and v.child_id)
        count = data.get("children")
        if isinstance(count, int) and not isinstance(count, bool) and count < len(children):
            children = children[:count]
        return Wait(
            str(data.get("reason") or ""),
            float(until) if isinstance(until, int | float) and not isinstance(until, bool) else None,
            tuple(str(name) for name in data.get("events") or ()),
            children,
        )

    def _settle(self) -> None:
        """The run is terminal: tell the owner and the callbacks, once per attempt."""
        run = self.run
        if run is None or not self.is_terminal:
            return
        run = dataclasses.replace(run, status=cast(RunStatus, self.status), output=self.output, error=self._run_error)
        self.run = run
        if self._settled_attempt == run.attempt:
            return
        self._settled_attempt = run.attempt
        live = self._active_attempt == run.attempt
        for hook in list(self._terminal_hooks):
            hook(run, live)
        if live:
            for callback in list(self._callbacks_by_status.get(run.status, ())):
                self._call(callback, run)

    def _call(self, callback: RunCallback, run: Run) -> None:
        try:
            result = callback(run)
            if asyncio.iscoroutine(result):
                self._spawn(result, "stepstone-run-callback")
        except Exception:
            log.exception("stepstone: a run callback failed")


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


class LogsState(RunState):
    """The log lines of one run (see :func:`use_job_logs`); ``clear_logs()`` empties the list."""


def use_job_run(source: Source, run_id: str | None, *, max_logs: int | None = None) -> RunState:
    """Follow one run: ``status``, ``output``, ``error``, ``progress``, ``logs``, ``steps``,
    ``items`` (a streaming job's values), ``is_running`` / ``is_completed`` / …

        state = use_job_run(client, run_id)
        state.on_complete(lambda run: print("done", run.output))
        await state.wait_for(lambda s: s.is_terminal, timeout=60)
        state.close()

    ``source`` is an Engine (local mode) or a Client (server mode). The stream stops at the
    terminal state; ``refresh()`` picks the run up again (after a retry), ``set_run_id`` follows
    another one. Call it from async code (a PyScript page's top level is fine).
    """
    return RunState(source, run_id, max_logs=max_logs)


def use_job_logs(source: Source, run_id: str | None, *, max_logs: int | None = 100) -> LogsState:
    """The log lines of one run, live, keeping the last ``max_logs`` (None keeps all)."""
    return LogsState(source, run_id, max_logs=max_logs)
