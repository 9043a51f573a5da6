"""Reading a request safely: query parameters, ``Last-Event-ID``, and a size-capped JSON body.
Every problem becomes a 400 (or 413, 422) :class:`HTTPError`; nothing here touches the engine.

Server-only (imports starlette).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from ._errors import BadRequest, HTTPError

__all__ = ["MAX_JSON_DEPTH", "json_body", "last_event_id", "optional_int", "required_str"]

#: The deepest nesting a JSON body may have, the body object itself counted: deeper data would be
#: refused by the JSON parsers on the way (Python's recursion limit) or be a denial of service.
MAX_JSON_DEPTH = 100

#: A UTF-16 surrogate code point. JSON text can only produce one through an unpaired ``\ud800``-
#: style escape: not a character, so no UTF-8 text (and no store) can hold it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_INTEGER = re.compile("-?[0-9]{1,18}")


def required_str(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BadRequest(f"the query parameter {name!r} is required")
    return value


def optional_int(request: Request, name: str, default: int | None, minimum: int = 0) -> int | None:
    """The query parameter as an integer, ``default`` when absent; present but empty is a 400, as
    any other value that is not an integer (the OpenAPI document types it as one)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return _parse_int(raw, f"the query parameter {name!r}", minimum)


def _parse_int(raw: str, what: str, minimum: int) -> int:
    # at most 18 digits: the OpenAPI document's bound (MAX_INT), and always an int64
    if _INTEGER.fullmatch(raw) is None:
        raise BadRequest(f"{what} must be an integer of at most 18 digits, not {raw!r}")
    value = int(raw)
    if value < minimum:
        raise BadRequest(f"{what} must be >= {minimum}, not {value}")
    return value


def last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` header as an integer (``-1`` allowed: "nothing seen yet"), or None
    when it is absent (an EventSource that never saw an id sends none, never an empty one)."""
    header = request.headers.get("last-event-id")
    if header is None:
        return None
    return _parse_int(header, "the Last-Event-ID header", -1)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def json_body(request: Request, max_body: int) -> dict[str, Any]:
    """The request body as a JSON object; 415 unless it is sent as ``application/json`` (so that a
    browser must preflight a cross-site request: ``text/plain`` and forms are "simple" requests a
    page may send anywhere), 413 past ``max_body`` bytes (declared or streamed)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPError(
            415,
            "unsupported_media_type",
            f"send the body as JSON with Content-Type: application/json, not {media_type or 'no Content-Type'}",
        )
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
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    for key, value in data.items():
        too_deep, surrogate = _inspect(value, MAX_JSON_DEPTH - 1)
        if too_deep:
            raise _too_deep()
        if surrogate or _SURROGATE.search(key):
            raise HTTPError(
                422,
                "invalid_input",
                f"{key.encode('utf-8', 'backslashreplace').decode()!r} is not valid Unicode: it holds a lone "
                "surrogate (an unpaired \\ud800-\\udfff escape)",
            )
    return data


def _inspect(value: Any, max_depth: int) -> tuple[bool, bool]:
    """``(deeper than max_depth, holds a lone surrogate)`` for parsed JSON; iterative, so any depth
    the parser accepted is safe to walk."""
    stack = [(value, 1)]
    surrogate = False
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            surrogate = surrogate or _SURROGATE.search(item) is not None
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return True, surrogate
            if isinstance(item, dict):
                surrogate = surrogate or any(_SURROGATE.search(key) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
    return False, surrogate


def _too_deep() -> HTTPError:
    return BadRequest(f"the body is nested more than {MAX_JSON_DEPTH} levels deep")


def _too_large(max_body: int) -> HTTPError:
    return HTTPError(413, "payload_too_large", f"the request body is larger than {max_body} bytes")
