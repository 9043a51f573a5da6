"""Plain data the engine, the stores and the transports pass around. Stdlib only, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

__all__ = [
    "ACTIVE_STATUSES",
    "Event",
    "EVENT_TYPES",
    "Progress",
    "Run",
    "RunChange",
    "RunList",
    "RunStatus",
    "RUN_STATUSES",
    "StepRecord",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "TriggerResult",
    "Wait",
    "page_filter",
]

RunStatus = Literal["pending", "running", "suspended", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("pending", "running", "suspended", "completed", "failed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: Not finished yet: waiting to start, executing, or parked (``suspended``: asleep, waiting for an
#: event or for child runs, or for a retry; it holds no worker and no lease).
ACTIVE_STATUSES: frozenset[str] = frozenset({"pending", "running", "suspended"})

#: Every event type the engine writes into a run's log, in roughly the order they appear.
EVENT_TYPES: tuple[str, ...] = (
    "run:trigger",
    "run:start",
    "step:start",
    "step:complete",
    "step:fail",
    "step:cancel",
    "step:retry",
    "run:progress",
    "log:write",
    "stream",
    "run:suspend",
    "run:resume",
    "run:retry",
    "run:complete",
    "run:fail",
    "run:cancel",
)
TERMINAL_EVENTS: frozenset[str] = frozenset({"run:complete", "run:fail", "run:cancel"})


def page_filter(
    status: RunStatus | Iterable[RunStatus] | None, limit: int, offset: int
) -> tuple[RunStatus, ...] | None:
    """Check the arguments of ``get_runs`` (engine and client alike): one status, several or None
    becomes a tuple or None; an unknown status or a negative limit/offset is a ValueError."""
    statuses = None if status is None else (status,) if isinstance(status, str) else tuple(status)
    bad = [s for s in statuses or () if s not in RUN_STATUSES]
    if bad:
        raise ValueError(f"unknown status {bad[0]!r}; one of {', '.join(RUN_STATUSES)}")
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must be >= 0")
    return statuses


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a run has got: ``current`` of ``total`` (if known), with an optional message."""

    current: float
    total: float | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current, "total": self.total, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress | None:
        if not data:
            return None
        return cls(data["current"], data.get("total"), data.get("message"))


@dataclass(frozen=True, slots=True)
class Wait:
    """What a suspended run waits for; it becomes claimable again as soon as one part holds.

    ``until``: a time (a sleep, an event's timeout, a retry's backoff). ``events``: event names;
    an undelivered event of one of them. ``children``: child run ids; all of them finished, or one
    failed or was cancelled. ``reason`` says why, for people: ``"sleep"``, ``"event"``,
    ``"children"``, ``"retry"``.
    """

    reason: str
    until: float | None = None
    events: tuple[str, ...] = ()
    children: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "until": self.until,
            "events": list(self.events),
            "children": list(self.children),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Wait | None:
        if not data:
            return None
        return cls(
            str(data.get("reason", "")),
            data.get("until"),
            tuple(data.get("events") or ()),
            tuple(data.get("children") or ()),
        )


@dataclass(frozen=True)
class Run:
    """One execution of a job. Returned by ``trigger``, ``get_run``, ``wait``; never mutated."""

    id: str
    job_name: str
    job_version: str
    status: RunStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    progress: Progress | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    attempt: int = 1
    owner: str | None = None
    epoch: int = 0
    lease_expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    last_seq: int = -1
    version: int = 0
    #: The run that invoked this one (``step.invoke``), and the name of that step.
    parent_id: str | None = None
    parent_step: str | None = None
    #: While ``suspended``: what it waits for, and when it is claimable again by time (None: only
    #: when an event or a child arrives). A claimed run keeps the wait it woke from.
    wait: Wait | None = None
    wake_at: float | None = None
    #: ``cancel()`` was asked while it ran or slept: ``RunCancelled`` is raised inside the job.
    cancel_requested: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The wire shape (camelCase keys) used by the HTTP API and the client."""
        return {
            "id": self.id,
            "jobName": self.job_name,
            "jobVersion": self.job_version,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "progress": self.progress.to_json() if self.progress else None,
            "labels": dict(self.labels),
            "idempotencyKey": self.idempotency_key,
            "concurrencyKey": self.concurrency_key,
            "attempt": self.attempt,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "expiresAt": self.expires_at,
            "lastSeq": self.last_seq,
            "version": self.version,
            "parentId": self.parent_id,
            "parentStep": self.parent_step,
            "wait": self.wait.to_json() if self.wait else None,
            "wakeAt": self.wake_at,
            "cancelRequested": self.cancel_requested,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            id=data["id"],
            job_name=data["jobName"],
            job_version=data.get("jobVersion", ""),
            status=cast(RunStatus, data["status"]),
            input=data.get("input"),
            output=data.get("output"),
            error=data.get("error"),
            progress=Progress.from_json(data.get("progress")),
            labels=dict(data.get("labels") or {}),
            idempotency_key=data.get("idempotencyKey"),
            concurrency_key=data.get("concurrencyKey"),
            attempt=data.get("attempt", 1),
            created_at=data.get("createdAt", 0.0),
            updated_at=data.get("updatedAt", 0.0),
            started_at=data.get("startedAt"),
            finished_at=data.get("finishedAt"),
            expires_at=data.get("expiresAt"),
            last_seq=data.get("lastSeq", -1),
            version=data.get("version", 0),
            parent_id=data.get("parentId"),
            parent_step=data.get("parentStep"),
            wait=Wait.from_json(data.get("wait")),
            wake_at=data.get("wakeAt"),
            cancel_requested=bool(data.get("cancelRequested", False)),
        )


@dataclass(frozen=True)
class TriggerResult(Run):
    """What ``trigger`` returns: the run, and ``created=False`` when an idempotency key matched."""

    created: bool = True


class RunList(list[Run]):
    """A page of runs; a plain list that also knows the ``total`` matching the filter, and the
    run-change feed's ``version`` read just before the page: watch the feed from there and no
    change made after the page was read can be missed."""

    def __init__(
        self, runs: Iterable[Run] = (), *, total: int = 0, limit: int = 50, offset: int = 0, version: int = 0
    ):
        super().__init__(runs)
        self.total = total
        self.limit = limit
        self.offset = offset
        self.version = version


StepStatus = Literal["completed", "failed", "waiting"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The stored outcome of one step: a completed step's ``output`` is what a resume returns.

    ``waiting``: a sleep, an event wait or a child run whose outcome is not known yet (``output``
    holds what was decided: the wake time, the deadline, the child's id). ``attempt`` counts the
    attempts made in run attempt ``run_attempt``; ``retry_at`` is when the next may start (None:
    no attempt left, or none needed).
    """

    run_id: str
    name: str
    index: int
    status: StepStatus
    output: Any = None
    error: str | None = None
    started_at: float = 0.0
    completed_at: float = 0.0
    attempt: int = 1
    run_attempt: int = 1
    retry_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "name": self.name,
            "index": self.index,
            "status": self.status,
            "output": self.output,
            "error": self.error,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "attempt": self.attempt,
            "runAttempt": self.run_attempt,
            "retryAt": self.retry_at,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's ordered log. ``seq`` is 0, 1, 2, … with no gap."""

    run_id: str
    seq: int
    type: str
    data: Mapping[str, Any]
    at: float

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def to_json(self) -> dict[str, Any]:
        return {"runId": self.run_id, "seq": self.seq, "type": self.type, "data": dict(self.data), "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(data["runId"], int(data["seq"]), data["type"], data.get("data") or {}, data.get("at", 0.0))


@dataclass(frozen=True, slots=True)
class RunChange:
    """One entry of the store-wide feed of run changes; ``run`` is None when it was deleted."""

    version: int
    run_id: str
    run: Run | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "runId": self.run_id, "run": self.run.to_json() if self.run else None}
