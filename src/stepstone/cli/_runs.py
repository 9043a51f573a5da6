"""``stepstone trigger``, ``runs``, ``retry``, ``cancel``, ``delete`` and ``send-event``."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
from typing import Any

from .._errors import WaitTimeout
from .._models import RUN_STATUSES
from ._common import (
    CLIError,
    Opened,
    Source,
    add_source_options,
    describe,
    existing,
    label,
    parse_json,
    positive,
    print_json,
    progress_text,
    run_wait_text,
    when,
)  # fmt: skip
from ._tail import Renderer, final_run, follow

__all__ = ["add_action_parsers", "add_run_parsers"]


async def cmd_trigger(args: argparse.Namespace) -> int:
    payload = parse_json(args.input)
    labels = dict(label(item) for item in args.label or [])
    async with Opened(args) as source:
        result = await source.trigger(
            args.job, payload, idempotency_key=args.idempotency_key,
            concurrency_key=args.concurrency_key, labels=labels or None,
        )
        if not args.wait:
            print_json({"runId": result.id, "created": result.created, "run": result.to_json()}, sys.stdout)
            return 0
        # progress goes to stderr (a bar on a terminal, lines otherwise); the finished run to stdout
        err = sys.stderr
        renderer = Renderer(err, live=err.isatty(), as_json=False, err=err, quiet=args.quiet)
        if not args.quiet:
            verb = "started" if result.created else "found (same idempotency key)"
            renderer.note(f"stepstone: {verb} run {result.id} of {result.job_name}; waiting for it to finish…")
        try:
            async with asyncio.timeout(args.timeout):
                await follow(source, result.id, 0, renderer)
                run = await final_run(source, result.id)
        except TimeoutError:
            raise WaitTimeout(f"run {result.id!r} is still not finished after {args.timeout:g} s") from None
        finally:
            renderer.end()
        if run is None:
            raise CLIError(f"run {result.id!r} was deleted while waiting for it")
        print_json(run.to_json(), sys.stdout)
        return 0 if run.status == "completed" else 1


async def _job_names(source: Source) -> list[str] | None:
    """The jobs the server (or, with --store, the --jobs modules) can run; None when unknown."""
    listed = source.jobs()  # type: ignore[attr-defined]  # async on a Client, sync on an Engine
    jobs = await listed if inspect.isawaitable(listed) else listed
    return sorted(job.name for job in jobs) or None


async def _no_match(args: argparse.Namespace, source: Source, statuses: list[str] | None) -> str:
    chosen = [f"job {args.job!r}"] if args.job else []
    chosen += [f"status {','.join(statuses)}"] if statuses else []
    chosen += [f"label {item}" for item in args.label or []]
    if args.job:
        names = await _job_names(source)
        where = "in this store's --jobs" if args.store else "on this server"
        if names is not None and args.job not in names:
            chosen[0] += f" is not a job {where}; its jobs: {', '.join(names)}"
    return f"no runs match ({'; '.join(chosen)})" if chosen else "no runs yet"


async def cmd_runs(args: argparse.Namespace) -> int:
    statuses = [s.strip() for s in args.status.split(",")] if args.status else None
    labels = dict(label(item) for item in args.label or [])
    async with Opened(args) as source:
        try:
            page = await source.get_runs(
                job_name=args.job, status=statuses, labels=labels or None,
                limit=args.limit, offset=args.offset,
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        if args.json:
            print_json({"runs": [r.to_json() for r in page], "total": page.total}, sys.stdout)
            return 0
        if not page.total:
            print(await _no_match(args, source, statuses))
            return 0
    now = time.time()
    rows = [["RUN ID", "JOB", "STATUS", "PROGRESS", "ATTEMPT", "CREATED"]]
    rows += [[r.id, r.job_name, r.status, progress_text(r), str(r.attempt), when(r.created_at)] for r in page]
    # a suspended run says what it waits for; a child run names its parent (columns shown when needed)
    if any(r.status == "suspended" for r in page):
        rows[0].append("WAITING FOR")
        for row, run in zip(rows[1:], page, strict=True):
            row.append(run_wait_text(run, now))
    if any(r.parent_id for r in page):
        rows[0].append("PARENT")
        for row, run in zip(rows[1:], page, strict=True):
            row.append(run.parent_id or "")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    shown = f"{args.offset + 1}-{args.offset + len(page)}" if len(page) else "0"
    print(f"({shown} of {page.total})")
    return 0


async def cmd_act(args: argparse.Namespace) -> int:
    """``retry``, ``cancel`` or ``delete`` one run, then say what was done (the store refuses a
    wrong state: ``run '…' is already completed; only unfinished runs can be cancelled``)."""
    async with Opened(args) as source:
        before = await existing(source, args.run_id)
        if args.command == "delete":
            await source.delete_run(args.run_id)
            run, done = before, "deleted run {id} ({run}) with its steps and events"
        elif args.command == "retry":
            run, done = await source.retry(args.run_id), "retried run {id} ({run}); it resumes where it stopped"
        else:
            run, done = await source.cancel(args.run_id), "cancelled run {id} ({run}); it was {was}"
    if args.json:
        print_json({"deleted": True, "run": run.to_json()} if args.command == "delete" else run.to_json(), sys.stdout)
    else:
        print(done.format(id=run.id, run=describe(run), was=before.status))
    return 0


async def cmd_send_event(args: argparse.Namespace) -> int:
    """Send an event to a run: its next ``step.wait_for_event(NAME)`` takes it."""
    data = parse_json(args.data, "--data")
    async with Opened(args) as source:
        before = await existing(source, args.run_id)
        await source.send_event(args.run_id, args.name, data)  # a finished run: the store's refusal
    if args.json:
        print_json({"sent": True, "runId": before.id, "name": args.name, "run": before.to_json()}, sys.stdout)
        return 0
    waiting = before.status == "suspended" and before.wait is not None and args.name in before.wait.events
    after = ("it was waiting for it and wakes now" if waiting else
             f"it is kept for the run's next wait_for_event({args.name!r})")  # fmt: skip
    print(f"sent event {args.name} to run {before.id} ({describe(before)}); {after}")
    return 0


def add_run_parsers(sub: Any) -> None:
    """``trigger`` and ``runs``."""
    p = sub.add_parser("trigger", help="start a run")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--input", metavar="JSON", help="the input as JSON, or @file.json")
    p.add_argument("--wait", action="store_true",
                   help="follow the run (progress on stderr) and print it when it finishes; exit 1 unless it completed")
    p.add_argument("--timeout", type=positive(float), metavar="S", help="with --wait: give up after S s")
    p.add_argument("--quiet", action="store_true", help="with --wait: no progress on stderr")
    p.add_argument("--idempotency-key", metavar="KEY")
    p.add_argument("--concurrency-key", metavar="KEY")
    p.add_argument("--label", action="append", metavar="KEY=VALUE")
    add_source_options(p)
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("runs", help="list runs, newest first (a suspended run says what it waits for)")
    p.add_argument("--status", help=f"comma-separated: {','.join(RUN_STATUSES)}")
    p.add_argument("--job", metavar="NAME")
    p.add_argument("--label", action="append", metavar="KEY=VALUE")
    p.add_argument("--limit", type=positive(int), default=20)
    p.add_argument("--offset", type=positive(int), default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_source_options(p)
    p.set_defaults(func=cmd_runs)


def add_action_parsers(sub: Any) -> None:
    """``retry``, ``cancel``, ``delete`` and ``send-event``."""
    for name, text in (
        ("retry", "put a failed or cancelled run back to pending (it resumes at its first unfinished step)"),
        ("cancel", "cancel an unfinished (pending, running or suspended) run"),
        ("delete", "delete a run with its steps and events (no question asked; says what it deleted)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("--json", action="store_true", help="print the run as JSON")
        add_source_options(p)
        p.set_defaults(func=cmd_act)

    text = "send an event to a run: its next step.wait_for_event(NAME) takes it (kept until then)"
    p = sub.add_parser("send-event", help=text, description=text)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("name", metavar="NAME", help="the event's name, e.g. approval")
    p.add_argument("--data", metavar="JSON", help="the event's data as JSON, or @file.json (default null)")
    p.add_argument("--json", action="store_true", help="print {sent, runId, name, run} as JSON")
    add_source_options(p)
    p.set_defaults(func=cmd_send_event)
