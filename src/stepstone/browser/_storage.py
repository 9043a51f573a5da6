"""``LocalStorage``: the page's ``window.localStorage`` behind the hooks' ``Storage`` protocol.

Imports ``js`` when a ``LocalStorage`` is created, never at import time, so ``stepstone.hooks`` can
re-export it on CPython too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalStorage"]


class LocalStorage:
    """The page's ``window.localStorage`` (Pyodide only). Survives reloads and browser restarts."""

    def __init__(self, prefix: str = "") -> None:
        import js  # only when a page asks for it

        self._ls: Any = js.localStorage
        self.prefix = prefix

    def get(self, key: str) -> str | None:
        value = self._ls.getItem(self.prefix + key)
        # a missing key is JS null, which arrives as pyodide.ffi.jsnull (falsy, but not None)
        return value if isinstance(value, str) else None

    def set(self, key: str, value: str) -> None:
        self._ls.setItem(self.prefix + key, value)

    def delete(self, key: str) -> None:
        self._ls.removeItem(self.prefix + key)
