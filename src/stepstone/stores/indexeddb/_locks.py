"""Web Locks for the IndexedDB store: proof of life for tabs, and one lock per executing run.

- :class:`WebLockLiveness` (the :class:`~stepstone._liveness.Liveness` protocol): an engine holds
  ``<prefix>owner:<owner>`` for its whole life. The browser frees the lock the moment the tab closes,
  reloads or crashes, so a lease owner with no held lock is provably gone and its runs are resumed
  at once instead of after the lease.
- :class:`RunLocks`: the page holds ``<prefix>run:<run_id>`` while it executes a run. A running run
  whose lease has lapsed but whose lock another tab still holds is *not* taken over: that tab is
  alive (a background tab's timers may be throttled past its lease) and still executing it.

Within one page the lease and epoch alone decide (several engines may share a page); the locks only
speak across tabs. Without ``navigator.locks`` both degrade to the lease rule.
Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from ..._errors import StoreError
from ...browser._locks import WebLock, has_web_locks, held_lock_names, request_lock

__all__ = ["RunLocks", "WebLockLiveness"]

log = logging.getLogger("stepstone")


class WebLockLiveness:
    """``is_dead(owner)`` is True when no tab of this origin holds ``owner``'s lock."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix + "owner:"
        self._held: dict[str, WebLock] = {}

    async def hold(self, owner: str) -> None:
        if owner in self._held:
            return
        try:
            lock = await request_lock(self.prefix + owner, if_available=True)
        except StoreError as exc:  # without the lock this tab is merely never proven dead
            log.warning("stepstone: %s; runs of this tab resume only after their lease", exc)
            return
        if lock is None:
            log.warning("stepstone: the Web Lock of owner %s is held elsewhere; owner ids must be unique", owner)
            return
        self._held[owner] = lock

    async def release(self, owner: str) -> None:
        lock = self._held.pop(owner, None)
        if lock is not None:
            lock.release()

    async def is_dead(self, owner: str) -> bool:
        if owner in self._held:
            return False
        return self.prefix + owner not in await held_lock_names(self.prefix)


class RunLocks:
    """The runs this page executes, each under its own Web Lock, keyed by the claim's epoch."""

    _pages: ClassVar[dict[str, RunLocks]] = {}

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix + "run:"
        self.enabled = has_web_locks()
        self._held: dict[str, tuple[int, WebLock | None]] = {}

    @classmethod
    def shared(cls, prefix: str) -> RunLocks:
        """One registry per database per page, so every store object of the page agrees."""
        locks = cls._pages.get(prefix)
        if locks is None:
            locks = cls._pages[prefix] = cls(prefix)
        return locks

    async def held_elsewhere(self) -> set[str]:
        """Ids of runs whose lock another tab holds (a live tab is executing them)."""
        if not self.enabled:
            return set()
        names = await held_lock_names(self.prefix)
        return {name[len(self.prefix) :] for name in names} - set(self._held)

    async def claimed(self, run_id: str, epoch: int) -> None:
        """This page now executes ``run_id`` at ``epoch``: take (or keep) its lock."""
        if not self.enabled:
            return
        entry = self._held.get(run_id)
        if entry is not None:  # taken over inside this page: the page keeps the lock
            self._held[run_id] = (epoch, entry[1])
            return
        self._held[run_id] = (epoch, None)
        refused = False
        try:
            lock = await request_lock(self.prefix + run_id, if_available=True)
        except StoreError as exc:  # the lease still rules; the lock only guards throttled tabs
            log.warning("stepstone: %s", exc)
            lock, refused = None, True
        current = self._held.get(run_id)
        if current is None or current[0] != epoch or current[1] is not None:
            if lock is not None:  # released (or re-claimed) while we waited for the lock
                if current is not None and current[1] is None:
                    self._held[run_id] = (current[0], lock)
                else:
                    lock.release()
            return
        if lock is None and not refused:
            log.warning("stepstone: run %s was claimed while another tab still holds its lock", run_id)
        self._held[run_id] = (epoch, lock)

    def ended(self, run_id: str, epoch: int | None = None) -> None:
        """This page stopped executing ``run_id`` (finished, handed back, fenced off, deleted)."""
        entry = self._held.get(run_id)
        if entry is None or (epoch is not None and entry[0] != epoch):
            return
        del self._held[run_id]
        if entry[1] is not None:
            entry[1].release()
