"""Reading a request safely: query parameters, ``Last-Event-ID``, and a size-capped JSON body.
Every problem becomes a 400 (or 413) :class:`HTTPError`; nothing here touches the engine.

Server-only (imports starlette).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ._errors import BadRequest, HTTPError

__all__ = ["json_body", "last_event_id", "optional_int", "required_str"]


def required_str(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BadRequest(f"the query parameter {name!r} is required")
    return value


def optional_int(request: Request, name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return _parse_int(raw, f"the query parameter {name!r}", minimum)


def _parse_int(raw: str, what: str, minimum: int) -> int:
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 18:
        raise BadRequest(f"{what} must be an integer, not {raw!r}")
    value = int(text)
    if value < minimum:
        raise BadRequest(f"{what} must be >= {minimum}, not {value}")
    return value


def last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` header as an integer (``-1`` allowed: "nothing seen yet"), or None
    when it is absent or empty (an EventSource that never saw an id sends none)."""
    header = request.headers.get("last-event-id")
    if header is None or header.strip() == "":
        return None
    return _parse_int(header, "the Last-Event-ID header", -1)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def json_body(request: Request, max_body: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 past ``max_body`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(f"bad Content-Length header {declared!r}")
        if int(declared) > max_body:
            raise _too_large(max_body)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise _too_large(max_body)
    if not body.strip():
        raise BadRequest("a JSON object body is required")
    try:
        data = json.loads(bytes(body), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _too_large(max_body: int) -> HTTPError:
    return HTTPError(413, "payload_too_large", f"the request body is larger than {max_body} bytes")
