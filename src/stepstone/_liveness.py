"""Proof that a lease owner is dead, so its runs can be resumed at once instead of after the lease.

An owner holds an exclusive OS lock while it lives; the kernel drops the lock the instant the process
dies (even on SIGKILL). A lock another owner can take is therefore proof of death. The browser has the
same shape with Web Locks, PostgreSQL with session advisory locks. Stores offer one through
``store.liveness()``; the worker uses it if there. This module is the protocol only (stdlib, no
I/O): the SQLite store's file locks are in ``stores/sqlite/_liveness.py``, the browser's Web Locks in
``stores/indexeddb/_locks.py``.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Liveness"]

class Liveness(Protocol):
    async def hold(self, owner: str) -> None:
        """Take ``owner``'s proof-of-life lock; held until :meth:`release` or process death."""

    async def release(self, owner: str) -> None: ...

    async def is_dead(self, owner: str) -> bool:
        """True only when ``owner`` is provably gone; False when alive or unknown."""
