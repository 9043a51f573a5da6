"""``stepstone schedules list | create | pause | resume | delete``: cron schedules on a server (or a
store), through ``client.schedules`` / ``engine.schedules``. Next fire times are local dates."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._cron import Cron, CronError
from .._schedules import Schedule
from ._common import CLIError, Opened, add_source_options, in_text, parse_json, positive, print_json, when

__all__ = ["add_parser"]


def _next_fire(schedule: Schedule) -> float | None:
    """When it fires next: as the schedule says, or (a schedule not planned yet, or just resumed)
    the next tick of its cron after now."""
    if schedule.paused:
        return None
    if schedule.next_fire_at is not None:
        return schedule.next_fire_at
    try:
        return Cron.parse(schedule.cron, schedule.timezone).next_after(time.time())
    except (CronError, ValueError):
        return None


def _next_text(schedule: Schedule, now: float) -> str:
    if schedule.paused:
        return "- (paused)"
    at = _next_fire(schedule)
    return f"{when(at)} ({in_text(at, now)})" if at else "-"


def _what(schedule: Schedule) -> str:
    return f"job {schedule.job} at '{schedule.cron}' ({schedule.timezone})"


def _as_json(schedule: Schedule) -> dict[str, Any]:
    return {**schedule.to_json(), "nextFireAt": _next_fire(schedule)}


async def cmd_list(args: argparse.Namespace) -> int:
    async with Opened(args) as source:
        schedules = await source.schedules.list()
    if args.json:
        print_json({"schedules": [_as_json(s) for s in schedules]}, sys.stdout)
        return 0
    if not schedules:
        print("no schedules yet (create one: stepstone schedules create NAME JOB CRON)")
        return 0
    now = time.time()
    rows = [("NAME", "JOB", "CRON", "TIMEZONE", "NEXT FIRE", "STATE")]
    rows += [(s.name, s.job, s.cron, s.timezone, _next_text(s, now), "paused" if s.paused else "active")
             for s in schedules]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def cmd_create(args: argparse.Namespace) -> int:
    payload = parse_json(args.input)
    if args.store and not args.jobs:
        raise CLIError("with --store, schedules create needs --jobs MODULE (the module defining the job)")
    async with Opened(args) as source:
        before = await source.schedules.get(args.name)
        schedule = await source.schedules.create(
            args.name, args.job, args.cron, timezone=args.timezone, input=payload, missed=args.missed,
            catch_up=args.catch_up,
        )
    if args.json:
        print_json(_as_json(schedule), sys.stdout)
        return 0
    verb = "created" if before is None else "unchanged:" if before.run_id == schedule.run_id else "replaced"
    at = _next_fire(schedule)
    print(f"{verb} schedule {schedule.name}: {_what(schedule)}; next fire {when(at)} ({in_text(at) if at else '-'})")
    return 0


async def cmd_control(args: argparse.Namespace) -> int:
    async with Opened(args) as source:
        if args.action == "delete":
            schedule = await source.schedules.get(args.name)
            if schedule is None:
                raise CLIError(f"no schedule named {args.name!r}")
            await source.schedules.delete(args.name)
        else:
            schedule = await getattr(source.schedules, args.action)(args.name)
    if args.json:
        print_json({"deleted": True, "schedule": _as_json(schedule)} if args.action == "delete" else _as_json(schedule),
                   sys.stdout)  # fmt: skip
        return 0
    if args.action == "pause":
        print(f"paused schedule {schedule.name} ({_what(schedule)}); ticks passed while paused are not fired")
    elif args.action == "resume":
        at = _next_fire(schedule)
        print(f"resumed schedule {schedule.name} ({_what(schedule)}); next fire {when(at)}"
              + (f" ({in_text(at)})" if at else ""))  # fmt: skip
    else:
        print(f"deleted schedule {schedule.name} ({_what(schedule)}); the runs it fired are kept")
    return 0


def add_parser(sub: Any) -> None:
    text = "cron schedules: list, create, pause, resume, delete"
    group = sub.add_parser("schedules", help=text, description=text)
    commands = group.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")

    p = commands.add_parser("list", help="every schedule, with its next fire time (local)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_source_options(p)
    p.set_defaults(func=cmd_list)

    text = "create (or replace) a schedule: fire JOB at every tick of CRON"
    p = commands.add_parser("create", help=text, description=text)
    p.add_argument("name", metavar="NAME")
    p.add_argument("job", metavar="JOB")
    p.add_argument("cron", metavar="CRON",
                   help="5 fields (minute hour day month weekday) or 6 with seconds first, e.g. '0 7 * * mon-fri'")
    p.add_argument("--timezone", default="UTC", metavar="TZ", help="IANA time zone of the cron times (default UTC)")
    p.add_argument("--input", metavar="JSON", help="the input of each run, as JSON or @file.json")
    p.add_argument("--missed", choices=["skip", "catch_up"], default="skip",
                   help="ticks missed while nothing ran: skip them (default) or fire the latest --catch-up N")
    p.add_argument("--catch-up", type=positive(int), default=1, metavar="N",
                   help="with --missed catch_up: how many missed ticks to fire late (default 1)")
    p.add_argument("--json", action="store_true", help="print the schedule as JSON")
    add_source_options(p)
    p.set_defaults(func=cmd_create)

    for action, text in (
        ("pause", "pause a schedule: no tick fires until it is resumed"),
        ("resume", "resume a paused schedule (ticks passed meanwhile are not fired)"),
        ("delete", "delete a schedule (the runs it fired are kept)"),
    ):
        p = commands.add_parser(action, help=text, description=text)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print the schedule as JSON")
        add_source_options(p)
        p.set_defaults(func=cmd_control, action=action)
