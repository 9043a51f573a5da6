"""Owner liveness on PostgreSQL: a session-level advisory lock per owner, held on the store's
listening connection (``_listen.py``), so it lives exactly as long as that session; a lock another
session can take proves its owner's session is gone — at once, even after a SIGKILL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..._errors import StoreError
from ._conn import Conn, Database
from ._listen import Listener
from ._schema import lock_key

__all__ = ["AdvisoryLockLiveness"]


class AdvisoryLockLiveness:
    """Owner liveness on PostgreSQL: a session-level advisory lock per owner, held on the store's
    listening connection; a lock another session can take proves its owner's session is gone.
    ``listener()`` is the store's current listener (None once closed)."""

    def __init__(self, schema: str, db: Database, listener: Callable[[], Listener | None]) -> None:
        self._schema = schema
        self._db = db
        self._listener = listener
        self._held: set[str] = set()

    def _key(self, owner: str) -> int:
        return lock_key(self._schema, "owner", owner)

    async def hold(self, owner: str) -> None:
        listener = self._listener()
        if listener is None:
            raise StoreError("the PostgreSQL store is not open; call init() first")
        await listener.command("hold", self._key(owner))
        self._held.add(owner)

    async def release(self, owner: str) -> None:
        if owner in self._held:
            self._held.discard(owner)
            listener = self._listener()
            if listener is not None:
                # Best effort: a lock not released here still ends with the session.
                with contextlib.suppress(StoreError):
                    await listener.command("release", self._key(owner), timeout=5.0)

    async def is_dead(self, owner: str) -> bool:
        listener = self._listener()
        if owner in self._held or listener is None or not listener.settled:
            return False

        async def op(conn: Conn) -> bool:
            row = await (await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (self._key(owner),))).fetchone()
            return bool(row and row[0])

        return await self._db.run(op)
