"""The one HTTP seam: a :class:`Transport` protocol (a whole request, or a streaming GET), an httpx
implementation for CPython, the browser's fetch and EventSource for Pyodide (in
:mod:`stepstone.browser`) and mocks for tests (:class:`MockEventSourceTransport` plays the
browser's EventSource on CPython). ``stepstone.client`` and ``stepstone.streams`` re-export what their users need.

Importing this package imports neither httpx nor anything from the browser: :func:`default_transport`
imports the implementation the platform needs when it is called.
"""

from __future__ import annotations

from ._mock import MockEventSourceTransport, MockStream, MockTransport
from ._models import (
    EventSourceSignal,
    EventSourceStream,
    EventSourceTransport,
    Request,
    Response,
    StreamResponse,
    Transport,
)

__all__ = [
    "EventSourceSignal",
    "EventSourceStream",
    "EventSourceTransport",
    "MockEventSourceTransport",
    "MockStream",
    "MockTransport",
    "Request",
    "Response",
    "StreamResponse",
    "Transport",
    "default_transport",
]


def default_transport() -> Transport:
    """The platform's transport: inside Pyodide the browser's ``fetch`` (and its ``EventSource`` for
    live streams that send no headers), httpx on CPython (which needs ``pip install stepstone[client]``)."""
    from .. import browser  # the one Pyodide check; browser/ sits below this seam, so not at import

    if browser.in_pyodide():
        from ..browser._fetch import FetchTransport

        return FetchTransport()
    try:
        from ._httpx import HTTPXTransport
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the CPython HTTP transport needs httpx: pip install 'stepstone[client]'") from exc
    return HTTPXTransport()
