"""The one HTTP seam: a :class:`Transport` protocol (a whole request, or a streaming GET), an httpx
implementation for CPython, the browser's fetch for Pyodide (in :mod:`stepstone.browser`) and a
mock for tests. ``stepstone.client`` and ``stepstone.streams`` re-export what their users need.

Importing this package imports neither httpx nor anything from the browser: :func:`default_transport`
imports the implementation the platform needs when it is called.
"""

from __future__ import annotations

from ._mock import MockStream, MockTransport
from ._models import Request, Response, StreamResponse, Transport

__all__ = ["MockStream", "MockTransport", "Request", "Response", "StreamResponse", "Transport", "default_transport"]


def default_transport() -> Transport:
    """The platform's transport: the browser's ``fetch`` inside Pyodide, httpx on CPython (which
    needs ``pip install stepstone[client]``)."""
    from .. import browser  # the one Pyodide check; browser/ sits below this seam, so not at import

    if browser.in_pyodide():
        from ..browser._fetch import FetchTransport

        return FetchTransport()
    try:
        from ._httpx import HTTPXTransport
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the CPython HTTP transport needs httpx: pip install 'stepstone[client]'") from exc
    return HTTPXTransport()
