"""The Durable Streams protocol server: every path under its mount is a stream.

    from starlette.routing import Mount
    from stepstone.server.streams import create_streams_app

    routes = [Mount("/v1/stream", app=create_streams_app(engine, long_poll_timeout=30))]

Raw ASGI (``_asgi``) for exact headers on the hot append path; ``_app`` routes the methods,
``_read`` serves catch-up, long-poll and SSE reads, ``_runs`` exposes run logs as read-only
streams, ``_subs`` and ``_sign`` the reserved subscription and webhook APIs. Server-only (needs
the ``server`` extra); never imported by ``stepstone/__init__.py``.
"""

from ._app import StreamsApp, create_streams_app, streams_mount

__all__ = ["StreamsApp", "create_streams_app", "streams_mount"]
