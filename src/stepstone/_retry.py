"""Retry pacing, for step retries and run-level retries alike. Stdlib only."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Backoff", "check_retries", "retry_delay"]

#: Seconds before the next attempt: a number (doubled after each failed attempt) or a function of
#: the attempt that just failed (1, 2, …).
Backoff = float | Callable[[int], float]

_MAX_DELAY = 86400.0


def check_retries(what: str, retries: int, backoff: Backoff) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{what}: retries must be a whole number >= 0, not {retries!r}")
    if callable(backoff):
        return
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 0 <= backoff < _MAX_DELAY:
        raise ValueError(f"{what}: backoff must be seconds (>= 0) or a function of the attempt, not {backoff!r}")


def retry_delay(backoff: Backoff, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, …): ``backoff(attempt)`` for a
    function, else ``backoff * 2 ** (attempt - 1)`` (doubling from ``backoff``), at most a day."""
    delay = backoff(attempt) if callable(backoff) else backoff * 2 ** min(attempt - 1, 40)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay != delay:
        raise ValueError(f"a backoff function must return seconds, not {delay!r}")
    return float(min(max(delay, 0.0), _MAX_DELAY))
