"""Small helpers shared by the engine and the stores: ids, JSON, clocks, error text. Stdlib only."""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = [
    "dumps",
    "error_text",
    "escape_text",
    "escape_unencodable",
    "json_copy",
    "loads",
    "new_id",
    "now",
    "unencodable",
]


def now() -> float:
    """Wall-clock seconds; stores persist these, so they must be comparable across processes."""
    return time.time()


def new_id() -> str:
    """A UUIDv7-shaped id: time-ordered (ms), 74 random bits, so ids sort by creation."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def dumps(value: Any) -> str:
    """Strict, compact JSON: NaN and Infinity are refused so every store round-trips the value."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def error_text(exc: BaseException) -> str:
    """``Type: message`` (or just ``Type``): how a failed step or run records its error. Always
    storable: a lone surrogate in the message (an ``os.fsdecode``-d file name) is escaped."""
    text = str(exc)
    return escape_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


# -- text every store can keep -----------------------------------------------------------------
# Python strings may hold lone surrogates ("\ud800", what os.fsdecode makes of undecodable bytes);
# UTF-8, and so SQLite, PostgreSQL and IndexedDB, cannot. The engine refuses them where values enter
# (input, keys, labels, step results, outputs) and escapes them where text is best effort (logs,
# progress messages, error texts), so no store ever sees one.
def unencodable(text: str) -> str | None:
    """The first character of ``text`` that UTF-8 cannot encode (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def escape_text(text: str) -> str:
    """``text`` with each lone surrogate written as the six characters ``\\udXXX``."""
    return text if unencodable(text) is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_unencodable(value: Any) -> Any:
    """``value`` with each lone surrogate in its strings (and keys) written as the six characters
    ``\\udXXX``; ``value`` itself when it has none (the common case costs one encode)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_unencodable(k): escape_unencodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_unencodable(v) for v in value]
    return value


def json_copy(value: Any) -> Any:
    """``value`` after a JSON round trip, as every store will give it back. Raises ValueError (or
    TypeError) when no store can keep it: not JSON, NaN or Infinity, or a lone surrogate."""
    text = dumps(value)
    bad = unencodable(text)
    if bad is not None:
        raise ValueError(f"it holds the lone surrogate {bad!r}, which is not valid Unicode text")
    return loads(text)
