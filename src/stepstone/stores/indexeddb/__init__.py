"""The IndexedDB store, for a page (or a worker) running the engine in Pyodide.

The store's logic lives here; every call into JavaScript goes through :mod:`stepstone.browser`
(transactions, key ranges, Web Locks, BroadcastChannel). Importable only inside Pyodide."""

from ._store import IndexedDBStore

__all__ = ["IndexedDBStore"]
