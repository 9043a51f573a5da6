"""The floor under the Python figures of ``bench/streams.py --floor``: an ASGI app that answers a
Durable Streams append as cheaply as any app could (reads the body, answers 204 with a
``Stream-Next-Offset``; PUT answers 201), with no parsing, no rules and no storage. Served by
uvicorn with uvloop and httptools, as ``stepstone serve`` is, its rate is the most any ASGI app
can do on this machine; the gap between it and stepstone is what stepstone itself costs."""

from __future__ import annotations

from typing import Any

_OFFSET = [(b"stream-next-offset", b"0000000000000001_0000000000000100")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    status = 201 if scope["method"] == "PUT" else 204
    await send({"type": "http.response.start", "status": status, "headers": _OFFSET})
    await send({"type": "http.response.body", "body": b""})
