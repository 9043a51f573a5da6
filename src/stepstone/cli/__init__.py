"""The ``stepstone`` command: ``serve`` a job server; ``trigger``, ``runs``, ``tail``, ``retry``,
``cancel``, ``delete`` and ``send-event`` runs; ``schedules`` (cron).

    stepstone serve --store sqlite:///jobs.db --jobs myapp.jobs --port 8000
    stepstone trigger demo-steps --input '{"steps": 3}' --wait
    stepstone runs --status running,suspended,failed
    stepstone tail RUN_ID
    stepstone retry RUN_ID; stepstone cancel RUN_ID; stepstone delete RUN_ID
    stepstone send-event RUN_ID approval --data '{"ok": true}'
    stepstone schedules create nightly report '0 7 * * *' --timezone Europe/Paris

The run commands talk to a server (``--server URL``, the default being ``$STEPSTONE_SERVER`` or
http://127.0.0.1:8000) through :class:`stepstone.client.Client`, or open a store directly
(``--store URL``; no worker runs in this process). Errors print one line and exit 1. Times are
printed as dates: ``2026-01-31 14:05:09`` (local time) in tables and lines, ISO 8601 in UTC
(``2026-01-31T13:05:09.123Z``) in JSON.

The console script is ``stepstone.cli:main``; ``python -m stepstone.cli`` is the same. CPython
only: imports the server and client lazily, per command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from .._errors import StepstoneError
from . import _runs, _schedules, _serve, _tail
from ._common import CLIError, load_jobs

__all__ = ["build_parser", "load_jobs", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepstone", description="Durable, resumable jobs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve.add_parser(sub)
    _runs.add_run_parsers(sub)
    _tail.add_parser(sub)
    _runs.add_action_parsers(sub)
    _schedules.add_parser(sub)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("stepstone").setLevel(level.upper())
    logging.getLogger("uvicorn").setLevel("DEBUG" if level == "debug" else "WARNING")
    logging.getLogger("uvicorn.error").setLevel("DEBUG" if level == "debug" else "WARNING")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (the ``server`` extra brings it on POSIX): 10-20 % less server
    CPU per request than the stdlib loop; the stdlib loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stepstone`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "log_level", "warning"))
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return int(runner.run(args.func(args)))
    except KeyboardInterrupt:
        return 130
    except (CLIError, StepstoneError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        print(f"stepstone: error: {message}", file=sys.stderr)
        return 1
