"""The Origin Private File System, for the OPFS store: directories, and files read and written
synchronously through ``FileSystemSyncAccessHandle``, which exists only in dedicated workers.
Pyodide only.

Opening is asynchronous (directory and file handles, ``createSyncAccessHandle``); reading,
writing, truncating and flushing an open file are synchronous calls, so a store method can write
with no ``await`` in between. A sync access handle locks its file: opening one that another
handle still holds (a tab that just closed) is retried until ``timeout``.
"""

from __future__ import annotations

from typing import Any

import js
from pyodide.code import run_js
from pyodide.ffi import to_js

from .._errors import StoreError
from ._values import describe_js_error, is_nil

__all__ = ["OPFSDirectory", "SyncFile", "has_sync_access", "remove_directory"]


def has_sync_access() -> bool:
    """True where ``FileSystemSyncAccessHandle`` exists (a dedicated worker) and OPFS is there."""
    storage = getattr(js.navigator, "storage", None)
    return (
        not is_nil(getattr(js, "FileSystemSyncAccessHandle", None))
        and not is_nil(storage)
        and not is_nil(getattr(storage, "getDirectory", None))
    )


_HELPERS: Any = None


def _helpers() -> Any:
    global _HELPERS
    if _HELPERS is None:
        _HELPERS = run_js(
            """({
  async dir(path) {
    let dir = await navigator.storage.getDirectory();
    for (const part of path) dir = await dir.getDirectoryHandle(part, { create: true });
    return dir;
  },
  async names(dir) {
    const out = [];
    for await (const name of dir.keys()) out.push(name);
    return out;
  },
  async open(dir, name, timeoutMs) {
    const file = await dir.getFileHandle(name, { create: true });
    const deadline = performance.now() + timeoutMs;
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      try {
        return await file.createSyncAccessHandle();
      } catch (error) {
        // another handle still holds the file (a tab that is closing): wait for it to let go
        const busy = error && (error.name === "NoModificationAllowedError" || error.name === "InvalidStateError");
        if (!busy || performance.now() + delay > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  },
  async remove(dir, name) {
    try {
      await dir.removeEntry(name, { recursive: true });
    } catch (error) {
      if (!error || error.name !== "NotFoundError") throw error;
    }
  },
  async removePath(path) {
    let dir = await navigator.storage.getDirectory();
    for (const part of path.slice(0, -1)) {
      try {
        dir = await dir.getDirectoryHandle(part);
      } catch (error) {
        if (error && error.name === "NotFoundError") return false;
        throw error;
      }
    }
    try {
      await dir.removeEntry(path[path.length - 1], { recursive: true });
      return true;
    } catch (error) {
      if (error && error.name === "NotFoundError") return false;
      throw error;
    }
  },
})"""
        )
    return _HELPERS


class SyncFile:
    """One file open through a ``FileSystemSyncAccessHandle``; every method is synchronous."""

    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name = name
        self._at = js.Object.new()

    def _options(self, offset: int) -> Any:
        self._at.at = offset
        return self._at

    def size(self) -> int:
        return int(self._handle.getSize())

    def read(self, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        buffer = js.Uint8Array.new(size)
        n = int(self._handle.read(buffer, self._options(offset)))
        data: bytes = buffer.subarray(0, n).to_bytes()
        return data

    def write(self, offset: int, data: bytes) -> None:
        written = int(self._handle.write(to_js(data), self._options(offset)))
        if written != len(data):
            raise StoreError(f"OPFS wrote {written} of {len(data)} bytes to {self.name} (out of space?)")

    def truncate(self, size: int) -> None:
        self._handle.truncate(size)

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class OPFSDirectory:
    """A directory of this origin's OPFS, created (with its parents) when opened."""

    def __init__(self, handle: Any, path: list[str]) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    async def open(cls, path: list[str]) -> OPFSDirectory:
        try:
            handle = await _helpers().dir(to_js(path))
        except Exception as exc:
            raise StoreError(f"cannot open the OPFS directory {'/'.join(path)}: {describe_js_error(exc)}") from exc
        return cls(handle, path)

    async def names(self) -> list[str]:
        found = await _helpers().names(self._handle)
        return [str(name) for name in found]

    async def open_file(self, name: str, timeout: float) -> SyncFile:
        try:
            handle = await _helpers().open(self._handle, name, int(timeout * 1000))
        except Exception as exc:
            where = "/".join([*self.path, name])
            raise StoreError(f"cannot open the OPFS file {where}: {describe_js_error(exc)}") from exc
        return SyncFile(handle, name)

    async def remove(self, name: str) -> None:
        await _helpers().remove(self._handle, name)


async def remove_directory(path: list[str]) -> bool:
    """Delete a directory of this origin's OPFS with all it holds; False if there was none."""
    try:
        return bool(await _helpers().removePath(to_js(path)))
    except Exception as exc:
        raise StoreError(f"cannot delete the OPFS directory {'/'.join(path)}: {describe_js_error(exc)}") from exc
