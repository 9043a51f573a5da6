"""The store contract: every persistence backend implements :class:`Store` (runs, steps, event
logs) and, when it keeps Durable Streams, :class:`StreamStore`; nothing more.

Stores own persistence; the engine owns semantics. A store never runs job code and the engine never
writes SQL. Every method is a coroutine so that network and browser stores fit the same shape, and
every write is one atomic unit (one transaction), coarse enough that a round trip per call is fine.

Fencing: writes made on behalf of an executing worker carry the run's lease ``epoch``. A store
refuses such a write with :class:`~stepstone.StaleLeaseError` when the run's epoch differs or the run
is no longer ``running`` (cancelled, taken over, deleted) and then changes nothing.

Optional capabilities, looked up by the worker with ``getattr`` (a store without them is correct,
only slower to notice): ``liveness()`` returns a :class:`~stepstone._liveness.Liveness` (proof that
a lease owner is dead, so its runs resume at once); :class:`ClaimableFeed` says when another
process's write may have made a run claimable (PostgreSQL LISTEN/NOTIFY, SQLite's datagram
sockets), so an idle worker claims it now instead of at its next poll; ``engine_defaults`` gives
timing defaults suited to the backend.

This module must never import a backend (sqlite3, js, psycopg, …). ``tests/stores`` holds the one
contract suite every store passes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._errors import RunNotFound, StaleLeaseError
from .._models import Event, Progress, Run, RunChange, RunStatus, StepRecord, Wait
from .._stream_models import AppendRequest, AppendResult, CreateResult, NewStream, Offset, ReadResult, StreamInfo

__all__ = [
    "ClaimableFeed", "JobKeys", "NewEvent", "NewRun", "RunFilter", "Store", "StreamStore", "fenced", "job_matches",
]


class ClaimableFeed(Protocol):
    """Optional: ``callback`` is called (in the store's event loop) whenever a write anywhere may
    have made a run claimable; returns the function that unsubscribes."""

    def subscribe_claimable(self, callback: Callable[[], None]) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    job_name: str
    job_version: str
    input: Any
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    #: A child run (``step.invoke``): its parent and the parent's step; one child per pair.
    parent_id: str | None = None
    parent_step: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event not yet in the log: the store gives it its ``seq`` when it appends it."""

    type: str
    data: Mapping[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class RunFilter:
    job_name: str | None = None
    statuses: tuple[RunStatus, ...] | None = None
    labels: Mapping[str, str] | None = None
    limit: int = 50
    offset: int = 0
    parent_id: str | None = None


#: What ``claim_next`` may take: job names (any version) or ``(name, version)`` pairs.
JobKeys = Collection[str | tuple[str, str]]


def job_matches(jobs: JobKeys, name: str, version: str) -> bool:
    """Whether a run of ``name`` at ``version`` is among ``jobs`` (the rule every store applies)."""
    return name in jobs or (name, version) in jobs


def fenced(run: Run | None, run_id: str, epoch: int | None) -> Run:
    """The fencing rule for stores that hold runs as :class:`Run` objects: with ``epoch`` None, the
    run must exist (``RunNotFound``); with an epoch, it must still be running at that epoch
    (``StaleLeaseError``)."""
    if epoch is None:
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run
    if run is None or run.epoch != epoch or run.status != "running":
        raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
    return run


@runtime_checkable
class Store(Protocol):
    """Persistence for runs, steps and event logs. See ``tests/stores`` for the exact rules."""

    async def init(self) -> None:
        """Open, create or migrate forward. Idempotent."""

    async def close(self) -> None:
        """Release connections and locks. Idempotent."""

    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        """Insert a pending run and its first event (seq 0).

        If ``run.idempotency_key`` is already used by a run of the same job — or, for a child
        run, ``(parent_id, parent_step)`` by another child — insert nothing and return
        ``(existing_run, False)``; else ``(new_run, True)``.
        """

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        """Runs matching ``filter``, newest first, and the total number matching."""

    async def claim_next(
        self,
        owner: str,
        jobs: JobKeys,
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        """Atomically take the oldest runnable run of one of ``jobs``, or return None.

        ``jobs`` holds ``(name, version)`` pairs (a run executes only on code of its version) or
        bare names (any version). Runs in ``exclude`` (those the caller is executing already) are
        never taken: a worker whose own heartbeat was late must renew its lease, not start a
        second execution.

        Runnable: ``pending``; ``running`` with ``lease_expires_at < now``; ``suspended`` with
        ``wake_at <= now``. Of the unfinished runs sharing a concurrency key (suspended ones
        included) only the oldest is runnable, so they execute one at a time, in order. The claimed
        run is returned ``running`` with ``owner``, ``lease_expires_at`` and a bumped ``epoch``;
        ``started_at`` is set if it was unset. Its ``wait`` is the wait it woke from (None if it
        was not suspended); the stored run keeps no wait.
        """

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        """Extend the lease and return the run (its ``cancel_requested`` tells the worker to stop
        the job); None (and no change) if the epoch is stale or the run not running."""

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        """Hand a running run back (clean shutdown): ``pending``, no owner, claimable at once."""

    async def expire_leases(self, owner: str, now: float) -> int:
        """Mark every running run of ``owner`` as claimable now; used once an owner is proven dead."""

    async def lease_owners(self, now: float) -> set[str]:
        """Owners currently holding an unexpired lease on a running run."""

    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        """Append to the run's log (fenced unless ``epoch`` is None); optionally set its progress."""

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        """Record a step outcome and append events in one fenced write (replaces an earlier
        record of the same step)."""

    async def suspend_run(
        self,
        run_id: str,
        epoch: int,
        wait: Wait,
        now: float,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
        attempt: int | None = None,
        error: str | None = None,
    ) -> tuple[Run, list[Event]]:
        """Park a running run, fenced: ``suspended`` with ``wait``, no owner, no lease, and
        ``wake_at = wait.until`` — or ``now`` when the wait already holds (an undelivered event of
        one of ``wait.events``; every child of ``wait.children`` finished, or one failed or was
        cancelled; ``cancel_requested``). ``attempt``/``error`` set those fields (a run-level retry
        waiting out its backoff)."""

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        """Queue event ``name`` for the run, whether or not it waits yet; wake the run if it is
        suspended waiting for ``name``. Raises RunNotFound, or InvalidRunState once it finished."""

    async def take_event(
        self,
        run_id: str,
        epoch: int,
        name: str,
        step: StepRecord,
        events: Sequence[NewEvent],
    ) -> tuple[bool, Any, list[Event]]:
        """Fenced: take the oldest undelivered event ``name`` of the run — marked delivered, never
        given out again — and record ``step`` as completed with ``{"event": name, "data": data}``,
        with ``events``, in one write: ``(True, data, written)``. None queued: ``(False, None,
        [])`` and nothing is written."""

    async def next_wake(self, now: float) -> float | None:
        """The earliest ``wake_at`` of any suspended run (a worker's timer), or None."""

    async def finish_run(
        self,
        run_id: str,
        epoch: int,
        status: RunStatus,
        output: Any,
        error: str | None,
        now: float,
        expires_at: float | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> tuple[Run, list[Event]]:
        """Move a running run to a terminal status, fenced, with its last events. A child run's
        end wakes its parent when the parent waits for it and it was the last one awaited, or it
        did not complete."""

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        """Cancel a run: a ``pending`` one becomes ``cancelled`` at once (bumping the epoch, with
        ``event``); a ``running`` or ``suspended`` one gets ``cancel_requested`` (a suspended one is
        claimable at once), and its execution raises ``RunCancelled`` in the job and ends it.

        Raises RunNotFound, or InvalidRunState when the run already finished.
        """

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        """failed/cancelled → pending, ``attempt`` + 1, error cleared, completed steps kept.

        Raises RunNotFound, or InvalidRunState when the run is not failed or cancelled.
        """

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        """Set a run's retention deadline (used when an already-finished run is given a TTL)."""

    async def get_steps(self, run_id: str) -> list[StepRecord]: ...

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]: ...

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        """Return once the run's log has an event past ``after_seq``, or after ``timeout``.

        Returns at once if such an event exists. Notification where the backend allows it.
        """

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        """Runs created, re-statused, re-progressed or deleted after ``after_version``, in order.

        Every such change gives the run a new, store-wide increasing ``version``; a deletion leaves
        a tombstone (``run`` is None). Only the latest change of each run is kept.
        """

    async def runs_version(self) -> int:
        """The version of the latest run change (0 before any): where a new watcher starts."""

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        """Return once a change past ``after_version`` exists, or after ``timeout``."""

    async def delete_run(self, run_id: str) -> bool:
        """Delete a run with its steps, events and queued events; False if there was none."""

    async def sweep(self, now: float) -> int:
        """Delete every run whose ``expires_at`` has passed; return how many."""


@runtime_checkable
class StreamStore(Protocol):
    """Durable Streams persistence; implemented by the memory and SQLite stores.

    Every method is one atomic unit. Paths are relative to the server's stream root. Expiry is
    applied lazily: a method that finds an expired stream deletes it (soft-deletes it while forks
    read from it) before answering.
    """

    async def stream_create(self, new: NewStream, now: float) -> CreateResult:
        """Create a stream (or a fork), or confirm an identical one exists.

        Raises StreamConflict (different configuration, soft-deleted path, fork content type),
        StreamNotFound (fork source missing), InvalidStreamRequest (fork offset past the source's
        tail, bad sub-offset).
        """

    async def stream_get(self, path: str, now: float) -> StreamInfo | None:
        """The stream at ``path`` (``deleted`` set when soft-deleted), or None."""

    async def stream_touch(self, stream_id: int, now: float) -> None:
        """Restart a sliding TTL (reads and writes do; HEAD does not)."""

    async def stream_append(self, path: str, req: AppendRequest, now: float) -> AppendResult:
        """Append and/or close atomically with producer and ``Stream-Seq`` state.

        Raises StreamNotFound, StreamGone, StreamClosedError, ContentTypeMismatch,
        ProducerFenced, ProducerSeqGap, InvalidStreamRequest, StreamSeqConflict.
        """

    async def stream_read(self, stream_id: int, after: Offset, max_bytes: int) -> ReadResult:
        """Records with an end offset > ``after``, across the fork chain, in order; at most
        ``max_bytes`` of data unless the first record alone is larger."""

    async def stream_wait(self, stream_id: int, after: Offset, timeout: float) -> None:
        """Return once the stream's tail passes ``after``, it closes or goes away, or ``timeout``."""

    async def stream_delete(self, path: str, now: float) -> bool:
        """Delete (soft-delete while forks exist); True if hard-deleted. Raises StreamNotFound,
        StreamGone."""

    async def stream_sweep(self, now: float) -> int:
        """Delete every expired stream; return how many were removed or soft-deleted."""

    async def stream_paths(self, now: float) -> list[str]:
        """Every live (not deleted, not expired) stream path."""
