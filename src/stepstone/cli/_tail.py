"""``stepstone tail``: follow a run's events live, as lines (or a progress bar on a terminal), riding
out server outages; also how ``trigger --wait`` follows its run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, TextIO

from .._errors import ServerUnavailable
from .._models import Event, Run, Wait
from ._common import CLIError, Opened, Source, add_source_options, clock, dated, positive, wait_text

__all__ = ["Renderer", "add_parser", "final_run", "follow", "summary"]

_RESUMED_FROM = {"sleep": "its sleep", "event": "its event wait", "children": "its wait for child runs",
                 "retry": "its retry backoff"}


def _ms(d: Any) -> str:
    return f" ({d['durationMs']:.0f} ms)" if isinstance(d.get("durationMs"), int | float) else ""


def _step_summary(kind: str, d: Any) -> str:
    name = str(d.get("name", ""))
    if kind == "step:start":
        what = d.get("kind")
        if what == "sleep":
            return f"{name} sleeps until {clock(d.get('until'))}"
        if what == "event":
            deadline = f" until {clock(d['deadline'])}" if d.get("deadline") else ""
            return f"{name} waits for event {d.get('event', '')}{deadline}"
        if what == "invoke":
            return f"{name} invokes {d.get('job', '')} as run {d.get('childId', '')}"
        attempt = d.get("attempt")
        return f"{name} (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else name
    if kind == "step:retry":
        return (f"{name} attempt {d.get('attempt')} failed{_ms(d)}: {d.get('error', '')}; "
                f"next attempt at {clock(d.get('nextAttemptAt'))}")
    if kind == "step:cancel":
        return f"{name}{_ms(d)} cancelled: {d.get('error', '')}"
    if kind == "step:complete" and d.get("kind") == "invoke":
        return f"{name}{_ms(d)} child run {d.get('childId', '')} completed"
    err = f": {d['error']}" if "error" in d else ""
    return f"{name}{_ms(d)}{err}"


def summary(event: Event) -> str:
    """One readable line for an event (after its seq, time and type)."""
    d = event.data
    kind = event.type
    if kind == "log:write":
        extra = f" {json.dumps(d.get('data'), ensure_ascii=False)}" if d.get("data") else ""
        return f"{str(d.get('level', 'info')).upper():5} {d.get('message', '')}{extra}"
    if kind.startswith("step:"):
        return _step_summary(kind, d)
    if kind == "run:progress":
        total = d.get("total")
        text = f"{d.get('current')}/{total}" if total else f"{d.get('current')}"
        return text + (f" {d['message']}" if d.get("message") else "")
    if kind == "run:suspend":
        children = d.get("children")
        count = children if isinstance(children, int) and not isinstance(children, bool) else 0
        wait = Wait(str(d.get("reason", "")), d.get("until"), tuple(d.get("events") or ()), ("",) * count)
        text = wait_text(wait)
        if d.get("reason") == "retry" and d.get("attempt"):
            text += f" (attempt {d['attempt']}) after: {d.get('error', '')}"
        return text
    if kind == "run:resume":
        came = _RESUMED_FROM.get(str(d.get("reason")), "a wait")
        return f"resumed after {came} (attempt {d.get('attempt', '?')})"
    if kind == "run:retry":
        return "retried: runs again from its first unfinished step"
    if kind == "run:complete":
        return "output " + json.dumps(d.get("output"), ensure_ascii=False)
    if kind == "run:fail":
        return str(d.get("error", ""))
    if kind == "run:cancel":
        return "cancelled"
    if kind == "stream":
        return json.dumps(d.get("value"), ensure_ascii=False)
    return json.dumps(dict(d), ensure_ascii=False) if d else ""


class Renderer:
    """Plain lines, or on a TTY log lines above a live progress bar redrawn in place; ``note``
    writes a line to stderr (an outage, the reconnect) without tearing the bar."""

    def __init__(
        self, out: TextIO, live: bool, as_json: bool, err: TextIO | None = None, *, quiet: bool = False
    ) -> None:
        self.out, self.live, self.as_json, self.quiet = out, live, as_json, quiet
        self.err = err if err is not None else sys.stderr
        self.bar = ""

    def note(self, text: str) -> None:
        self._clear()
        self.out.flush()
        self.err.write(text + "\n")
        self.err.flush()
        self._draw()

    def _clear(self) -> None:
        if self.live and self.bar:
            self.out.write("\r\x1b[K")

    def _draw(self) -> None:
        if self.live and self.bar:
            self.out.write(self.bar)
        self.out.flush()

    def event(self, event: Event) -> None:
        if self.quiet:
            return
        if self.as_json:
            self.out.write(json.dumps(dated(event.to_json()), ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if self.live and event.type == "run:progress":
            self._clear()
            self.bar = self._bar(event.data)
            self._draw()
            return
        self._clear()
        at = time.strftime("%H:%M:%S", time.localtime(event.at)) if event.at else "-"
        self.out.write(f"{event.seq:>5}  {at}  {event.type:<14} {summary(event)}".rstrip() + "\n")
        self._draw()

    @staticmethod
    def _bar(d: Any, width: int = 30) -> str:
        current, total = d.get("current") or 0, d.get("total")
        if total:
            filled = int(width * min(1.0, current / total))
            text = f"[{'#' * filled}{'-' * (width - filled)}] {current:g}/{total:g}"
        else:
            text = f"[{current:g}]"
        return text + (f" {d['message']}" if d.get("message") else "")

    def end(self) -> None:
        if self.live and self.bar:
            self.out.write("\n")
        self.out.flush()


async def _until_reachable(source: Source, run_id: str) -> Run | None:
    """``get_run`` again and again (0.5 s, 1 s, 2 s, then every 5 s) until the server answers."""
    delay = 0.5
    while True:
        await asyncio.sleep(delay)
        try:
            return await source.get_run(run_id)
        except ServerUnavailable:
            delay = min(delay * 2, 5.0)


async def follow(source: Source, run_id: str, from_seq: int, renderer: Renderer) -> Event | None:
    """Render every event of the run from ``from_seq`` on until it finishes, riding out server
    outages and restarts (the stream resumes at the next seq: no gap, no line twice)."""
    next_seq, last = from_seq, None
    while True:
        try:
            async for event in source.subscribe(run_id, from_seq=next_seq):
                renderer.event(event)
                last, next_seq = event, event.seq + 1
            return last
        except ServerUnavailable as exc:
            renderer.note(f"stepstone: {exc}; reconnecting…")
            run = await _until_reachable(source, run_id)
            renderer.note("stepstone: reconnected" if run is not None else "stepstone: reconnected; the run is gone")
            if run is None:
                return last


async def final_run(source: Source, run_id: str) -> Run | None:
    try:
        return await source.get_run(run_id)
    except ServerUnavailable:
        return await _until_reachable(source, run_id)


async def cmd_tail(args: argparse.Namespace) -> int:
    out = sys.stdout
    renderer = Renderer(out, live=out.isatty() and not args.plain, as_json=args.json)
    async with Opened(args) as source:
        if await source.get_run(args.run_id) is None:  # a server never reached is an error, not an outage
            raise CLIError(f"no run with id {args.run_id!r}")
        try:
            last = await follow(source, args.run_id, args.from_seq, renderer)
        finally:
            renderer.end()
        run = await final_run(source, args.run_id)
    if run is None:
        print(f"run {args.run_id} was deleted", file=sys.stderr)
        return 1
    if not args.json and (last is None or not last.is_terminal):
        print(f"run {run.id} is {run.status}", file=sys.stderr)
    return 0 if run.status == "completed" else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("tail", help="follow a run's events live (resumes after dropped connections)")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--from", dest="from_seq", type=positive(int), default=0, metavar="N", help="start at seq N")
    p.add_argument("--json", action="store_true", help="print each event as a JSON line")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    add_source_options(p)
    p.set_defaults(func=cmd_tail)
