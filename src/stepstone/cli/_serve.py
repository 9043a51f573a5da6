"""``stepstone serve``: a job server (API, SSE, optional static site) on the ``--jobs`` modules."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from ._common import CLIError, add_engine_options, engine_from, positive

__all__ = ["add_parser"]

log = logging.getLogger("stepstone")


def _bearer(token: str) -> Any:
    import hmac

    from ..server import Unauthorized

    expected = f"Bearer {token}".encode()

    def authorize(request: Any) -> bool:
        given = request.headers.get("authorization")
        if given is None:
            raise Unauthorized("send Authorization: Bearer <token>")
        # constant time; bytes, as compare_digest refuses a str that is not ASCII
        return hmac.compare_digest(given.encode("latin-1"), expected)

    return authorize


async def cmd_serve(args: argparse.Namespace) -> int:
    from ..server._serve import serve

    if not args.jobs:
        raise CLIError("serve needs --jobs MODULE (a module defining stepstone jobs), e.g. --jobs stepstone.demo")
    if args.site is not None and not os.path.isdir(args.site):
        log.warning("stepstone: --site %s does not exist (yet); / shows the API landing page", args.site)
    engine = engine_from(args, worker=True)
    names = ", ".join(sorted(engine.job_names))
    await serve(
        engine, host=args.host, port=args.port, site_dir=args.site, base_path=args.base_path,
        authorize=_bearer(args.token) if args.token else None, cors=args.cors or None,
        max_body=args.max_body, keepalive=args.keepalive, grace=args.grace, access_log=args.access_log,
        describe=f"store {args.store}, jobs: {names}", long_poll_timeout=args.long_poll_timeout,
    )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run a job server (API, SSE, optional static site)")
    p.add_argument("--store", required=True, metavar="URL", help="memory: or sqlite:///path.db")
    p.add_argument("--jobs", action="append", metavar="MODULE[,MODULE]", help="modules defining stepstone jobs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=positive(int), default=8000)
    p.add_argument("--site", metavar="DIR", help="serve this static directory at /")
    p.add_argument("--base-path", default="/api", help="where the API lives (default /api)")
    p.add_argument("--cors", action="append", metavar="ORIGIN", help="allow this origin (repeatable; * for any)")
    p.add_argument("--token", default=os.environ.get("STEPSTONE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on the API (default $STEPSTONE_TOKEN)")
    p.add_argument("--max-body", type=positive(int), default=1_000_000, metavar="BYTES")
    p.add_argument("--keepalive", type=positive(float), default=15.0, metavar="S", help="SSE keep-alive period")
    p.add_argument("--long-poll-timeout", type=positive(float), default=30.0, metavar="S",
                   help="how long a /v1/stream long-poll waits for data (default 30)")
    p.add_argument("--grace", type=positive(float), default=0.0, metavar="S",
                   help="on SIGTERM, let running runs finish for up to S s before handing them back")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_engine_options(p)
    p.set_defaults(func=cmd_serve)
