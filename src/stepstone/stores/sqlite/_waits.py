"""Suspension in the SQLite store: parking a run with what it waits for, the per-run inbox of sent
events, and child runs waking their parent. A mixin of :class:`~stepstone.stores.sqlite.SqliteStore`.

A suspended run is claimable once ``wake_at <= now``; everything here only ever moves ``wake_at``
(to the sleep's end, or to ``now`` when an awaited event or child arrives), so one indexed range
finds every run to wake. A parent waiting for children counts them: each awaited child carries
``awaited_by``, the parent ``awaiting``; a child's end decrements the count and wakes the parent at
zero, or at once when the child did not complete. Stdlib only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..._errors import InvalidRunState, RunNotFound, StaleLeaseError
from ..._models import Event, Progress, Run, StepRecord, Wait
from ..._util import dumps, loads
from .._contract import NewEvent
from .._wakeups import CLAIMABLE_KEY, RUNS_KEY
from ._schema import INSERT_STEP, step_params

__all__ = ["WaitsMixin"]

T = TypeVar("T")


class WaitsMixin:
    """Mixed into SqliteStore, which provides the methods below."""

    if TYPE_CHECKING:

        def _load(self, db: sqlite3.Connection, run_id: str) -> Run | None: ...

        def _next_version(self, db: sqlite3.Connection) -> int: ...

        def _append(
            self,
            db: sqlite3.Connection,
            run_id: str,
            epoch: int | None,
            events: Sequence[NewEvent],
            progress: Progress | None = None,
        ) -> list[Event]: ...

        async def _write(self, op: Callable[[sqlite3.Connection], T], *keys: str, sync: bool = True) -> T: ...

        def _publish(self, keys: Collection[str]) -> None: ...

        @property
        def _db(self) -> sqlite3.Connection: ...

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
        def op(db: sqlite3.Connection) -> tuple[Run, list[Event]]:
            out = self._append(db, run_id, epoch, events, progress)
            run = self._load(db, run_id)
            assert run is not None
            wake_at = now if run.cancel_requested or self._queued(db, run_id, wait.events) else wait.until
            awaiting = 0
            if wait.children:
                unfinished, ended_badly = self._children_state(db, wait.children)
                if not unfinished or ended_badly:
                    wake_at = now
                else:
                    db.execute("UPDATE runs SET awaited_by = NULL WHERE awaited_by = ?", (run_id,))
                    db.executemany("UPDATE runs SET awaited_by = ? WHERE id = ?", [(run_id, c) for c in unfinished])
                    awaiting = len(unfinished)
            db.execute(
                "UPDATE runs SET status = 'suspended', owner = NULL, lease_expires_at = NULL, wait = ?, wake_at = ?, "
                "awaiting = ?, updated_at = ?, attempt = COALESCE(?, attempt), error = COALESCE(?, error), "
                "version = ? WHERE id = ?",
                (dumps(wait.to_json()), wake_at, awaiting, now, attempt, error, self._next_version(db), run_id),
            )
            suspended = self._load(db, run_id)
            assert suspended is not None
            return suspended, out

        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY)

    @staticmethod
    def _queued(db: sqlite3.Connection, run_id: str, names: Sequence[str]) -> bool:
        if not names:
            return False
        row = db.execute(
            f"SELECT 1 FROM run_inbox WHERE run_id = ? AND delivered_at IS NULL "
            f"AND name IN ({', '.join('?' * len(names))}) LIMIT 1",
            (run_id, *names),
        ).fetchone()
        return row is not None

    @staticmethod
    def _children_state(db: sqlite3.Connection, children: Sequence[str]) -> tuple[list[str], bool]:
        """The awaited children not finished yet, and whether one ended without completing (a
        deleted child counts as that)."""
        status: dict[str, str] = {}
        ids = list(children)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = db.execute(f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
            status.update(rows.fetchall())
        unfinished = [c for c in ids if status.get(c) in ("pending", "running", "suspended")]
        badly = any(status.get(c) not in ("pending", "running", "suspended", "completed") for c in ids)
        return unfinished, badly

    def _child_ended(self, db: sqlite3.Connection, run_id: str, status: str, now: float) -> None:
        """``run_id`` finished (or was deleted): if a suspended parent awaits it, count it off and
        wake the parent when it was the last one awaited or did not complete."""
        row = db.execute("SELECT awaited_by FROM runs WHERE id = ?", (run_id,)).fetchone()
        parent = row[0] if row is not None else None
        if parent is None:
            return
        db.execute("UPDATE runs SET awaited_by = NULL WHERE id = ?", (run_id,))
        waiting = db.execute("SELECT awaiting, status FROM runs WHERE id = ?", (parent,)).fetchone()
        if waiting is None or waiting[1] != "suspended":
            return
        left = int(waiting[0]) - 1
        if left <= 0 or status != "completed":
            db.execute(
                "UPDATE runs SET awaiting = ?, wake_at = ?, version = ? WHERE id = ?",
                (left, now, self._next_version(db), parent),
            )
        else:
            db.execute("UPDATE runs SET awaiting = ? WHERE id = ?", (left, parent))

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        text = dumps(data)

        def op(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT status, wait FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if row[0] in ("completed", "failed", "cancelled"):
                raise InvalidRunState(f"run {run_id!r} is already {row[0]}; it takes no more events")
            db.execute(
                "INSERT INTO run_inbox (run_id, seq, name, data, sent_at) VALUES "
                "(?, (SELECT COALESCE(MAX(seq), -1) + 1 FROM run_inbox WHERE run_id = ?), ?, ?, ?)",
                (run_id, run_id, name, text, now),
            )
            wait = Wait.from_json(loads(row[1]))
            if row[0] == "suspended" and wait is not None and name in wait.events:
                woken = (now, self._next_version(db), run_id)
                db.execute("UPDATE runs SET wake_at = ?, version = ? WHERE id = ?", woken)
                return True
            return False

        if await self._write(op, run_id):  # it woke the run: a worker anywhere may claim it now
            self._publish([RUNS_KEY, CLAIMABLE_KEY])

    async def take_event(
        self, run_id: str, epoch: int, name: str, step: StepRecord, events: Sequence[NewEvent]
    ) -> tuple[bool, Any, list[Event]]:
        def op(db: sqlite3.Connection) -> tuple[bool, Any, list[Event]]:
            held = db.execute("SELECT epoch, status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if held is None or held[0] != epoch or held[1] != "running":
                raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
            row = db.execute(
                "SELECT seq, data FROM run_inbox WHERE run_id = ? AND name = ? AND delivered_at IS NULL "
                "ORDER BY seq LIMIT 1",
                (run_id, name),
            ).fetchone()
            if row is None:
                return False, None, []
            delivered = (step.completed_at, run_id, row[0])
            db.execute("UPDATE run_inbox SET delivered_at = ? WHERE run_id = ? AND seq = ?", delivered)
            data = loads(row[1])
            record = replace(step, status="completed", output={"event": name, "data": data})
            db.execute(INSERT_STEP, step_params(run_id, record))
            return True, data, self._append(db, run_id, epoch, events)

        return await self._write(op, run_id)

    async def next_wake(self, now: float) -> float | None:
        row = self._db.execute("SELECT MIN(wake_at) FROM runs WHERE status = 'suspended'").fetchone()
        return None if row is None or row[0] is None else float(row[0])
