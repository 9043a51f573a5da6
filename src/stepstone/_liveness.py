"""Proof that a lease owner is dead, so its runs can be resumed at once instead of after the lease.

An owner holds an exclusive OS lock while it lives; the kernel drops the lock the instant the process
dies (even on SIGKILL). A lock another owner can take is therefore proof of death. The browser has the
same shape with Web Locks. Stores offer one through ``store.liveness()``; the engine uses it if there.
Imports ``fcntl`` lazily: it does not exist in Pyodide or on Windows.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import IO, Protocol

__all__ = ["FileLockLiveness", "Liveness"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class Liveness(Protocol):
    async def hold(self, owner: str) -> None:
        """Take ``owner``'s proof-of-life lock; held until :meth:`release` or process death."""

    async def release(self, owner: str) -> None: ...

    async def is_dead(self, owner: str) -> bool:
        """True only when ``owner`` is provably gone; False when alive or unknown."""


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
