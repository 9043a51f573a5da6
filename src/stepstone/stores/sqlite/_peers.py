"""Cross-process wake-ups for the SQLite store: one Unix datagram socket per open store, in the
``<db>-owners/`` directory beside the owner lock files.

After a write commits, the keys it published (a run id, the run list, "claimable", a stream) are
sent as one small datagram to every other process's socket in that directory; a receiving store
publishes them on its in-process hub, so a run triggered by one process starts in another at once
and an SSE client of one server follows a run executed by another without waiting for a poll.
Datagrams are best effort (a full receive buffer drops one): the engine's polling interval stays
the safety net. A socket file nobody listens on (its process died) refuses the datagram and is
deleted by the sender.

Paths longer than ``sun_path`` allows go through ``/proc/self/fd/<dir fd>/`` on Linux; where that
is missing too, or Unix datagram sockets are (Windows, Pyodide), wake-ups stay in-process. Stdlib
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable

__all__ = ["Peers"]

log = logging.getLogger("stepstone")

_SUFFIX = ".sock"
_MAX_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_MAX_DATAGRAM = 8192


class Peers:
    """This store's socket and the other sockets of its database's directory."""

    def __init__(self, directory: str, on_keys: Callable[[list[str]], None]) -> None:
        self.directory = directory
        self._on_keys = on_keys
        self._sock: socket.socket | None = None
        self._dir_fd: int | None = None
        self._name = ""
        self._prefix = f"{os.getpid()}-"
        self._peers: list[str] = []
        self._listed_at: int | None = None
        self._listed_mono = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def _address(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        if len(path.encode()) <= _MAX_PATH or self._dir_fd is None:
            return path
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def open(self) -> bool:
        """Bind this store's socket and start receiving; False (and in-process wake-ups only)
        where Unix datagram sockets or a short enough path are not to be had."""
        if not hasattr(socket, "AF_UNIX"):
            return False
        try:
            os.makedirs(self.directory, exist_ok=True)
            if len(os.path.join(self.directory, "x" * 40).encode()) > _MAX_PATH:
                if not os.path.isdir("/proc/self/fd"):
                    return False
                self._dir_fd = os.open(self.directory, os.O_RDONLY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._name = f"{self._prefix}{secrets.token_hex(6)}{_SUFFIX}"
            sock.bind(self._address(self._name))
        except OSError as exc:
            log.info("stepstone: no cross-process wake-ups for %s: %s", self.directory, exc)
            self._close_dir()
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            with contextlib.suppress(OSError):
                os.unlink(self._address(self._name))
            sock.close()
        self._close_dir()

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _readable(self) -> None:
        sock = self._sock
        keys: set[str] = set()
        while sock is not None:
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            keys.update(data.decode("utf-8", "replace").split("\n"))
        keys.discard("")
        if keys:
            self._on_keys(sorted(keys))

    def _list(self) -> list[str]:
        """The other sockets of the directory (re-read when the directory changed, and at least
        once a second: two changes within one mtime tick look like one)."""
        try:
            stamp = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        now = time.monotonic()
        if stamp != self._listed_at or now - self._listed_mono > 1.0:
            self._listed_at = stamp
            self._listed_mono = now
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._peers = [n for n in names if n.endswith(_SUFFIX) and not n.startswith(self._prefix)]
        return self._peers

    def send(self, keys: Iterable[str]) -> None:
        """One datagram of ``keys`` to every other process's store on this database."""
        sock = self._sock
        if sock is None:
            return
        peers = self._list()
        if not peers:
            return
        payload = "\n".join(keys).encode("utf-8", "replace")
        if not payload:
            return
        chunks = [payload] if len(payload) <= _MAX_DATAGRAM else _split(payload)
        for name in list(peers):
            address = self._address(name)
            for chunk in chunks:
                try:
                    sock.sendto(chunk, address)
                except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(address)
                    self._listed_at = None
                    break
                except OSError:  # its buffer is full, or it is going away: polling catches up
                    break


def _split(payload: bytes) -> list[bytes]:
    out: list[bytes] = []
    chunk = b""
    for key in payload.split(b"\n"):
        if chunk and len(chunk) + len(key) + 1 > _MAX_DATAGRAM:
            out.append(chunk)
            chunk = b""
        chunk = key if not chunk else chunk + b"\n" + key
    if chunk:
        out.append(chunk)
    return out
