"""``sqlite:///path`` — the embedded store: stdlib ``sqlite3``, WAL, one write transaction per call.

Several processes may share one file: SQLite serialises writers (``BEGIN IMMEDIATE``) and the
lease/epoch columns fence them. Writes made through any store object of this process wake waiters
at once (one hub per file); writes from other processes wake them through a datagram socket per
store in ``<db>-owners/`` (``_peers.py``), with the engine's polling interval as the safety net.
Owner liveness uses OS file locks in that directory (``_liveness.py``); suspension, the inbox of
sent events and child runs are in ``_waits.py``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..._errors import InvalidRunState, RunNotFound, SchemaError, StaleLeaseError, StoreError
from ..._liveness import Liveness
from ..._models import Event, Progress, Run, RunChange, RunStatus, StepRecord
from ..._util import dumps, loads, now
from .._contract import JobKeys, NewEvent, NewRun, RunFilter
from .._wakeups import CLAIMABLE_KEY, RUNS_KEY, Wakeups
from ._commit import GroupCommitMixin
from ._liveness import FileLockLiveness
from ._peers import Peers
from ._schema import (
    INSERT_STEP,
    MIGRATIONS,
    RUN_COLUMNS,
    SCHEMA_VERSION,
    STEP_COLUMNS,
    progress_json,
    row_to_run,
    row_to_step,
    step_params,
)
from ._streams import SqliteStreamsMixin
from ._waits import WaitsMixin

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]

_HUBS: dict[str, Wakeups] = {}


class SqliteStore(GroupCommitMixin, WaitsMixin, SqliteStreamsMixin):
    """A store in one SQLite file. ``synchronous`` is ``"normal"`` (survives a process crash, the
    default) or ``"full"`` (also survives power loss: one fsync per write)."""

    def __init__(self, path: str, *, synchronous: str = "normal", busy_timeout: float = 10.0) -> None:
        if synchronous.lower() not in ("off", "normal", "full", "extra"):
            raise StoreError(f"unknown synchronous setting {synchronous!r}; use normal or full")
        self.path = path
        self.synchronous = synchronous.lower()
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        key = os.path.abspath(path) if path != ":memory:" else f":memory:{id(self)}"
        self._wakeups = _HUBS.setdefault(key, Wakeups())
        self._hub = self._wakeups.hub
        self._peers: Peers | None = None
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], tuple[str, ...], bool]] = []
        self._init_streams()

    # -- connection ----------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"sqlite store {self.path!r} is not open; call init() first")
        return self._conn

    async def init(self) -> None:
        if self._conn is not None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if self.path != ":memory:" and not os.path.isdir(directory):
            raise StoreError(f"cannot open sqlite store {self.path!r}: directory {directory!r} does not exist")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite store {self.path!r}: {exc}") from exc
        self._conn = conn
        try:
            self._migrate()
        except BaseException:
            self._conn = None
            conn.close()
            raise
        if self.path != ":memory:":
            peers = Peers(self._owners_dir, self._wakeups.publish)
            self._peers = peers if peers.open() else None

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS stepstone_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            row = db.execute("SELECT value FROM stepstone_meta WHERE key = 'schema_version'").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path!r} has schema version {current}, newer than this stepstone knows "
                    f"({SCHEMA_VERSION}); upgrade stepstone to open it"
                )
            for script in MIGRATIONS[current:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(
                "INSERT INTO stepstone_meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (SCHEMA_VERSION,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._peers is not None:
            self._peers.close()
            self._peers = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def liveness(self) -> Liveness | None:
        if self.path == ":memory:":
            return None
        return FileLockLiveness(self._owners_dir)

    @property
    def _owners_dir(self) -> str:
        return os.path.abspath(self.path) + "-owners"

    def subscribe_claimable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever a run may have become claimable — written through this
        process or another on the same file — or the earliest wake-up may have moved; returns the
        unsubscribe function."""
        return self._wakeups.subscribe_claimable(callback)

    def _publish(self, keys: Collection[str]) -> None:
        """After a commit: wake waiters of this process, then the other processes' stores."""
        for key in keys:
            if key == CLAIMABLE_KEY:
                self._wakeups.claimable()
            else:
                self._hub.publish(key)
        if self._peers is not None:
            self._peers.send(keys)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One immediate write transaction, run synchronously (nothing else runs in between)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- helpers (inside a transaction) -------------------------------------------------------
    def _load(self, db: sqlite3.Connection, run_id: str) -> Run | None:
        row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else row_to_run(row)

    def _next_version(self, db: sqlite3.Connection) -> int:
        row = db.execute(
            "UPDATE stepstone_meta SET value = value + 1 WHERE key = 'runs_version' RETURNING value"
        ).fetchone()
        return int(row[0])

    def _touch(self, db: sqlite3.Connection, run_id: str) -> None:
        """Give the run a new change version (status, progress or creation changed)."""
        db.execute("UPDATE runs SET version = ? WHERE id = ?", (self._next_version(db), run_id))

    def _append(
        self,
        db: sqlite3.Connection,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        """Fence (unless ``epoch`` is None), move ``last_seq`` on and insert ``events``: the fence
        check and the seq allocation are one UPDATE … RETURNING."""
        n = len(events)
        params: list[Any] = [n, events[-1].at if events else None]
        sets = "last_seq = last_seq + ?, updated_at = COALESCE(?, updated_at)"
        if progress is not None:
            sets += ", progress = ?, version = ?"
            params += [progress_json(progress), self._next_version(db)]
        where = "id = ?"
        params.append(run_id)
        if epoch is not None:
            where += " AND epoch = ? AND status = 'running'"
            params.append(epoch)
        row = db.execute(f"UPDATE runs SET {sets} WHERE {where} RETURNING last_seq", params).fetchone()
        if row is None:
            if epoch is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
        first = int(row[0]) - n + 1
        out = [Event(run_id, first + i, e.type, e.data, e.at) for i, e in enumerate(events)]
        if out:
            db.executemany(
                "INSERT INTO events (run_id, seq, type, data, at) VALUES (?, ?, ?, ?, ?)",
                [(run_id, e.seq, e.type, dumps(e.data), e.at) for e in out],
            )
        return out

    def _keys(self, run_id: str, runs_changed: bool) -> tuple[str, ...]:
        return (run_id, RUNS_KEY) if runs_changed else (run_id,)

    # -- runs ----------------------------------------------------------------------------------
    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        def op(db: sqlite3.Connection) -> tuple[Run, bool]:
            if run.parent_id is not None and run.parent_step is not None:
                row = db.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ? AND parent_step = ?",
                    (run.parent_id, run.parent_step),
                ).fetchone()
                if row is not None:
                    return row_to_run(row), False
            if run.idempotency_key is not None:
                row = db.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE job_name = ? AND idempotency_key = ?",
                    (run.job_name, run.idempotency_key),
                ).fetchone()
                if row is not None:
                    return row_to_run(row), False
            db.execute(
                "INSERT INTO runs (id, job_name, job_version, status, input, labels, idempotency_key, "
                "concurrency_key, created_at, updated_at, version, parent_id, parent_step) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.job_name,
                    run.job_version,
                    dumps(run.input),
                    dumps(dict(run.labels)),
                    run.idempotency_key,
                    run.concurrency_key,
                    run.created_at,
                    run.created_at,
                    self._next_version(db),
                    run.parent_id,
                    run.parent_step,
                ),
            )
            if run.labels:
                db.executemany(
                    "INSERT INTO run_labels (run_id, key, value) VALUES (?, ?, ?)",
                    [(run.id, k, v) for k, v in run.labels.items()],
                )
            self._append(db, run.id, None, [event])
            created = self._load(db, run.id)
            assert created is not None
            return created, True

        return await self._write(op, run.id, RUNS_KEY, CLAIMABLE_KEY)

    async def get_run(self, run_id: str) -> Run | None:
        return self._load(self._db, run_id)

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        where: list[str] = []
        params: list[Any] = []
        if filter.job_name is not None:
            where.append("job_name = ?")
            params.append(filter.job_name)
        if filter.statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(filter.statuses))})")
            params.extend(filter.statuses)
        if filter.parent_id is not None:
            where.append("parent_id = ?")
            params.append(filter.parent_id)
        for key, value in (filter.labels or {}).items():
            where.append("id IN (SELECT run_id FROM run_labels WHERE key = ? AND value = ?)")
            params.extend((key, value))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        db = self._db
        total = db.execute(f"SELECT COUNT(*) FROM runs {clause}", params).fetchone()[0]
        rows = db.execute(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY pos DESC LIMIT ? OFFSET ?",
            [*params, filter.limit, filter.offset],
        ).fetchall()
        return [row_to_run(r) for r in rows], int(total)

    async def claim_next(
        self,
        owner: str,
        jobs: JobKeys,
        now: float,
        lease_until: float,
        exclude: Collection[str] = (),
    ) -> Run | None:
        names = [j for j in jobs if isinstance(j, str)]
        pairs = [j for j in jobs if not isinstance(j, str)]
        if not names and not pairs:
            return None
        match = []
        if names:
            match.append(f"r.job_name IN ({', '.join('?' * len(names))})")
        if pairs:
            match.append(f"(r.job_name, r.job_version) IN (VALUES {', '.join(['(?, ?)'] * len(pairs))})")
        job_params = [*names, *(x for pair in pairs for x in pair)]
        skip = list(exclude)

        def op(db: sqlite3.Connection) -> Run | None:
            row = db.execute(
                f"""SELECT r.id, r.status FROM runs r
                WHERE (r.status = 'pending'
                       OR (r.status = 'running' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < ?))
                       OR (r.status = 'suspended' AND r.wake_at <= ?))
                  AND ({" OR ".join(match)})
                  AND r.id NOT IN ({", ".join("?" * len(skip))})
                  AND (r.concurrency_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM runs o WHERE o.concurrency_key = r.concurrency_key
                          AND o.status IN ('pending', 'running', 'suspended') AND o.pos < r.pos))
                ORDER BY r.pos LIMIT 1""",
                [now, now, *job_params, *skip],
            ).fetchone()
            if row is None:
                return None
            woke_from = self._load(db, row[0]).wait if row[1] == "suspended" else None  # type: ignore[union-attr]
            if row[1] == "suspended":
                db.execute("UPDATE runs SET awaited_by = NULL WHERE awaited_by = ?", (row[0],))
            db.execute(
                "UPDATE runs SET status = 'running', owner = ?, epoch = epoch + 1, lease_expires_at = ?, "
                "started_at = COALESCE(started_at, ?), updated_at = ?, wait = NULL, wake_at = NULL, awaiting = 0, "
                "version = ? WHERE id = ?",
                (owner, lease_until, now, now, self._next_version(db), row[0]),
            )
            claimed = self._load(db, row[0])
            assert claimed is not None
            return replace(claimed, wait=woke_from)

        claimed = await self._write(op, sync=False)
        if claimed is not None:
            self._publish(self._keys(claimed.id, True))
        return claimed

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        def op(db: sqlite3.Connection) -> Run | None:
            row = db.execute(
                f"UPDATE runs SET lease_expires_at = ? WHERE id = ? AND epoch = ? AND status = 'running' "
                f"RETURNING {RUN_COLUMNS}",
                (lease_until, run_id, epoch),
            ).fetchone()
            return None if row is None else row_to_run(row)

        return await self._write(op, sync=False)

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE runs SET status = 'pending', owner = NULL, lease_expires_at = NULL, updated_at = ? "
                "WHERE id = ? AND epoch = ? AND status = 'running'",
                (now, run_id, epoch),
            )
            if cur.rowcount != 1:
                return False
            self._touch(db, run_id)
            return True

        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY, sync=False)

    async def expire_leases(self, owner: str, now: float) -> int:
        def op(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE owner = ? AND status = 'running'", (now - 1, owner)
            )
            return cur.rowcount

        return await self._write(op, CLAIMABLE_KEY, sync=False)

    async def lease_owners(self, now: float) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT owner FROM runs WHERE status = 'running' AND owner IS NOT NULL AND lease_expires_at >= ?",
            (now,),
        ).fetchall()
        return {r[0] for r in rows}

    # -- events and steps ----------------------------------------------------------------------
    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        return await self._write(
            lambda db: self._append(db, run_id, epoch, events, progress), *self._keys(run_id, progress is not None)
        )

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        def op(db: sqlite3.Connection) -> list[Event]:
            out = self._append(db, run_id, epoch, events, progress)
            db.execute(INSERT_STEP, step_params(run_id, step))
            return out

        return await self._write(op, *self._keys(run_id, progress is not None))

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
        def op(db: sqlite3.Connection) -> tuple[Run, list[Event]]:
            out = self._append(db, run_id, epoch, events, progress)
            db.execute(
                "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, expires_at = ?, "
                "owner = NULL, lease_expires_at = NULL, wait = NULL, wake_at = NULL, version = ? WHERE id = ?",
                (status, dumps(output), error, now, now, expires_at, self._next_version(db), run_id),
            )
            self._child_ended(db, run_id, status, now)
            run = self._load(db, run_id)
            assert run is not None
            return run, out

        # A finished run frees its concurrency key and may wake its parent.
        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY)

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        def op(db: sqlite3.Connection) -> tuple[Run, list[Event]]:
            run = self._load(db, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if run.is_terminal:
                raise InvalidRunState(f"run {run_id!r} is already {run.status}; only unfinished runs can be cancelled")
            out: list[Event] = []
            if run.status in ("running", "suspended"):  # its execution raises RunCancelled in the job
                wake = ", wake_at = ?" if run.status == "suspended" else ""
                db.execute(
                    f"UPDATE runs SET cancel_requested = 1, updated_at = ?{wake}, version = ? WHERE id = ?",
                    (now, *((now,) if wake else ()), self._next_version(db), run_id),
                )
            else:
                db.execute(
                    "UPDATE runs SET status = 'cancelled', epoch = epoch + 1, owner = NULL, lease_expires_at = NULL, "
                    "finished_at = ?, updated_at = ?, version = ? WHERE id = ?",
                    (now, now, self._next_version(db), run_id),
                )
                out = self._append(db, run_id, None, [event])
                self._child_ended(db, run_id, "cancelled", now)
            run = self._load(db, run_id)
            assert run is not None
            return run, out

        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY)

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        def op(db: sqlite3.Connection) -> tuple[Run, list[Event]]:
            run = self._load(db, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if run.status not in ("failed", "cancelled"):
                raise InvalidRunState(f"run {run_id!r} is {run.status}; only failed or cancelled runs can be retried")
            db.execute(
                "UPDATE runs SET status = 'pending', attempt = attempt + 1, epoch = epoch + 1, error = NULL, "
                "output = NULL, finished_at = NULL, expires_at = NULL, cancel_requested = 0, wait = NULL, "
                "wake_at = NULL, updated_at = ?, version = ? WHERE id = ?",
                (now, self._next_version(db), run_id),
            )
            out = self._append(db, run_id, None, [event])
            run = self._load(db, run_id)
            assert run is not None
            return run, out

        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY)

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        def op(db: sqlite3.Connection) -> None:
            cur = db.execute("UPDATE runs SET expires_at = ? WHERE id = ?", (expires_at, run_id))
            if cur.rowcount == 0:
                raise RunNotFound(f"no run with id {run_id!r}")

        await self._write(op)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._db.execute(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)
        ).fetchall()
        return [row_to_step(run_id, r) for r in rows]

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._db.execute(
            "SELECT seq, type, data, at FROM events WHERE run_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (run_id, max(from_seq, 0), limit),
        ).fetchall()
        return [Event(run_id, r[0], r[1], loads(r[2]), r[3]) for r in rows]

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        row = self._db.execute("SELECT last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] > after_seq:
            return
        await self._hub.wait(run_id, timeout)

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        db = self._db
        rows = db.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE version > ? ORDER BY version LIMIT ?", (after_version, limit)
        ).fetchall()
        changes = [RunChange(r[21], r[0], row_to_run(r)) for r in rows]
        tombs = db.execute(
            "SELECT version, run_id FROM run_tombstones WHERE version > ? ORDER BY version LIMIT ?",
            (after_version, limit),
        ).fetchall()
        changes.extend(RunChange(v, rid, None) for v, rid in tombs)
        changes.sort(key=lambda c: c.version)
        return changes[:limit]

    async def runs_version(self) -> int:
        row = self._db.execute("SELECT value FROM stepstone_meta WHERE key = 'runs_version'").fetchone()
        return int(row[0]) if row else 0

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        row = self._db.execute("SELECT value FROM stepstone_meta WHERE key = 'runs_version'").fetchone()
        if row is not None and row[0] > after_version:
            return
        await self._hub.wait(RUNS_KEY, timeout)

    # -- deletion ------------------------------------------------------------------------------
    def _delete(self, db: sqlite3.Connection, run_ids: Sequence[str], now: float) -> None:
        for run_id in run_ids:
            self._child_ended(db, run_id, "deleted", now)
            db.execute("DELETE FROM run_inbox WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM run_labels WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            db.execute(
                "INSERT INTO run_tombstones (version, run_id, deleted_at) VALUES (?, ?, ?)",
                (self._next_version(db), run_id, now),
            )

    async def delete_run(self, run_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                return False
            self._delete(db, [run_id], now())
            return True

        return await self._write(op, run_id, RUNS_KEY, CLAIMABLE_KEY)

    async def sweep(self, now: float) -> int:
        def op(db: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in db.execute("SELECT id FROM runs WHERE expires_at <= ?", (now,)).fetchall()]
            self._delete(db, ids, now)
            # Tombstones only serve list watchers catching up; a day is plenty.
            db.execute("DELETE FROM run_tombstones WHERE deleted_at < ?", (now - 86400,))
            return ids

        ids = await self._write(op, RUNS_KEY, CLAIMABLE_KEY)
        if ids:
            self._publish(ids)
        return len(ids)
