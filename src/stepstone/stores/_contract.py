"""The store contract: every persistence backend implements :class:`Store` (runs, steps, event
logs) and, when it keeps Durable Streams, :class:`StreamStore`; nothing more.

Stores own persistence; the engine owns semantics. A store never runs job code and the engine never
writes SQL. Every method is a coroutine so that network and browser stores fit the same shape, and
every write is one atomic unit (one transaction), coarse enough that a round trip per call is fine.

Fencing: writes made on behalf of an executing worker carry the run's lease ``epoch``. A store
refuses such a write with :class:`~stepstone.StaleLeaseError` when the run's epoch differs or the run
is no longer ``running`` (cancelled, taken over, deleted) and then changes nothing.

This module must never import a backend (sqlite3, js, psycopg, …). ``tests/stores`` holds the one
contract suite every store passes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._models import Event, Progress, Run, RunChange, RunStatus, StepRecord
from .._stream_models import AppendRequest, AppendResult, CreateResult, NewStream, Offset, ReadResult, StreamInfo

__all__ = ["NewEvent", "NewRun", "RunFilter", "Store", "StreamStore"]


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


@runtime_checkable
class Store(Protocol):
    """Persistence for runs, steps and event logs. See ``tests/stores`` for the exact rules."""

    async def init(self) -> None:
        """Open, create or migrate forward. Idempotent."""

    async def close(self) -> None:
        """Release connections and locks. Idempotent."""

    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        """Insert a pending run and its first event (seq 0).

        If ``run.idempotency_key`` is already used by a run of the same job, insert nothing and
        return ``(existing_run, False)``; else ``(new_run, True)``.
        """

    async def get_run(self, run_id: str) -> Run | None: ...

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        """Runs matching ``filter``, newest first, and the total number matching."""

    async def claim_next(
        self,
        owner: str,
        job_names: Collection[str],
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        """Atomically take the oldest runnable run of one of ``job_names``, or return None.

        Runs in ``exclude`` (those the caller is executing already) are never taken: a worker
        whose own heartbeat was late must renew its lease, not start a second execution.

        Runnable: ``pending``, or ``running`` with ``lease_expires_at < now``. Of the active runs
        sharing a concurrency key only the oldest is runnable, so they execute one at a time, in
        order. The claimed run is returned ``running`` with ``owner``, ``lease_expires_at`` and a
        bumped ``epoch``; ``started_at`` is set if it was unset.
        """

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> bool:
        """Extend the lease; False (and no change) if the epoch is stale or the run not running."""

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
        """Record a step outcome and append events in one fenced write (replaces a failed record)."""

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
        """Move a running run to a terminal status, fenced, with its last events."""

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        """pending/running → cancelled; bumps the epoch so the executing worker is fenced off.

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
        """Delete a run with its steps and events; False if there was none."""

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
