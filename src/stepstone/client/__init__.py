"""stepstone.client: a stepstone server, with the Engine's method names, from CPython or a page.

    from stepstone.client import Client

    async with Client("http://127.0.0.1:8000/api", headers={"authorization": "Bearer s3cret"}) as client:
        run = await client.trigger("demo-steps", {"steps": 3})
        async for event in client.subscribe(run.id):
            print(event.seq, event.type)

The transport is stepstone's one HTTP seam (shared with ``stepstone.streams``), chosen by platform
(fetch and EventSource in Pyodide, httpx on CPython, which needs ``pip install stepstone[client]``)
unless one is given; :class:`MockTransport` answers from a Python function for tests
(``stepstone._http.MockEventSourceTransport`` also plays the browser's EventSource). This package never imports
httpx, js or pyodide until a transport is made.
"""

from .._http import MockStream, MockTransport, Request, Response, StreamResponse, Transport, default_transport
from ._client import Client
from ._wire import JobInfo

__all__ = [
    "Client",
    "JobInfo",
    "MockStream",
    "MockTransport",
    "Request",
    "Response",
    "StreamResponse",
    "Transport",
    "default_transport",
]
