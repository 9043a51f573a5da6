"""``opfs://NAME`` — the store on the Origin Private File System, for an engine in a dedicated
worker (worker mode): an append-only log written through ``FileSystemSyncAccessHandle``.

``_core`` and ``_log`` hold the logic and the file format (stdlib only, testable anywhere); ``_store``
binds them to OPFS through :mod:`stepstone.browser` (a Web Lock per database: one tab holds it).
Importing this package imports no JavaScript; ``OPFSStore`` does when it is used.
"""

from ._core import LogStore

__all__ = ["LogStore", "OPFSStore"]


def __getattr__(name: str) -> object:
    if name == "OPFSStore":  # Pyodide only: imports js
        from ._store import OPFSStore

        return OPFSStore
    raise AttributeError(name)
