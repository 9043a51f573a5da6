"""The Durable Streams answers, read: the exception a non-2xx response means in the protocol, so
the client code above never looks at status codes twice. Stdlib only.
"""

from __future__ import annotations

import json

from .._errors import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerFenced,
    ProducerSeqGap,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamHTTPError,
    StreamNotFound,
    StreamSeqConflict,
)
from .._http import Response

__all__ = ["error_for"]


_BY_CODE: dict[str, type[StreamError]] = {
    "content_type_mismatch": ContentTypeMismatch,
    "stream_seq_conflict": StreamSeqConflict,
}


def _message(response: Response, url: str) -> tuple[str, str | None]:
    text = response.body.decode("utf-8", errors="replace").strip()
    code = None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            text = str(data["error"].get("message") or text)
    except ValueError:
        pass
    return f"{response.status} from {url}: {text or 'no detail'}", code


def error_for(response: Response, url: str) -> Exception:
    """The exception for a non-2xx answer."""
    message, code = _message(response, url)
    status = response.status
    if status == 404:
        return StreamNotFound(message)
    if status == 410:
        return StreamGone(message)
    if status == 400:
        return InvalidStreamRequest(message)
    if status == 403 and response.header("producer-epoch"):
        return ProducerFenced(message, int(response.header("producer-epoch") or 0))
    if status == 409:
        if (response.header("stream-closed") or "").lower() == "true":
            return StreamClosedError(message, response.header("stream-next-offset") or "")
        expected = response.header("producer-expected-seq")
        if expected is not None:
            received = response.header("producer-received-seq") or "-1"
            return ProducerSeqGap(message, int(expected), int(received))
        return _BY_CODE.get(code or "", StreamConflict)(message)
    return StreamHTTPError(message, status)
