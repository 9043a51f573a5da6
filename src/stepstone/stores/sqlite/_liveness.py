"""Owner liveness for the SQLite store: one ``flock``-ed file per owner in a directory beside the
database. An owner holds its file's exclusive lock while it lives; the kernel drops the lock the
instant the process dies (even on SIGKILL), so a lock another process can take proves the owner
dead and its runs resume at once instead of after the lease.

Imports ``fcntl`` lazily: it does not exist in Pyodide or on Windows (there, nothing is proven and
leases expire as usual).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import IO

__all__ = ["FileLockLiveness"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class FileLockLiveness:
    """One ``flock``-ed file per owner in a directory beside the database."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._held: dict[str, IO[bytes]] = {}

    def _path(self, owner: str) -> str:
        return os.path.join(self.directory, _SAFE.sub("_", owner) + ".lock")

    async def hold(self, owner: str) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        os.makedirs(self.directory, exist_ok=True)
        fh = open(self._path(owner), "ab")  # noqa: SIM115 - held open for the owner's lifetime
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._held[owner] = fh

    async def release(self, owner: str) -> None:
        fh = self._held.pop(owner, None)
        if fh is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(owner))
            fh.close()

    async def is_dead(self, owner: str) -> bool:
        if owner in self._held:
            return False
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return False
        path = self._path(owner)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - never create: a missing file proves nothing
        except OSError:
            return False
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return True
