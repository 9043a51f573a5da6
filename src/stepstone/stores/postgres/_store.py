"""``postgresql://user@host:5432/db`` — the store for many servers on one database.

Each call is one statement (autocommit) or one transaction on a pooled connection (``_conn.py``).
The hot path — committing a step with its events, appending events — is a single statement: the
fenced ``UPDATE … RETURNING last_seq`` and the inserts are data-modifying CTEs of one statement,
so a step costs one round trip and one commit. Claims take ``FOR UPDATE SKIP LOCKED`` candidates;
a run with a concurrency key is claimed under a transaction-level advisory lock on that key and
re-checked with a fresh snapshot, so two servers never run two runs of one key at once.

Row locks are always taken child before parent (a child ending wakes its parent; a parent
suspending marks its children), so the run writes cannot deadlock each other.

Every change to a run's row gets the version ``xid << 16 | k`` of its transaction; the feed that
reads them in order without a counter row is ``_feed.py``. Cross-process wake-ups are in
``_listen.py``, owner liveness in ``_liveness.py``, the one-round-trip statements in ``_sql.py``,
suspension, events and child runs in ``_waits.py``, Durable Streams in ``_streams.py``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from ..._errors import InvalidRunState, RunNotFound, StaleLeaseError, StoreError
from ..._liveness import Liveness
from ..._models import Event, Progress, Run, RunStatus, StepRecord, Wait
from ..._util import dumps, loads, new_id, now
from .._contract import JobKeys, NewEvent, NewRun, RunFilter
from .._rows import RUN_COLUMNS, STEP_COLUMNS, progress_json, row_to_run, row_to_step
from .._wakeups import CLAIMABLE_KEY, RUNS_KEY, Wakeups
from ._conn import Conn, Database, PgOptions, parse_url
from ._feed import FeedMixin
from ._listen import Listener
from ._liveness import AdvisoryLockLiveness
from ._schema import lock_key, migrate
from ._sql import APPENDS, CANDIDATE, CLAIM, CLAIM_FAST, CREATE, FINISH, KEY_FREE, NO_FSYNC, RUN_SELECT
from ._streams import PgStreamsMixin
from ._waits import V, WaitsMixin, child_ended, events_params, insert_events

__all__ = ["PostgresStore"]

def _channel(schema: str) -> str:
    name = f"stepstone:{schema}"
    if len(name.encode()) > 60:
        name = "stepstone:" + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()
    return name


def _step_values(step: StepRecord) -> dict[str, Any]:
    values = (step.name, step.index, step.status, dumps(step.output), step.error, step.started_at,
              step.completed_at, step.attempt, step.run_attempt, step.retry_at)  # fmt: skip
    return {f"s{i}": v for i, v in enumerate(values)}


class PostgresStore(FeedMixin, WaitsMixin, PgStreamsMixin):
    """A store in one PostgreSQL schema, shared by any number of processes and machines.

    ``PostgresStore("postgresql://user@host:5432/db", schema="stepstone", pool_size=10)``; the
    URL may carry the options instead (``?schema=…&pool_size=…&pool_min=…&synchronous_commit=off``)
    and any libpq parameter (``sslmode``, ``connect_timeout``, ``application_name`` …).
    """

    #: The engine's timing unless given: its poll is only a safety net here (LISTEN/NOTIFY wakes
    #: workers and waiters), but it is also the period of the dead-owner check, so a dead server's
    #: runs resume within half a second.
    engine_defaults = {"polling_interval": 0.5}  # noqa: RUF012 - read-only, as the engine reads it

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        pool_min: int | None = None,
        synchronous_commit: str | None = None,
        retry_for: float | None = None,
    ) -> None:
        parsed = parse_url(url)
        options = PgOptions(
            conninfo=parsed.conninfo,
            schema=parsed.schema if schema is None else schema,
            pool_size=parsed.pool_size if pool_size is None else pool_size,
            pool_min=parsed.pool_min if pool_min is None else pool_min,
            synchronous_commit=parsed.synchronous_commit if synchronous_commit is None else synchronous_commit,
            retry_for=parsed.retry_for if retry_for is None else retry_for,
        )
        self._db = Database(options)
        self.schema = options.schema
        self._wakeups = Wakeups()
        self._hub = self._wakeups.hub
        self._sender = new_id()[-16:]
        self._writes = 0
        self._listener: Listener | None = None
        self._init_streams()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def init(self) -> None:
        if self._listener is not None:
            return
        await self._db.open()
        try:
            await self._db.run(lambda conn: migrate(conn, self.schema))
            listener = Listener(self._db, _channel(self.schema), self._sender, self._wakeups.publish,
                                self._wakeups.publish_all)  # fmt: skip
            await listener.start()
        except BaseException:
            await self._db.close()
            raise
        self._listener = listener

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._db.close()

    def liveness(self) -> Liveness:
        """Owner locks: session-level advisory locks on the listening connection."""
        return AdvisoryLockLiveness(self.schema, self._db, lambda: self._listener)

    def subscribe_claimable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever a run may have become claimable — written by this process
        or any other — or the earliest wake-up may have moved; returns the unsubscribe function."""
        return self._wakeups.subscribe_claimable(callback)

    def _token(self) -> str:
        """A token unique to one write call (see ``last_write``)."""
        self._writes += 1
        return f"{self._sender}:{self._writes}"

    def _emit(self, *keys: str) -> None:
        """After a commit: wake waiters here at once, and tell the other processes."""
        self._wakeups.publish(keys)
        if self._listener is not None:
            self._listener.send(keys)

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            raise StoreError("the PostgreSQL store is not open; call init() first")
        return self._listener

    # -- runs ----------------------------------------------------------------------------------------
    async def create_run(self, run: NewRun, event: NewEvent) -> tuple[Run, bool]:
        params = {
            "id": run.id, "job": run.job_name, "jv": run.job_version, "input": dumps(run.input),
            "labels": dumps(dict(run.labels)), "idem": run.idempotency_key, "ckey": run.concurrency_key,
            "at": run.created_at, "parent": run.parent_id, "pstep": run.parent_step,
            "lk": list(run.labels), "lv": list(run.labels.values()),
            "etype": event.type, "edata": dumps(event.data), "eat": event.at,
        }  # fmt: skip

        async def op(conn: Conn) -> tuple[Run, bool]:
            for _ in range(5):
                row = await (await conn.execute(CREATE, params)).fetchone()
                if row is not None:
                    return row_to_run(row), True
                existing = await self._existing(conn, run)  # a fresh snapshot: sees the winner
                if existing is not None:
                    return existing, existing.id == run.id
            raise StoreError(f"could not create run {run.id!r}: its id or keys keep conflicting")

        created, new = await self._db.run(op)
        if new:
            self._emit(created.id, RUNS_KEY, CLAIMABLE_KEY)
        return created, new

    @staticmethod
    async def _existing(conn: Conn, run: NewRun) -> Run | None:
        mine = await (await conn.execute(f"{RUN_SELECT} WHERE id = %s", (run.id,))).fetchone()
        if mine is not None:  # an earlier attempt of this call committed; its answer was lost
            return row_to_run(mine)
        if run.parent_id is not None and run.parent_step is not None:
            cur = await conn.execute(
                f"{RUN_SELECT} WHERE parent_id = %s AND parent_step = %s", (run.parent_id, run.parent_step)
            )
            row = await cur.fetchone()
            if row is not None:
                return row_to_run(row)
        if run.idempotency_key is not None:
            cur = await conn.execute(
                f"{RUN_SELECT} WHERE job_name = %s AND idempotency_key = %s", (run.job_name, run.idempotency_key)
            )
            row = await cur.fetchone()
            if row is not None:
                return row_to_run(row)
        return None

    async def get_run(self, run_id: str) -> Run | None:
        async def op(conn: Conn) -> Run | None:
            row = await (await conn.execute(f"{RUN_SELECT} WHERE id = %s", (run_id,))).fetchone()
            return None if row is None else row_to_run(row)

        return await self._db.run(op)

    async def list_runs(self, filter: RunFilter) -> tuple[list[Run], int]:
        where: list[str] = []
        params: list[Any] = []
        if filter.job_name is not None:
            where.append("job_name = %s")
            params.append(filter.job_name)
        if filter.statuses is not None:
            where.append("status = ANY(%s::text[])")
            params.append(list(filter.statuses))
        if filter.parent_id is not None:
            where.append("parent_id = %s")
            params.append(filter.parent_id)
        for key, value in (filter.labels or {}).items():
            where.append("id IN (SELECT run_id FROM run_labels WHERE key = %s AND value = %s)")
            params.extend((key, value))
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        async def op(conn: Conn) -> tuple[list[Run], int]:
            total = await (await conn.execute(f"SELECT count(*) FROM runs {clause}", params)).fetchone()
            cur = await conn.execute(
                f"{RUN_SELECT} {clause} ORDER BY pos DESC LIMIT %s OFFSET %s", [*params, filter.limit, filter.offset]
            )
            return [row_to_run(r) for r in await cur.fetchall()], int(total[0]) if total else 0

        return await self._db.run(op, tx=True)

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
        params: dict[str, Any] = {
            "names": names, "pn": [p[0] for p in pairs], "pv": [p[1] for p in pairs], "now": now,
            "owner": owner, "lease": lease_until, "skip": list(exclude),
        }  # fmt: skip
        refused: list[str] = []
        fast = await self._db.run(lambda conn: _claim_fast(conn, params))
        if isinstance(fast, Run):
            return await self._claimed(fast)
        if fast is None:
            return None

        async def op(conn: Conn) -> Run | bool | None:
            row = await (await conn.execute(CANDIDATE, {**params, "skip": [*params["skip"], *refused]})).fetchone()
            if row is None:
                return None
            run_id, status, wait, key = row
            if key is not None:
                # Serialise claims of this key, then look again with a fresh snapshot: another
                # server may have just claimed (or a late insert made older) a run of the key.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.schema, "ckey", key),))
                free = await conn.execute(
                    f"SELECT {KEY_FREE.format(a='r')} FROM runs r WHERE r.id = %s", (run_id,)
                )
                ok = await free.fetchone()
                if not (ok and ok[0]):
                    refused.append(run_id)
                    return False
            claimed = await (await conn.execute(CLAIM, {**params, "id": run_id})).fetchone()
            assert claimed is not None
            return _claimed(claimed, wait if status == "suspended" else None)

        for _ in range(8):
            result = await self._db.run(op, tx=True)
            if result is False:
                continue
            return await self._claimed(result) if isinstance(result, Run) else None
        return None

    async def _claimed(self, run: Run) -> Run:
        if run.wait is not None and run.wait.children:
            # The children it waited for no longer count it down. Its own transaction, after the
            # claim: row locks go child before parent, never the other way.
            await self._db.run(functools.partial(_forget_children, parent_id=run.id))
        self._emit(run.id, RUNS_KEY)
        return run

    async def renew_lease(self, run_id: str, epoch: int, lease_until: float) -> Run | None:
        async def op(conn: Conn) -> Run | None:
            cur = await conn.execute(
                f"UPDATE runs SET lease_expires_at = %s WHERE id = %s AND epoch = %s AND status = 'running' "
                f"RETURNING {RUN_COLUMNS}, {NO_FSYNC}",
                (lease_until, run_id, epoch),
            )
            row = await cur.fetchone()
            return None if row is None else row_to_run(row)

        return await self._db.run(op)

    async def release_lease(self, run_id: str, epoch: int, now: float) -> bool:
        async def op(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE runs SET status = 'pending', owner = NULL, lease_expires_at = NULL, updated_at = %s, "
                f"version = {V} WHERE id = %s AND epoch = %s AND status = 'running'",
                (now, run_id, epoch),
            )
            return cur.rowcount == 1

        released = await self._db.run(op)
        if released:
            self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        return released

    async def expire_leases(self, owner: str, now: float) -> int:
        async def op(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE runs SET lease_expires_at = %s WHERE owner = %s AND status = 'running'", (now - 1, owner)
            )
            return cur.rowcount

        count = await self._db.run(op)
        if count:
            self._emit(CLAIMABLE_KEY)
        return count

    async def lease_owners(self, now: float) -> set[str]:
        async def op(conn: Conn) -> set[str]:
            cur = await conn.execute(
                "SELECT DISTINCT owner FROM runs WHERE status = 'running' AND owner IS NOT NULL "
                "AND lease_expires_at >= %s",
                (now,),
            )
            return {r[0] for r in await cur.fetchall()}

        return await self._db.run(op)

    # -- events and steps ----------------------------------------------------------------------------
    async def _append_one(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None,
        step: StepRecord | None,
    ) -> list[Event]:
        n = len(events)
        token = self._token()
        params: dict[str, Any] = {"id": run_id, "epoch": epoch, "n": n, "at": events[-1].at if events else None,
                                  "token": token, **events_params(events)}  # fmt: skip
        if progress is not None:
            params["progress"] = progress_json(progress)
        if step is not None:
            params.update(_step_values(step))
        sql = APPENDS[(epoch is not None, progress is not None, step is not None)]

        async def op(conn: Conn) -> int:
            row = await (await conn.execute(sql, params)).fetchone()
            if row is None:
                applied = await _applied(conn, run_id, token)
                if applied is not None:
                    return applied
                if epoch is None:
                    raise RunNotFound(f"no run with id {run_id!r}")
                raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
            return int(row[0])

        last = await self._db.run(op)
        self._emit(run_id, RUNS_KEY) if progress is not None else self._emit(run_id)
        first = last - n + 1
        return [Event(run_id, first + i, e.type, e.data, e.at) for i, e in enumerate(events)]

    async def append_events(
        self,
        run_id: str,
        epoch: int | None,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        return await self._append_one(run_id, epoch, events, progress, None)

    async def commit_step(
        self,
        run_id: str,
        epoch: int,
        step: StepRecord,
        events: Sequence[NewEvent],
        progress: Progress | None = None,
    ) -> list[Event]:
        return await self._append_one(run_id, epoch, events, progress, step)

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
        n = len(events)
        params = {
            "id": run_id, "epoch": epoch, "status": status, "output": dumps(output), "error": error, "now": now,
            "expires": expires_at, "progress": progress_json(progress), "n": n, "bad": status != "completed",
            **events_params(events),
        }  # fmt: skip

        async def op(conn: Conn) -> Any:
            row = await (await conn.execute(FINISH, params)).fetchone()
            if row is None:
                raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
            return row

        row = await self._db.run(op)
        run = row_to_run(row[2:])
        parent_woke = row[1] is not None and row[1] <= now
        # A finished run frees its concurrency key; a child may have woken its parent.
        if row[0] is not None or parent_woke:
            self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        else:
            self._emit(run_id, RUNS_KEY)
        first = run.last_seq - n + 1
        return run, [Event(run_id, first + i, e.type, e.data, e.at) for i, e in enumerate(events)]

    async def cancel_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        async def op(conn: Conn) -> tuple[Run, list[Event]]:
            row = await (await conn.execute(f"{RUN_SELECT} WHERE id = %s FOR UPDATE", (run_id,))).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            run = row_to_run(row)
            if run.is_terminal:
                raise InvalidRunState(f"run {run_id!r} is already {run.status}; only unfinished runs can be cancelled")
            if run.status in ("running", "suspended"):  # its execution raises RunCancelled in the job
                wake = ", wake_at = %(now)s" if run.status == "suspended" else ""
                cur = await conn.execute(
                    f"UPDATE runs SET cancel_requested = true, updated_at = %(now)s{wake}, version = {V} "
                    f"WHERE id = %(id)s RETURNING {RUN_COLUMNS}",
                    {"now": now, "id": run_id},
                )
                updated = await cur.fetchone()
                assert updated is not None
                return row_to_run(updated), []
            awaited_by = (await (await conn.execute(
                "SELECT awaited_by FROM runs WHERE id = %s", (run_id,))).fetchone() or (None,))[0]  # fmt: skip
            cur = await conn.execute(
                "UPDATE runs SET status = 'cancelled', epoch = epoch + 1, owner = NULL, lease_expires_at = NULL, "
                f"finished_at = %s, updated_at = %s, awaited_by = NULL, last_seq = last_seq + 1, version = {V} "
                f"WHERE id = %s RETURNING {RUN_COLUMNS}",
                (now, now, run_id),
            )
            updated = await cur.fetchone()
            assert updated is not None
            cancelled = row_to_run(updated)
            written = await insert_events(conn, run_id, cancelled.last_seq, [event])
            await child_ended(conn, awaited_by, "cancelled", now)
            return cancelled, written

        result = await self._db.run(op, tx=True)
        self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        return result

    async def retry_run(self, run_id: str, now: float, event: NewEvent) -> tuple[Run, list[Event]]:
        async def op(conn: Conn) -> tuple[Run, list[Event]]:
            row = await (await conn.execute("SELECT status FROM runs WHERE id = %s FOR UPDATE", (run_id,))).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if row[0] not in ("failed", "cancelled"):
                raise InvalidRunState(f"run {run_id!r} is {row[0]}; only failed or cancelled runs can be retried")
            cur = await conn.execute(
                "UPDATE runs SET status = 'pending', attempt = attempt + 1, epoch = epoch + 1, error = NULL, "
                "output = NULL, finished_at = NULL, expires_at = NULL, cancel_requested = false, wait = NULL, "
                f"wake_at = NULL, updated_at = %s, last_seq = last_seq + 1, version = {V} WHERE id = %s "
                f"RETURNING {RUN_COLUMNS}",
                (now, run_id),
            )
            updated = await cur.fetchone()
            assert updated is not None
            run = row_to_run(updated)
            return run, await insert_events(conn, run_id, run.last_seq, [event])

        result = await self._db.run(op, tx=True)
        self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        return result

    async def set_expiry(self, run_id: str, expires_at: float | None) -> None:
        async def op(conn: Conn) -> None:
            cur = await conn.execute("UPDATE runs SET expires_at = %s WHERE id = %s", (expires_at, run_id))
            if cur.rowcount == 0:
                raise RunNotFound(f"no run with id {run_id!r}")

        await self._db.run(op)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        async def op(conn: Conn) -> list[StepRecord]:
            cur = await conn.execute(f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = %s ORDER BY idx", (run_id,))
            return [row_to_step(run_id, r) for r in await cur.fetchall()]

        return await self._db.run(op)

    async def read_events(self, run_id: str, from_seq: int = 0, limit: int = 1000) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            cur = await conn.execute(
                "SELECT seq, type, data, at FROM events WHERE run_id = %s AND seq >= %s ORDER BY seq LIMIT %s",
                (run_id, max(from_seq, 0), limit),
            )
            return [Event(run_id, r[0], r[1], loads(r[2]), r[3]) for r in await cur.fetchall()]

        return await self._db.run(op)

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> None:
        async def op(conn: Conn) -> Any:
            return await (await conn.execute("SELECT last_seq FROM runs WHERE id = %s", (run_id,))).fetchone()

        with self._wakeups.expecting(run_id) as woken:  # before the read: a commit meanwhile counts
            row = await self._db.run(op)
            if row is None or row[0] > after_seq:
                return
            await self._wakeups.until(woken, timeout)

    # -- deletion ------------------------------------------------------------------------------------
    async def _delete(self, conn: Conn, run_ids: list[str], now: float) -> list[str]:
        """Delete runs with all they own (children first locked, then their parents woken)."""
        cur = await conn.execute(
            "SELECT id, awaited_by FROM runs WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE", (run_ids,)
        )
        rows = await cur.fetchall()
        ids = [r[0] for r in rows]
        if not ids:
            return []
        for _, parent in rows:
            await child_ended(conn, parent, "deleted", now)
        for table, column in (("run_inbox", "run_id"), ("events", "run_id"), ("steps", "run_id"),
                              ("run_labels", "run_id"), ("runs", "id")):  # fmt: skip
            await conn.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s::text[])", (ids,))
        await conn.execute(
            f"INSERT INTO run_tombstones (version, run_id, deleted_at) SELECT {V} + x.i, x.id, %s "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS x(id, i)",
            (now, ids),
        )
        return ids

    async def delete_run(self, run_id: str) -> bool:
        ids = await self._db.run(lambda conn: self._delete(conn, [run_id], now()), tx=True)
        if ids:
            self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        return bool(ids)

    async def sweep(self, now: float) -> int:
        total = 0
        while True:

            async def op(conn: Conn) -> list[str]:
                cur = await conn.execute("SELECT id FROM runs WHERE expires_at <= %s LIMIT 5000", (now,))
                ids = [r[0] for r in await cur.fetchall()]
                return await self._delete(conn, ids, now) if ids else []

            ids = await self._db.run(op, tx=True)
            if ids:
                self._emit(*ids, RUNS_KEY, CLAIMABLE_KEY)
            total += len(ids)
            if len(ids) < 5000:
                break

        async def tombs(conn: Conn) -> None:
            # Tombstones only serve list watchers catching up; a day is plenty.
            await conn.execute("DELETE FROM run_tombstones WHERE deleted_at < %s", (now - 86400,))

        await self._db.run(tombs)
        return total


async def _applied(conn: Conn, run_id: str, token: str) -> int | None:
    """The run's ``last_seq`` when its last write was the call holding ``token`` (an earlier
    attempt of this very call committed), else None."""
    row = await (await conn.execute("SELECT last_write, last_seq FROM runs WHERE id = %s", (run_id,))).fetchone()
    return int(row[1]) if row is not None and row[0] == token else None


async def _claim_fast(conn: Conn, params: dict[str, Any]) -> Run | bool | None:
    """The claimed run; None when nothing is runnable; True when the candidate has a key."""
    row = await (await conn.execute(CLAIM_FAST, params)).fetchone()
    if row is None:
        return None
    if row[3] is None:
        return True
    return _claimed(row[3:], row[1] if row[0] == "suspended" else None)


async def _forget_children(conn: Conn, parent_id: str) -> None:
    await conn.execute("UPDATE runs SET awaited_by = NULL WHERE awaited_by = %s", (parent_id,))


def _claimed(row: Sequence[Any], wait: str | None) -> Run:
    """The claimed run, with the wait it woke from (the stored run keeps none)."""
    run = row_to_run(row)
    return replace(run, wait=Wait.from_json(loads(wait))) if wait is not None else run
