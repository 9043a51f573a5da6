"""The run transitions of the stores that hold runs as :class:`Run` objects (memory, OPFS): which
run to claim next, and each change of a run as a pure function from the run to its next state. The
stores write the result their own way (the memory store in its dicts, the OPFS store in its dicts
and its log); the SQL and IndexedDB stores write the same rules in their own terms. Stdlib only."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._errors import InvalidRunState
from .._models import Progress, Run, RunStatus, Wait
from ._contract import JobKeys, job_matches

__all__ = [
    "cancel_now", "cancelled", "claimable", "claimed", "finished", "released", "retried", "suspended",
    "suspension",
]  # fmt: skip


def claimable(
    runs: Mapping[str, Run],
    pos: Mapping[str, int],
    active: Iterable[str],
    suspended: Mapping[str, float | None],
    by_key: Mapping[str, Collection[str]],
    jobs: JobKeys,
    now: float,
    exclude: Collection[str] = (),
) -> Run | None:
    """The oldest run a worker of ``jobs`` may claim now: pending, suspended and due, or running
    with its lease over; only the oldest unfinished run of a concurrency key."""
    due = [rid for rid, wake_at in suspended.items() if wake_at is not None and wake_at <= now]
    for run_id in sorted([*active, *due], key=pos.__getitem__):
        run = runs[run_id]
        if run.concurrency_key is not None:
            first = min(by_key[run.concurrency_key], key=pos.__getitem__)
            if first != run_id:
                continue
        if run_id in exclude or not job_matches(jobs, run.job_name, run.job_version):
            continue
        expired = run.lease_expires_at is None or run.lease_expires_at < now
        if run.status in ("pending", "suspended") or expired:
            return run
    return None


def claimed(run: Run, owner: str, now: float, lease_until: float) -> Run:
    return replace(
        run, status="running", owner=owner, epoch=run.epoch + 1, lease_expires_at=lease_until,
        started_at=run.started_at if run.started_at is not None else now, updated_at=now, wait=None, wake_at=None,
    )  # fmt: skip


def released(run: Run, now: float) -> Run:
    return replace(run, status="pending", owner=None, lease_expires_at=None, updated_at=now)


def suspension(
    run: Run, wait: Wait, now: float, inbox: Iterable[Sequence[Any]], runs: Mapping[str, Run]
) -> tuple[float | None, list[str]]:
    """When a run suspending on ``wait`` wakes, and the children it is left awaiting: ``now`` when
    the wait already holds (cancel requested; an undelivered event of ``wait.events`` in ``inbox``,
    its ``[name, data, delivered]`` entries; every child finished, or one failed, was cancelled or
    is gone: then no child is awaited), else ``wait.until``; the unfinished children in
    ``wait.children``'s order."""
    wake_at = wait.until
    if run.cancel_requested or any(not delivered and name in wait.events for name, _, delivered in inbox):
        wake_at = now
    if not wait.children:
        return wake_at, []
    children = [runs.get(c) for c in wait.children]
    unfinished = [c.id for c in children if c is not None and not c.is_terminal]
    if not unfinished or any(c is None or (c.is_terminal and c.status != "completed") for c in children):
        return now, []
    return wake_at, unfinished


def suspended(
    run: Run, wait: Wait, wake_at: float | None, now: float, progress: Progress | None, attempt: int | None,
    error: str | None,
) -> Run:
    return replace(
        run, status="suspended", owner=None, lease_expires_at=None, wait=wait, wake_at=wake_at, updated_at=now,
        progress=progress if progress is not None else run.progress,
        attempt=run.attempt if attempt is None else attempt, error=run.error if error is None else error,
    )  # fmt: skip


def finished(
    run: Run, status: RunStatus, output: Any, error: str | None, now: float, expires_at: float | None,
    progress: Progress | None,
) -> Run:
    return replace(
        run, status=status, output=copy.deepcopy(output), error=error, finished_at=now, updated_at=now,
        expires_at=expires_at, owner=None, lease_expires_at=None,
        progress=progress if progress is not None else run.progress, wait=None, wake_at=None,
    )  # fmt: skip


def cancel_now(run: Run, now: float) -> Run | None:
    """A cancel of a run that has not finished: the run with ``cancel_requested`` (running: its
    code gets the cancel; suspended: it wakes at once to get it), or None for a pending run, which
    ends ``cancelled`` at once (:func:`cancelled`). ``InvalidRunState`` for a finished run."""
    if run.is_terminal:
        raise InvalidRunState(f"run {run.id!r} is already {run.status}; only unfinished runs can be cancelled")
    if run.status == "running":
        return replace(run, cancel_requested=True, updated_at=now)
    if run.status == "suspended":
        return replace(run, cancel_requested=True, wake_at=now, updated_at=now)
    return None


def cancelled(run: Run, now: float) -> Run:
    return replace(
        run, status="cancelled", epoch=run.epoch + 1, owner=None, lease_expires_at=None, finished_at=now,
        updated_at=now,
    )  # fmt: skip


def retried(run: Run, now: float) -> Run:
    """A failed or cancelled run queued again from its first unfinished step (``InvalidRunState``
    for any other)."""
    if run.status not in ("failed", "cancelled"):
        raise InvalidRunState(f"run {run.id!r} is {run.status}; only failed or cancelled runs can be retried")
    return replace(
        run, status="pending", attempt=run.attempt + 1, epoch=run.epoch + 1, error=None, output=None,
        finished_at=None, expires_at=None, updated_at=now, cancel_requested=False, wait=None, wake_at=None,
    )  # fmt: skip
