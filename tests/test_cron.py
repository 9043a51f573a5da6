"""Cron expressions: every field form, names, steps, the day-of-month/day-of-week rule, seconds,
time zones with DST, and errors that name the field."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from stepstone._cron import Cron, CronError

UTC = dt.UTC


def at(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=UTC).timestamp()


def fires(expression: str, start: float, count: int, tz: str = "UTC") -> list[str]:
    cron, out, t = Cron.parse(expression, tz), [], start
    for _ in range(count):
        t = cron.next_after(t)
        out.append(dt.datetime.fromtimestamp(t, UTC).strftime("%a %Y-%m-%d %H:%M:%S"))
    return out


def test_fields_ranges_steps_lists_and_names() -> None:
    assert fires("*/15 9-10 * * *", at(2027, 1, 4), 3) == [
        "Mon 2027-01-04 09:00:00", "Mon 2027-01-04 09:15:00", "Mon 2027-01-04 09:30:00",
    ]  # fmt: skip
    assert fires("0 12 1,15 jan-feb *", at(2027, 1, 2), 3) == [
        "Fri 2027-01-15 12:00:00", "Mon 2027-02-01 12:00:00", "Mon 2027-02-15 12:00:00",
    ]  # fmt: skip
    assert fires("0 8 * * sat,7", at(2027, 1, 4), 2) == ["Sat 2027-01-09 08:00:00", "Sun 2027-01-10 08:00:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    assert fires("0 0 13 * fri", at(2027, 8, 1), 3) == [
        "Fri 2027-08-06 00:00:00", "Fri 2027-08-13 00:00:00", "Fri 2027-08-20 00:00:00",
    ]  # fmt: skip


def test_six_fields_put_seconds_first() -> None:
    assert fires("*/20 * * * * *", at(2027, 1, 1), 3) == [
        "Fri 2027-01-01 00:00:20", "Fri 2027-01-01 00:00:40", "Fri 2027-01-01 00:01:00",
    ]  # fmt: skip


def test_time_zones_and_dst() -> None:
    # 02:30 does not exist in Paris on 2027-03-28 (clocks jump 02:00 -> 03:00): that day is skipped
    assert fires("30 2 * * *", at(2027, 3, 27, 12), 2, "Europe/Paris") == [
        "Mon 2027-03-29 00:30:00", "Tue 2027-03-30 00:30:00",
    ]  # fmt: skip
    # 02:30 happens twice on 2027-10-31: fired once, the first time (CEST, 00:30Z)
    assert fires("30 2 * * *", at(2027, 10, 30, 12), 2, "Europe/Paris") == [
        "Sun 2027-10-31 00:30:00", "Mon 2027-11-01 01:30:00",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "the minute field: 60 is out of range 0-59"),
        ("* 24 * * *", "the hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "the day of month field: 0 is out of range 1-31"),
        ("* * * 13 *", "the month field: 13 is out of range 1-12"),
        ("* * * * someday", "the day of week field: 'someday' is not a number or a name"),
        ("*/0 * * * *", "the minute field: the step in '*/0' must be a whole number above 0"),
        ("10-5 * * * *", "the minute field: the range '10-5' runs backwards"),
        ("1,,2 * * * *", "the minute field '1,,2' has an empty list item"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        Cron.parse(expression).next_after(0.0)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        Cron.parse("0 0 * * *", "Mars/Olympus")


def test_ticks_between_keeps_the_latest() -> None:
    cron = Cron.parse("0 * * * *")
    assert cron.ticks_between(at(2027, 1, 1), at(2027, 1, 1, 5), 2) == [at(2027, 1, 1, 4), at(2027, 1, 1, 5)]
    assert cron.ticks_between(at(2027, 1, 1), at(2027, 1, 1, 5), 0) == []
