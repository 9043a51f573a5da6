"""Cron expressions, parsed and stepped through time. Stdlib only (``zoneinfo`` for time zones).

Five fields — minute, hour, day of month, month, day of week — or six with seconds first (``*/10
* * * * *``: every ten seconds). Each field takes ``*``, numbers, ranges ``a-b``, steps ``*/n`` and
``a-b/n``, lists ``a,b``, month names (``jan``) and day names (``mon``; 0 and 7 are Sunday). As in
classic cron, when both day of month and day of week are restricted, a day matching either one
counts. Times are computed in the schedule's time zone (``zoneinfo``), so ``0 7 * * *`` in
``Europe/Paris`` is 07:00 Paris time all year; a local time skipped by a DST jump is skipped, one
repeated is fired once.

    >>> cron = Cron.parse("0 7 * * mon-fri", "Europe/Paris")
    >>> cron.next_after(1767225600.0)   # 2026-01-01T00:00Z -> Thursday 07:00 Paris (06:00Z)
    1767247200.0
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Cron", "CronError"]

_NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "day of week": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}
_FIELDS = (  # name, lowest, highest
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


class CronError(ValueError):
    """A cron expression that cannot be read; the message names the field and why."""


def _number(text: str, name: str, low: int, high: int) -> int:
    names = _NAMES.get(name)
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + (1 if name == "month" else 0)
    if not text.isdigit():
        also = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"the {name} field: {text!r} is not a number{also}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"the {name} field: {value} is out of range {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"the {name} field {text!r} has an empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"the {name} field: the step in {part!r} must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, low, high), _number(b, name, low, high)
            if first > last:
                raise CronError(f"the {name} field: the range {base!r} runs backwards")
        else:
            first = _number(base, name, low, high)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    if name == "day of week" and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Read ``expression`` (five fields, or six with seconds first) in ``timezone``."""
        if not isinstance(expression, str):
            raise CronError(f"a cron expression is a string like '0 7 * * *', not {expression!r}")
        parts = expression.split()
        if len(parts) not in (5, 6):
            raise CronError(
                f"{expression!r} has {len(parts)} fields; a cron expression has 5 (minute hour day-of-month "
                "month day-of-week) or 6 (seconds first)"
            )
        if len(parts) == 5:
            parts = ["0", *parts]
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"unknown time zone {timezone!r} (an IANA name like 'Europe/Paris' or 'UTC')") from exc
        read = (_field(text, name, low, high) for text, (name, low, high) in zip(parts, _FIELDS, strict=True))
        s, m, h, d, mo, w = read
        return cls(expression, timezone, s, m, h, d, mo, w, parts[3] == "*", parts[5] == "*")

    def _day_matches(self, day: dt.date) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        in_days, in_weekdays = day.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_after(self, timestamp: float) -> float:
        """The first fire time strictly after ``timestamp`` (epoch seconds)."""
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.fromtimestamp(int(timestamp) + 1, zone).replace(tzinfo=None)
        day = start.date()
        for _ in range(366 * 8):  # every day of the next eight years: enough for any valid expression
            if day.month in self.months and self._day_matches(day):
                found = self._first_in_day(day, start if day == start.date() else None, zone)
                if found is not None and found > timestamp:
                    return found
            day += dt.timedelta(days=1)
        raise CronError(f"{self.expression!r} never fires (no such date in eight years)")

    def _first_in_day(self, day: dt.date, not_before: dt.datetime | None, zone: ZoneInfo) -> float | None:
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                for second in sorted(self.seconds):
                    local = dt.datetime(day.year, day.month, day.day, hour, minute, second)
                    if not_before is not None and local < not_before:
                        continue
                    aware = local.replace(tzinfo=zone)
                    if aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != local:
                        continue  # skipped by a DST jump
                    return aware.timestamp()  # fold 0: a repeated local time fires once, the first time
        return None

    def ticks_between(self, after: float, until: float, limit: int) -> list[float]:
        """Fire times in ``(after, until]``, at most the ``limit`` latest."""
        out: list[float] = []
        t = after
        while True:
            t = self.next_after(t)
            if t > until:
                return out[-limit:] if limit else []
            out.append(t)
            if len(out) > 10 * max(limit, 1) + 1000:
                out = out[-limit:] if limit else []
