"""Suspension in the PostgreSQL store: parking a run with what it waits for, the per-run inbox of
sent events, and child runs waking their parent. A mixin of
:class:`~stepstone.stores.postgres.PostgresStore`, with the SQL helpers its runs share.

As in the SQLite store a suspended run is claimable once ``wake_at <= now``, and everything here
only moves ``wake_at``. What SQLite gets from its single writer, this store gets from row locks
taken in one order — children before their parent: a parent suspending locks the children it
awaits (so a child ending meanwhile is seen) before its own row, and ``send_event`` locks the run
before queueing, so an event sent while the run is suspending is seen by it or wakes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..._errors import InvalidRunState, RunNotFound, StaleLeaseError
from ..._models import Event, Progress, Run, StepRecord, Wait
from ..._util import dumps, loads
from .._contract import NewEvent
from .._rows import RUN_COLUMNS, STEP_COLUMNS, progress_json, row_to_run
from .._wakeups import CLAIMABLE_KEY, RUNS_KEY

if TYPE_CHECKING:
    from ._conn import Conn, Database

__all__ = ["V", "WaitsMixin", "child_ended", "events_params", "insert_events"]

#: The change version of the writing transaction (``xid << 16``; see ``_store.py``).
V = "(pg_current_xact_id()::text::bigint << 16)"

#: One statement: lock the run (a suspension in flight sees the event, or is seen), queue the
#: event unless the run finished, and wake the run when it is parked waiting for that name.
_SEND = """
WITH r AS (SELECT id, status, wait FROM runs WHERE id = %(id)s FOR UPDATE),
i AS (INSERT INTO run_inbox (run_id, name, data, sent_at)
      SELECT r.id, %(name)s, %(data)s, %(now)s FROM r WHERE r.status NOT IN ('completed', 'failed', 'cancelled')),
u AS (UPDATE runs SET wake_at = %(now)s FROM r
      WHERE runs.id = r.id AND r.status = 'suspended' AND (r.wait::jsonb -> 'events') ? %(name)s RETURNING runs.id)
SELECT r.status, EXISTS (SELECT 1 FROM u) FROM r"""


#: One statement, fenced: take the oldest undelivered event of that name, record the step as
#: completed with it (its output built as JSON text here), append the events.
_TAKE = f"""
WITH held AS (SELECT id FROM runs WHERE id = %(id)s AND epoch = %(epoch)s AND status = 'running'
                AND last_write IS DISTINCT FROM %(token)s FOR UPDATE),
m AS (SELECT i.seq, i.data FROM run_inbox i, held
      WHERE i.run_id = held.id AND i.name = %(name)s AND i.delivered_at IS NULL ORDER BY i.seq LIMIT 1),
d AS (UPDATE run_inbox SET delivered_at = %(at)s FROM m
      WHERE run_inbox.run_id = %(id)s AND run_inbox.seq = m.seq RETURNING m.data),
s AS (INSERT INTO steps (run_id, {STEP_COLUMNS})
      SELECT %(id)s, %(s0)s, %(s1)s, 'completed', '{{"event":' || %(name_json)s || ',"data":' || d.data || '}}',
             %(s4)s, %(s5)s, %(s6)s, %(s7)s, %(s8)s, %(s9)s FROM d
      ON CONFLICT (run_id, name) DO UPDATE SET idx = excluded.idx, status = excluded.status,
          output = excluded.output, error = excluded.error, started_at = excluded.started_at,
          completed_at = excluded.completed_at, attempt = excluded.attempt, run_attempt = excluded.run_attempt,
          retry_at = excluded.retry_at),
r AS (UPDATE runs SET last_seq = runs.last_seq + %(n)s, last_write = %(token)s,
          updated_at = COALESCE(%(last_at)s::float8, runs.updated_at)
      FROM d WHERE runs.id = %(id)s RETURNING runs.last_seq),
e AS (INSERT INTO events (run_id, seq, type, data, at)
      SELECT %(id)s, r.last_seq - %(n)s + x.i, x.type, x.data, x.at FROM r,
             unnest(%(types)s::text[], %(datas)s::text[], %(ats)s::float8[]) WITH ORDINALITY AS x(type, data, at, i))
SELECT EXISTS (SELECT 1 FROM held), (SELECT data FROM d), (SELECT last_seq FROM r)"""


def events_params(events: Sequence[NewEvent]) -> dict[str, Any]:
    return {"types": [e.type for e in events], "datas": [dumps(e.data) for e in events], "ats": [e.at for e in events]}


async def insert_events(conn: Conn, run_id: str, first: int, events: Sequence[NewEvent]) -> list[Event]:
    """Insert ``events`` numbered from ``first`` (``last_seq`` was already moved on)."""
    if events:
        await conn.execute(
            "INSERT INTO events (run_id, seq, type, data, at) SELECT %(id)s, %(first)s + x.i - 1, x.type, x.data, "
            "x.at FROM unnest(%(types)s::text[], %(datas)s::text[], %(ats)s::float8[]) "
            "WITH ORDINALITY AS x(type, data, at, i)",
            {"id": run_id, "first": first, **events_params(events)},
        )
    return [Event(run_id, first + i, e.type, e.data, e.at) for i, e in enumerate(events)]


async def child_ended(conn: Conn, parent: str | None, status: str, now: float) -> bool:
    """A child awaited by suspended ``parent`` finished (or was deleted; its row is locked and
    unmarked by the caller): count it off and wake the parent when it was the last one awaited or
    did not complete. True when the parent woke."""
    if parent is None:
        return False
    cur = await conn.execute(
        "UPDATE runs SET awaiting = awaiting - 1, "
        "wake_at = CASE WHEN awaiting - 1 <= 0 OR %s THEN %s ELSE wake_at END "
        "WHERE id = %s AND status = 'suspended' RETURNING wake_at",
        (status != "completed", now, parent),
    )
    row = await cur.fetchone()
    return row is not None and row[0] is not None and row[0] <= now


class WaitsMixin:
    """Mixed into PostgresStore, which provides the attributes below."""

    if TYPE_CHECKING:
        _db: Database

        def _emit(self, *keys: str) -> None: ...

        def _token(self) -> str: ...

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
        n = len(events)

        async def op(conn: Conn) -> tuple[Run, list[Event]]:
            # Children first (the ones an earlier suspension marked, then the awaited ones)...
            await conn.execute("UPDATE runs SET awaited_by = NULL WHERE awaited_by = %s", (run_id,))
            unfinished: list[str] = []
            ready = False
            if wait.children:
                cur = await conn.execute(
                    "SELECT id, status FROM runs WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE",
                    (list(wait.children),),
                )
                status: dict[str, str] = {r[0]: r[1] for r in await cur.fetchall()}
                active = ("pending", "running", "suspended")
                unfinished = [c for c in wait.children if status.get(c) in active]
                badly = any(status.get(c) not in (*active, "completed") for c in wait.children)
                ready = not unfinished or badly
            # ...then the run itself: fenced, locked, so a concurrent send_event is seen or sees us.
            held = await (await conn.execute(
                "SELECT 1 FROM runs WHERE id = %s AND epoch = %s AND status = 'running' FOR UPDATE", (run_id, epoch)
            )).fetchone()  # fmt: skip
            if held is None:
                raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
            queued = False
            if wait.events:
                row = await (await conn.execute(
                    "SELECT 1 FROM run_inbox WHERE run_id = %s AND delivered_at IS NULL AND name = ANY(%s::text[]) "
                    "LIMIT 1", (run_id, list(wait.events)),
                )).fetchone()  # fmt: skip
                queued = row is not None
            awaiting = 0
            if unfinished and not ready:
                await conn.execute("UPDATE runs SET awaited_by = %s WHERE id = ANY(%s::text[])", (run_id, unfinished))
                awaiting = len(unfinished)
            cur = await conn.execute(
                "UPDATE runs SET status = 'suspended', owner = NULL, lease_expires_at = NULL, wait = %(wait)s, "
                "wake_at = CASE WHEN cancel_requested OR %(now_wake)s THEN %(now)s ELSE %(until)s::float8 END, "
                "awaiting = %(awaiting)s, updated_at = %(now)s, attempt = COALESCE(%(attempt)s, attempt), "
                "error = COALESCE(%(error)s, error), progress = COALESCE(%(progress)s, progress), "
                f"last_seq = last_seq + %(n)s, version = {V} WHERE id = %(id)s RETURNING {RUN_COLUMNS}",
                {
                    "wait": dumps(wait.to_json()), "now_wake": queued or ready, "now": now, "until": wait.until,
                    "awaiting": awaiting, "attempt": attempt, "error": error, "progress": progress_json(progress),
                    "n": n, "id": run_id,
                },
            )
            row = await cur.fetchone()
            assert row is not None
            run = row_to_run(row)
            return run, await insert_events(conn, run_id, run.last_seq - n + 1, events)

        result = await self._db.run(op, tx=True)
        self._emit(run_id, RUNS_KEY, CLAIMABLE_KEY)
        return result

    async def send_event(self, run_id: str, name: str, data: Any, now: float) -> None:
        text = dumps(data)

        async def op(conn: Conn) -> bool:
            row = await (await conn.execute(_SEND, {"id": run_id, "name": name, "data": text, "now": now})).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if row[0] in ("completed", "failed", "cancelled"):
                raise InvalidRunState(f"run {run_id!r} is already {row[0]}; it takes no more events")
            return bool(row[1])

        woke = await self._db.run(op)
        self._emit(run_id, CLAIMABLE_KEY) if woke else self._emit(run_id)

    async def take_event(
        self, run_id: str, epoch: int, name: str, step: StepRecord, events: Sequence[NewEvent]
    ) -> tuple[bool, Any, list[Event]]:
        n = len(events)
        token = self._token()
        params = {
            "id": run_id, "epoch": epoch, "name": name, "name_json": dumps(name), "n": n, "token": token,
            "at": step.completed_at, "last_at": events[-1].at if events else None,
            "s0": step.name, "s1": step.index, "s4": step.error, "s5": step.started_at, "s6": step.completed_at,
            "s7": step.attempt, "s8": step.run_attempt, "s9": step.retry_at, **events_params(events),
        }  # fmt: skip

        async def op(conn: Conn) -> Any:
            row = await (await conn.execute(_TAKE, params)).fetchone()
            if row is not None and row[0]:
                return row
            # An earlier attempt of this call may have committed (its answer lost): then the step
            # it recorded holds the event.
            done = await (await conn.execute(
                "SELECT r.last_seq, s.output FROM runs r JOIN steps s ON s.run_id = r.id AND s.name = %s "
                "WHERE r.id = %s AND r.last_write = %s", (step.name, run_id, token),
            )).fetchone()  # fmt: skip
            if done is None:
                raise StaleLeaseError(f"run {run_id!r} is no longer held at epoch {epoch}")
            return (True, dumps(loads(done[1])["data"]), done[0])

        row = await self._db.run(op)
        if row[1] is None:
            return False, None, []
        self._emit(run_id)
        first = int(row[2]) - n + 1
        return True, loads(row[1]), [Event(run_id, first + i, e.type, e.data, e.at) for i, e in enumerate(events)]

    async def next_wake(self, now: float) -> float | None:
        async def op(conn: Conn) -> Any:
            return await (await conn.execute("SELECT min(wake_at) FROM runs WHERE status = 'suspended'")).fetchone()

        row = await self._db.run(op)
        return None if row is None or row[0] is None else float(row[0])
