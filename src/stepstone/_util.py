"""Small helpers shared by the engine and the stores: ids, JSON, clocks, error text. Stdlib only."""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = ["dumps", "error_text", "loads", "new_id", "now"]


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
    """``Type: message`` (or just ``Type``): how a failed step or run records its error."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
