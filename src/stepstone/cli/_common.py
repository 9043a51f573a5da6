"""What the ``stepstone`` commands share: the one-line error, the jobs modules, where a command
connects (``--server`` through a Client, or ``--store`` directly), JSON arguments, and times
printed as dates (local in tables and lines, ISO 8601 UTC in JSON)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

from .._engine import Engine, create_engine
from .._jobs import Job
from .._models import Run, Wait
from .._schedules import SCHEDULE_JOB
from ..hooks._source import Source  # what both an Engine and a Client offer

__all__ = [
    "CLIError", "Opened", "Source", "add_engine_options", "add_source_options", "clock", "dated", "describe",
    "engine_from", "existing", "in_text", "iso", "label", "load_jobs", "parse_json", "positive", "print_json",
    "progress_text", "run_wait_text", "wait_text", "when",
]  # fmt: skip


class CLIError(Exception):
    """A problem to report in one line (no traceback), exit status 1."""


# -- jobs modules ------------------------------------------------------------------------------
def load_jobs(specs: Sequence[str]) -> list[Job]:
    """Import each module (comma-separated, repeatable) and collect every module-level Job."""
    if os.getcwd() not in sys.path:  # like uvicorn: `--jobs myjobs` finds ./myjobs.py
        sys.path.insert(0, os.getcwd())
    jobs: dict[str, Job] = {}
    for name in (n.strip() for spec in specs for n in spec.split(",")):
        if not name:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise CLIError(f"cannot import jobs module {name!r}: {exc}") from None
        found = [v for v in vars(module).values() if isinstance(v, Job)]
        if not found:
            raise CLIError(f"module {name!r} defines no stepstone.Job at module level")
        for job in found:
            other = jobs.get(job.name)
            if other is not None and other is not job:
                raise CLIError(f"two different jobs are named {job.name!r} (second one in {name!r})")
            jobs[job.name] = job
    return list(jobs.values())


def engine_from(args: argparse.Namespace, *, worker: bool) -> Engine:
    """An engine on ``--store`` with the ``--jobs`` modules' jobs and the timing options given."""
    options: dict[str, Any] = {"worker": worker}
    for key in ("concurrency", "polling_interval", "heartbeat_interval", "stale_threshold", "retention"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if getattr(args, "retention", None):
        options["sweep_interval"] = min(60.0, args.retention)
    try:
        engine = create_engine(args.store, **options)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for job in load_jobs(args.jobs or []):
        engine.register(job)
    return engine


# -- where a command connects ------------------------------------------------------------------
class Opened:
    """``async with Opened(args) as source``: a Client for --server, or an engine for --store."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.closer: Any = None

    async def __aenter__(self) -> Any:
        args = self.args
        if args.store:
            args.polling_interval = args.polling_interval or 0.25
            engine = engine_from(args, worker=False)
            await engine.init()
            self.closer = engine.stop
            return engine
        from ..client import Client

        url = args.server or os.environ.get("STEPSTONE_SERVER") or "http://127.0.0.1:8000"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CLIError(f"--server must be a URL like http://127.0.0.1:8000, not {url!r}")
        # a bare server URL means the default base path
        api_url = url.rstrip("/") if parts.path.strip("/") else url.rstrip("/") + "/api"
        headers = {}
        for header in args.header or []:
            key, sep, value = header.partition(":")
            if not sep or not key.strip():
                raise CLIError(f"--header must look like 'Name: value', not {header!r}")
            headers[key.strip()] = value.strip()
        token = args.token or os.environ.get("STEPSTONE_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # a stream gives up after 3 s without the server: the commands then say so and keep trying
        client = Client(api_url, headers=headers, reconnect_timeout=3.0)
        self.closer = client.aclose
        return client

    async def __aexit__(self, *exc: object) -> None:
        if self.closer is not None:
            await self.closer()


async def existing(source: Source, run_id: str) -> Run:
    run = await source.get_run(run_id)
    if run is None:
        raise CLIError(f"no run with id {run_id!r}")
    return run


# -- arguments -----------------------------------------------------------------------------------
def parse_json(text: str | None, option: str = "--input") -> Any:
    """The JSON text of an option, or of ``@file.json``; a clear one-line error otherwise."""
    if text is None:
        return None
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise CLIError(f"cannot read {option} file: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CLIError(f"{option} is not valid JSON: {exc}") from None


def label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CLIError(f"--label must look like key=value, not {item!r}")
    return key, value


def positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
        return value

    return parse


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=positive(int), help="runs executed at once (default 4)")
    p.add_argument("--polling-interval", type=positive(float), metavar="S", help="store poll period")
    p.add_argument("--heartbeat-interval", type=positive(float), metavar="S", help="lease renewal period")
    p.add_argument("--stale-threshold", type=positive(float), metavar="S", help="lease length")
    p.add_argument("--retention", type=positive(float), metavar="S", help="delete finished runs after S s")


def add_source_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="URL", help="server URL (default $STEPSTONE_SERVER or http://127.0.0.1:8000)")
    where.add_argument("--store", metavar="URL", help="open this store directly instead (no worker runs here)")
    p.add_argument("--jobs", action="append", metavar="MODULE", help="with --store: modules defining the jobs")
    p.add_argument("--token", help="bearer token (default $STEPSTONE_TOKEN)")
    p.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="extra HTTP header (repeatable)")
    p.set_defaults(polling_interval=None)


# -- output --------------------------------------------------------------------------------------
_TIME_KEYS = frozenset({"at", "createdAt", "updatedAt", "startedAt", "finishedAt", "expiresAt", "leaseExpiresAt",
                        "completedAt", "wakeAt", "until", "nextFireAt", "nextAttemptAt", "retryAt", "deadline"})


def when(t: float | None) -> str:
    """``2026-01-31 14:05:09``, local time (``-`` for none)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def iso(t: float) -> str:
    """``2026-01-31T13:05:09.123Z``: a time in JSON output."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


#: What a job or a user wrote, left as it is: inputs, outputs, stream values, labels, a log line's data.
_USER_KEYS = frozenset({"input", "output", "value", "labels"})


def dated(data: Any, _in_event_data: bool = False) -> Any:
    """JSON data with every epoch-seconds time field of stepstone's own (``createdAt``, an event's
    ``at``, a wait's ``until``, …) turned into an ISO 8601 string; what a job or a user wrote
    (inputs, outputs, a log line's ``data``) is left alone."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in _TIME_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = iso(value)
            elif key in _USER_KEYS or (key == "data" and _in_event_data):
                out[key] = value
            else:
                out[key] = dated(value, key == "data")
        return out
    if isinstance(data, list):
        return [dated(item) for item in data]
    return data


def print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(dated(data), indent=2, ensure_ascii=False) + "\n")


def progress_text(run: Run) -> str:
    p = run.progress
    if p is None:
        return "-"
    return f"{p.current:g}/{p.total:g}" if p.total else f"{p.current:g}"


def describe(run: Run) -> str:
    """``demo-steps, running, attempt 1, 2/5 done, created 2026-01-31 14:05:09`` (a suspended run:
    ``approval, suspended: waits for event approval, attempt 1, …``)."""
    progress = f", {progress_text(run)} done" if run.progress else ""
    status = f"suspended: {run_wait_text(run)}" if run.status == "suspended" and run.wait else run.status
    if run.cancel_requested and not run.is_terminal:  # the job gets RunCancelled (and may clean up) first
        status = "cancelling"
    return f"{run.job_name}, {status}, attempt {run.attempt}{progress}, created {when(run.created_at)}"


def clock(t: float | None, now: float | None = None) -> str:
    """A time of today as ``14:05:09``, another day's as ``2026-02-01 14:05:09`` (local time)."""
    if not t:
        return "-"
    today = time.localtime(time.time() if now is None else now)[:3]
    return time.strftime("%H:%M:%S", time.localtime(t)) if time.localtime(t)[:3] == today else when(t)


def run_wait_text(run: Run, now: float | None = None) -> str:
    """What a suspended run waits for (``wait_text``); a schedule's run says which schedule and
    when it fires next (``schedule nightly fires at 07:00:00``) or that it is paused."""
    if run.status != "suspended":
        return ""
    spec = run.input if run.job_name == SCHEDULE_JOB and isinstance(run.input, dict) else None
    if spec is not None and run.wait is not None and run.wait.events == ("control",):
        name = spec.get("name", "?")
        return f"schedule {name} fires at {clock(run.wait.until, now)}" if run.wait.until else f"schedule {name} paused"
    return wait_text(run.wait, now)


def wait_text(wait: Wait | None, now: float | None = None) -> str:
    """What a suspended run waits for, in words: ``sleeps until 14:05:00``, ``waits for event
    approval``, ``waits for 3 children``, ``retry at 14:05:03``."""
    if wait is None:
        return "-"
    if wait.reason == "sleep":
        return f"sleeps until {clock(wait.until, now)}"
    if wait.reason == "retry":
        return f"retry at {clock(wait.until, now)}"
    if wait.reason == "event" or wait.events:
        names = " or ".join(wait.events) or "an event"
        deadline = f" until {clock(wait.until, now)}" if wait.until else ""
        return f"waits for event {names}{deadline}"
    if wait.reason == "children" or wait.children:
        n = len(wait.children)
        return f"waits for {n} child{'' if n == 1 else 'ren'}" if n else "waits for its children"
    return f"waits ({wait.reason})" if wait.reason else "waits"


def in_text(t: float, now: float | None = None) -> str:
    """How far ahead a time is: ``in 45 s``, ``in 12 min``, ``in 3 h 5 min``, ``in 2 d 4 h``; ``due now``."""
    left = int(t - (time.time() if now is None else now))
    if left <= 0:
        return "due now"
    if left < 60:
        return f"in {left} s"
    if left < 3600:
        return f"in {left // 60} min"
    if left < 86400:
        return f"in {left // 3600} h {left % 3600 // 60} min"
    return f"in {left // 86400} d {left % 86400 // 3600} h"
