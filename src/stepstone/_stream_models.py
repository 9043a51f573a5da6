"""The Durable Streams model: offsets, content types and the values every stream backend, the
protocol server and the client pass around. Stdlib only, no I/O; the rules that decide an append
live with the stores (``stores/_stream_rules.py``), the errors in ``_errors.py``.

A stream is an append-only sequence of *records* (one per accepted append). Each record carries its
**end offset**; reading "after offset X" returns every record whose end offset is greater than X.
Offsets are ``(seq, pos)`` pairs — record count and byte position — rendered as
``"%016d_%016d"`` so that string order equals numeric order. A fork reads its source's records up
to its fork offset, then its own, in one offset space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "ZERO_OFFSET",
    "AppendRequest",
    "AppendResult",
    "CreateResult",
    "NewStream",
    "Offset",
    "ProducerRef",
    "ProducerState",
    "ReadResult",
    "Record",
    "StreamInfo",
    "format_offset",
    "is_json_type",
    "normalize_content_type",
    "parse_expires_at",
    "parse_offset",
]

Offset = tuple[int, int]


ZERO_OFFSET: Offset = (0, 0)


_OFFSET_RE = re.compile(r"^(\d{1,18})_(\d{1,18})$")


def format_offset(offset: Offset) -> str:
    return f"{offset[0]:016d}_{offset[1]:016d}"


def parse_offset(text: str) -> Offset | None:
    """``"<seq>_<pos>"`` → ``(seq, pos)``; None when the text is not an offset of this server."""
    match = _OFFSET_RE.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def normalize_content_type(content_type: str | None) -> str:
    """Media type only, lower-cased: ``"Application/JSON; charset=utf-8"`` → ``"application/json"``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    if content_type == "application/json":  # the common case, without the split
        return True
    return normalize_content_type(content_type) == "application/json"


def parse_expires_at(text: str) -> float | None:
    """An RFC 3339 timestamp → epoch seconds, or None when it is not one."""
    candidate = text.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$", candidate):
        return None
    candidate = candidate[:-1] + "+00:00" if candidate[-1] in "Zz" else candidate
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class ProducerRef:
    """The three producer headers of one request."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ProducerState:
    epoch: int
    last_seq: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream's metadata. ``deleted`` marks a soft-deleted stream (forks still read it)."""

    id: int
    path: str
    content_type: str
    tail: Offset
    closed: bool = False
    ttl: int | None = None
    expires_at: str | None = None
    created_at: float = 0.0
    accessed_at: float = 0.0
    fork_of: int | None = None
    fork_from: str | None = None
    fork_offset: Offset | None = None
    fork_sub_offset: int = 0
    refcount: int = 0
    deleted: bool = False
    closed_by: str | None = None
    last_stream_seq: str | None = None

    @property
    def is_json(self) -> bool:
        return is_json_type(self.content_type)

    @property
    def next_offset(self) -> str:
        return format_offset(self.tail)

    def expiry(self) -> float | None:
        """When the stream expires if left alone (epoch seconds), or None."""
        deadline: float | None = None
        if self.expires_at is not None:
            deadline = parse_expires_at(self.expires_at)
        if self.ttl is not None:
            sliding = self.accessed_at + self.ttl
            deadline = sliding if deadline is None else min(deadline, sliding)
        return deadline

    def is_expired(self, now: float) -> bool:
        deadline = self.expiry()
        return deadline is not None and now >= deadline


@dataclass(frozen=True, slots=True)
class NewStream:
    """A PUT: create ``path`` (or confirm it exists with the same configuration).

    ``content_type`` is None when the request named none (a fork then takes its source's, a plain
    stream ``application/octet-stream``). ``body`` is the initial record, already validated (and
    flattened for JSON streams); empty means none. ``fork_from`` is a path in this store.
    """

    path: str
    content_type: str | None = None
    ttl: int | None = None
    expires_at: str | None = None
    closed: bool = False
    body: bytes = b""
    fork_from: str | None = None
    fork_offset: Offset | None = None
    fork_sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class CreateResult:
    info: StreamInfo
    created: bool


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A POST. ``data`` empty with ``close`` is a close-only request; ``content_type`` is only
    checked when there is data."""

    data: bytes = b""
    content_type: str | None = None
    stream_seq: str | None = None
    producer: ProducerRef | None = None
    close: bool = False


@dataclass(frozen=True, slots=True)
class AppendResult:
    """An accepted (or deduplicated) append. ``duplicate``: nothing was written, the producer had
    already sent this batch; ``producer_seq`` is then the highest seq accepted."""

    tail: Offset
    closed: bool
    duplicate: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None
    appended: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    end: Offset
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Records after the requested offset (possibly a partial page), with the stream's state at
    the time of the read."""

    records: list[Record]
    tail: Offset
    closed: bool

    @property
    def next_offset(self) -> Offset | None:
        return self.records[-1].end if self.records else None
