"""The same ``stepstone.streams`` client inside Pyodide (Chromium): the fetch transport, SSE read
from a ``ReadableStream``, long-poll, and the idempotent producer, against the stepstone server
that serves the page (one origin). The current source tree is copied into Pyodide's file system,
so this tests the code as it is now, not a previously built wheel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import guard_offline, run_py
from .srcboot import boot_with_source

pytestmark = pytest.mark.browser

_SCRIPT = """
import asyncio, json
from stepstone.streams import DurableStream, IdempotentProducer, StreamNotFound

url = ORIGIN + "/v1/stream/pyodide-" + NAME
stream = await DurableStream.create(url, content_type="application/json")
transport = type(stream.transport).__name__
live = []

async def follow():
    async for message in DurableStream(url, transport=stream.transport).messages("-1", live="sse"):
        live.append(message)

follower = asyncio.ensure_future(follow())
await asyncio.sleep(0.2)
producer = IdempotentProducer(stream, "browser", auto_claim=True, linger=0.002, max_in_flight=4)
for i in range(300):
    producer.append({"i": i})
    if i % 50 == 0:
        await asyncio.sleep(0.01)
final = await producer.close({"done": True})
await asyncio.wait_for(follower, 20)
polled = [m async for m in stream.messages("-1", live="long-poll")]
everything = await stream.read_all()
try:
    await DurableStream.connect(ORIGIN + "/v1/stream/pyodide-missing")
    missing = "no error"
except StreamNotFound:
    missing = "StreamNotFound"
json.dumps({
    "transport": transport,
    "live": live,
    "polled": polled,
    "all": everything.json(),
    "closed": everything.closed,
    "final": final,
    "offset": everything.offset,
    "missing": missing,
})
"""


@pytest.mark.timeout(180)
def test_the_client_runs_in_pyodide_over_fetch(browser: Any, site_url: str) -> None:
    # Its own context: the 404 of the missing stream is logged on purpose, so only the
    # other-origin guard applies here, not the console-error check of the shared fixture.
    context = browser.new_context()
    outside = guard_offline(context)
    try:
        page = context.new_page()
        boot_with_source(page, site_url + "/index.html")
        code = f"ORIGIN = {site_url!r}\nNAME = {str(abs(hash(site_url)))!r}\n" + _SCRIPT
        result = run_py(page, code, timeout=90)
    finally:
        context.close()
    assert not outside, f"the page asked for other origins: {outside}"
    expected = [{"i": i} for i in range(300)] + [{"done": True}]
    assert result["transport"] == "FetchTransport"
    assert result["live"] == expected, "SSE over fetch: every message once, in order"
    assert result["polled"] == expected and result["all"] == expected
    assert result["closed"] and result["offset"] == result["final"]
    assert result["missing"] == "StreamNotFound"
    assert json.dumps(result)  # plain JSON all the way
