"""Server-Sent Events, sans-I/O: framing on the way out, an incremental parser on the way in.

The one SSE framer and parser of stepstone: the jobs API and the Durable Streams server frame with
it, the jobs client, the streams client (CPython and Pyodide) and the CLI parse with it.
Pure functions and a small state machine over text: no sockets, no asyncio. Stdlib only; must never
import starlette, httpx, ``js`` or ``pyodide``.

The parser follows the WHATWG "event stream interpretation" rules:

* lines end in CRLF, LF or CR, and a CRLF split across two chunks is still one line end;
* a UTF-8 byte order mark at the very start of the stream is dropped, and a multi-byte character
  split across chunks is decoded once both halves are in;
* ``data:`` lines accumulate (joined by ``\\n``), a blank line dispatches the event, a block with no
  data dispatches nothing;
* ``id:`` sets the last event id, which carries over to later events (an id holding NUL is ignored);
* ``retry:`` with only ASCII digits sets the reconnection time;
* lines starting with ``:`` are comments; unknown fields are ignored.

    >>> parser = SSEParser()
    >>> parser.feed(b"id: 3\\nevent: step:start\\ndata: {\\"seq\\": 3}\\n\\n")
    [SSEMessage(id='3', event='step:start', data='{"seq": 3}', retry=None)]
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEMessage", "SSEParser", "format_comment", "format_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_field(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {name} cannot contain a line break: {value!r}")
    if name == "id" and "\0" in value:
        raise ValueError(f"an SSE id cannot contain NUL: {value!r}")


def format_event(
    data: str,
    *,
    id: str | None = None,
    event: str | None = None,
    retry: int | None = None,
    compact: bool = False,
) -> bytes:
    """One SSE event as UTF-8 bytes, ending with the blank line that dispatches it.

    ``data`` may hold line breaks (any of CRLF, LF, CR): each line becomes its own ``data:`` field
    and a parser rebuilds it joined by ``\\n``, so a payload can never inject an event.

    ``compact`` writes ``data:`` with no space after the colon, as the Durable Streams protocol's
    servers do (its conformance suite matches ``data:{``); a line that itself starts with a space
    then gets one, which every parser strips, so leading spaces survive.

        >>> format_event('{"a":1}', id="7", event="log:write")
        b'id: 7\\nevent: log:write\\ndata: {"a":1}\\n\\n'
    """
    parts: list[str] = []
    if id is not None:
        _check_field("id", id)
        parts.append(f"id: {id}\n")
    if event is not None:
        _check_field("event", event)
        parts.append(f"event: {event}\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"an SSE retry must be a non-negative int of milliseconds, not {retry!r}")
        parts.append(f"retry: {retry}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data:{line}\n" if compact and line[:1] != " " else f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def format_comment(text: str = "") -> bytes:
    """An SSE comment (ignored by every parser; used as a keep-alive), one ``:`` line per line of text.

        >>> format_comment("keep-alive")
        b': keep-alive\\n\\n'
    """
    lines = _LINE_BREAK.split(text)
    return ("".join(f": {line}\n" if line else ":\n" for line in lines) + "\n").encode("utf-8")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event.

    ``id`` is the last event id in effect when it was dispatched (``None`` if the stream never sent
    one), ``event`` the type (``"message"`` when the block named none), ``data`` the joined data
    lines, ``retry`` the reconnection time in ms given in the same block, if any.
    """

    id: str | None
    event: str
    data: str
    retry: int | None = None


class SSEParser:
    """Incremental SSE parser: ``feed`` it chunks as they arrive, get back the complete events.

    ``last_event_id`` and ``retry`` hold the stream-wide state a reconnecting client needs (the id
    to send as ``Last-Event-ID``, the reconnection time in ms).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._skip_lf = False
        self._data: list[str] = []
        self._event = ""
        self._block_retry: int | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: str | bytes) -> list[SSEMessage]:
        """Consume a chunk (bytes, or already-decoded text) and return the events it completed."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes | bytearray) else chunk
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._buffer + text
        messages: list[SSEMessage] = []
        start = 0
        for match in _LINE_BREAK.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer):
                # a CR at the end of the chunk: a LF may follow in the next one (one CRLF, not two)
                self._skip_lf = True
            message = self._line(buffer[start : match.start()])
            if message is not None:
                messages.append(message)
            start = match.end()
        self._buffer = buffer[start:]
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, retry = self._data, self._event, self._block_retry
        self._data, self._event, self._block_retry = [], "", None
        if not data:
            return None
        return SSEMessage(self.last_event_id, event or "message", "\n".join(data), retry)
