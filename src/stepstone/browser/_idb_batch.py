"""Many IndexedDB puts with one call into JavaScript, for the IndexedDB store's group commit.

Each crossing of the Python/JavaScript boundary costs microseconds that add up when a group
commit writes a dozen records per step: :func:`put_all` sends every record of a transaction as one
JSON text, and a small JavaScript function parses it and puts each record into its object store.
Pyodide only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pyodide.code import run_js

__all__ = ["put_all"]

_PUT_ALL: Any = None


def put_all(tx: Any, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Put each ``(object store name, record)`` into the IDBTransaction ``tx``, in order."""
    global _PUT_ALL
    if not records:
        return
    if _PUT_ALL is None:
        _PUT_ALL = run_js(
            "(tx, text) => { for (const [name, record] of JSON.parse(text)) tx.objectStore(name).put(record); }"
        )
    _PUT_ALL(tx, json.dumps(records, separators=(",", ":"), allow_nan=False))
