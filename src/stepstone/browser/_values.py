"""Values across the JavaScript seam: Python data to fresh JS values and back, JS ``null`` and
``undefined``, and readable text for a JS error. Pyodide only.

Values cross as JSON text (``JSON.parse`` / ``JSON.stringify``): no nested proxies to leak, JS
``null`` and ``undefined`` both come back as ``None`` (never ``pyodide.ffi.jsnull``), and integers
keep their exact value because stores keep user payloads as JSON strings.
"""

from __future__ import annotations

import json
from typing import Any

import js
import pyodide.ffi

#: JS ``null`` as Pyodide (0.26 and later) hands it to Python. Looked up rather than imported: the
#: ``pyodide-py`` that type-checks this on Python < 3.14 is 0.25, which predates it.
jsnull: Any = getattr(pyodide.ffi, "jsnull", None)

__all__ = ["describe_js_error", "is_nil", "js_value", "py_value"]


def js_value(value: Any) -> Any:
    """A fresh JS value (object, array, string, number, null) equal to the JSON of ``value``."""
    return js.JSON.parse(json.dumps(value, separators=(",", ":"), allow_nan=False))


def is_nil(value: Any) -> bool:
    return value is None or value is jsnull


def py_value(value: Any) -> Any:
    """A JS value as plain Python data; ``null`` and ``undefined`` become ``None``."""
    if is_nil(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(str(js.JSON.stringify(value)))


def describe_js_error(error: Any) -> str:
    """``Name: message`` of a DOMException (or whatever JS gave us)."""
    if is_nil(error):
        return "unknown error"
    name = getattr(error, "name", None)
    message = getattr(error, "message", None)
    if name and message:
        return f"{name}: {message}"
    return str(name or message or error)
