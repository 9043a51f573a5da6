"""Where ``use_job`` keeps the current run id per job, so that a reload reattaches to it.

``Storage`` is a three-method protocol over strings. ``MemoryStorage`` is a dict (the default on
CPython: one per process, so a second ``use_job`` in the same process resumes the run);
``LocalStorage`` (from :mod:`stepstone.browser`) is the page's ``window.localStorage``, the default
in Pyodide. Stdlib only at import time: ``LocalStorage`` imports ``js`` when it is created.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .. import browser
from ..browser._storage import LocalStorage

__all__ = ["LocalStorage", "MemoryStorage", "Storage", "default_storage"]


@runtime_checkable
class Storage(Protocol):
    """A small string key-value store (``localStorage`` has this shape)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryStorage:
    """A dict behind the Storage protocol."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def set(self, key: str, value: str) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


_process_storage = MemoryStorage()


def default_storage() -> Storage:
    """``LocalStorage`` in a page, else one ``MemoryStorage`` shared by the process."""
    if browser.in_pyodide():
        try:
            return LocalStorage()
        except Exception:  # a worker has no localStorage
            return _process_storage
    return _process_storage
