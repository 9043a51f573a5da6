"""The run-change feed of the PostgreSQL store: a mixin of :class:`~stepstone.stores.postgres.PostgresStore`.

A change's ``version`` is ``xid << 16 | k`` — the id of the transaction that wrote it, ``k``
numbering its changes — and a reader returns only versions below the *horizon*: the oldest
transaction of this database still in flight (``HORIZON``, read in a statement of its own, so
its snapshot is older than the read's). Every version below the horizon is final and every later
change will be above it: watchers resume with no gap, and no counter row serialises writers. A
long write transaction in the same database holds the feed back (not the runs) until it ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._models import RunChange
from .._rows import row_to_run
from .._wakeups import RUNS_KEY
from ._sql import HORIZON, RUN_SELECT

if TYPE_CHECKING:
    from .._wakeups import Wakeups
    from ._conn import Conn, Database

__all__ = ["FeedMixin"]


class FeedMixin:
    """Mixed into PostgresStore, which provides the attributes below."""

    if TYPE_CHECKING:
        _db: Database
        _wakeups: Wakeups

    async def _horizon(self, conn: Conn) -> int:
        row = await (await conn.execute(HORIZON)).fetchone()
        assert row is not None
        return int(row[0])

    async def run_changes(self, after_version: int, limit: int = 100) -> list[RunChange]:
        async def op(conn: Conn) -> list[RunChange]:
            horizon = await self._horizon(conn)
            cur = await conn.execute(
                f"{RUN_SELECT} WHERE version > %s AND version < %s ORDER BY version LIMIT %s",
                (after_version, horizon, limit),
            )
            changes = [RunChange(r[21], r[0], row_to_run(r)) for r in await cur.fetchall()]
            cur = await conn.execute(
                "SELECT version, run_id FROM run_tombstones WHERE version > %s AND version < %s "
                "ORDER BY version LIMIT %s",
                (after_version, horizon, limit),
            )
            changes.extend(RunChange(v, rid, None) for v, rid in await cur.fetchall())
            changes.sort(key=lambda c: c.version)
            return changes[:limit]

        return await self._db.run(op)

    async def _runs_version(self, conn: Conn) -> int:
        horizon = await self._horizon(conn)
        cur = await conn.execute(
            "SELECT GREATEST((SELECT max(version) FROM runs WHERE version < %(h)s), "
            "(SELECT max(version) FROM run_tombstones WHERE version < %(h)s))",
            {"h": horizon},
        )
        row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def runs_version(self) -> int:
        return await self._db.run(self._runs_version)

    async def wait_run_changes(self, after_version: int, timeout: float) -> None:
        with self._wakeups.expecting(RUNS_KEY) as woken:
            if await self._db.run(self._runs_version) > after_version:
                return
            await self._wakeups.until(woken, timeout)
