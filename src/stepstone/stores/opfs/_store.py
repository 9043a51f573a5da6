"""``opfs://NAME`` in a dedicated worker: the log store (:mod:`._core`) on OPFS files, one tab at
a time.

A ``FileSystemSyncAccessHandle`` locks its file, so one worker holds a database: it takes the Web
Lock ``stepstone-opfs:NAME`` at ``init()`` and keeps it until ``close()`` (the browser frees it
when the tab closes). Another tab that opens the same database gets ``StoreError`` (code
``store_busy``); in worker mode (:func:`stepstone.browser.worker.serve`) that tab's worker forwards
its page's calls to the holder over the BroadcastChannel :attr:`OPFSStore.relay_channel` and takes
the database over when the holder's tab closes (``init(wait=True)``).

Files: ``stepstone/NAME/data-<generation>.log`` in the origin's OPFS root.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone; the core never imports it.
"""

from __future__ import annotations

from ..._errors import StoreError
from ...browser._locks import WebLock, has_web_locks, request_lock
from ...browser._opfs import OPFSDirectory, SyncFile, has_sync_access, remove_directory
from ._core import COMPACT_AT, LogStore

__all__ = ["OPFSStore", "StoreBusy"]

_ROOT = "stepstone"


class StoreBusy(StoreError):
    """Another tab (another worker) holds this OPFS database."""

    code = "store_busy"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise StoreError(
            f"an OPFS database name must be a non-empty file name without '/' or a backslash, not {name!r}"
        )
    return name


class _Directory:
    """The :class:`~._core.LogDir` of one database: ``data-<gen>.log`` files in its directory."""

    def __init__(self, directory: OPFSDirectory, timeout: float) -> None:
        self._dir = directory
        self._timeout = timeout

    async def generations(self) -> list[int]:
        gens = []
        for name in await self._dir.names():
            if name.startswith("data-") and name.endswith(".log") and name[5:-4].isdigit():
                gens.append(int(name[5:-4]))
        return sorted(gens)

    async def open(self, gen: int) -> SyncFile:
        return await self._dir.open_file(f"data-{gen}.log", self._timeout)

    async def remove(self, gen: int) -> None:
        await self._dir.remove(f"data-{gen}.log")


class OPFSStore(LogStore):
    """A store in this origin's OPFS (survives reloads, tab closes and browser restarts), for an
    engine in a dedicated worker. ``durability``: ``"relaxed"`` (the default: a returned write is
    in the file, so it survives the tab and the browser) or ``"strict"`` (``flush()`` too: it also
    survives an OS crash or a power cut). ``open_timeout``: seconds to wait for a file another
    handle still holds (a tab that is closing)."""

    def __init__(
        self, name: str, *, durability: str = "relaxed", open_timeout: float = 10.0, compact_at: int = COMPACT_AT
    ) -> None:
        super().__init__(durability=durability, compact_at=compact_at)
        self.name = _check_name(name)
        self.url = f"opfs://{name}"
        #: Where the workers of other tabs find the one that holds this database (worker mode).
        self.relay_channel = f"stepstone-opfs:{name}"
        self.open_timeout = open_timeout
        self._lock: WebLock | None = None

    def __repr__(self) -> str:
        return f"<OPFSStore {self.url}>"

    async def init(self, *, wait: bool = False) -> None:
        """Open (creating) the database. It must not be held by another tab: ``StoreBusy``
        (``code == "store_busy"``), or with ``wait=True`` wait until it is free."""
        if self.is_open:
            return
        if not has_sync_access():
            raise StoreError(
                f"the {self.url} store needs a dedicated Web Worker: OPFS's FileSystemSyncAccessHandle "
                "exists only there, not in a page. Run the engine in worker mode "
                "(stepstone.browser.worker.start_worker), or use indexeddb:// in the page"
            )
        if not has_web_locks():
            raise StoreError(f"the {self.url} store needs Web Locks (navigator.locks), which this browser lacks")
        lock = await request_lock(self.relay_channel, if_available=not wait)
        if lock is None:
            raise StoreBusy(
                f"OPFS database {self.name!r} is held by another tab of this site: a FileSystemSyncAccessHandle "
                "locks its files, so one tab holds it at a time. In worker mode the other tabs forward their "
                f"calls to that tab; to share one database between engines in several tabs, use indexeddb://{self.name}"
            )
        self._lock = lock
        try:
            await super().init()
        except BaseException:
            self._release()
            raise

    async def _open_dir(self) -> _Directory:
        return _Directory(await OPFSDirectory.open([_ROOT, self.name]), self.open_timeout)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._release()

    @staticmethod
    async def destroy(name: str) -> bool:
        """Delete the database ``name`` with all its files (it must not be open anywhere)."""
        return await remove_directory([_ROOT, _check_name(name)])
