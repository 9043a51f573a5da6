"""Durable Streams persistence: the ``StreamStore`` protocol, its value types, and the pure rules
every backend applies (offsets, create/re-create matching, idempotent producers, expiry).

A stream is an append-only sequence of *records* (one per accepted append). Each record carries its
**end offset**; reading "after offset X" returns every record whose end offset is greater than X.
Offsets are ``(seq, pos)`` pairs — record count and byte position — rendered as
``"%016d_%016d"`` so that string order equals numeric order. A fork reads its source's records up
to its fork offset, then its own, in one offset space.

Backends (``_streams_memory``, ``_streams_sqlite``) do the I/O; the decisions live here so that
every backend answers the same request the same way. Stdlib only; must never import a backend
(sqlite3, js, …) nor anything HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ._errors import StaleEpochError, StepstoneError

__all__ = [
    "ZERO_OFFSET",
    "AppendRequest",
    "AppendResult",
    "ContentTypeMismatch",
    "CreateResult",
    "InvalidStreamRequest",
    "NewStream",
    "Offset",
    "ProducerFenced",
    "ProducerRef",
    "ProducerSeqGap",
    "ProducerState",
    "ReadResult",
    "Record",
    "StreamClosedError",
    "StreamConflict",
    "StreamError",
    "StreamGone",
    "StreamInfo",
    "StreamNotFound",
    "StreamSeqConflict",
    "StreamStore",
    "decide_append",
    "flatten_json",
    "format_offset",
    "is_json_type",
    "json_slice",
    "normalize_content_type",
    "parse_expires_at",
    "parse_offset",
    "producer_key",
    "stream_key",
]

Offset = tuple[int, int]
ZERO_OFFSET: Offset = (0, 0)

#: Producer state expires after this long without a write (as in the reference server).
PRODUCER_STATE_TTL = 7 * 24 * 3600.0

_OFFSET_RE = re.compile(r"^(\d{1,18})_(\d{1,18})$")


# -- errors --------------------------------------------------------------------------------------
class StreamError(StepstoneError):
    """Root of the Durable Streams errors; ``status`` is the HTTP status the protocol gives it."""

    code = "stream_error"
    status = 400


class InvalidStreamRequest(StreamError):
    """The request is malformed (bad offset, bad TTL, bad producer headers, bad JSON, …)."""

    code = "invalid_request"
    status = 400


class StreamNotFound(StreamError):
    code = "stream_not_found"
    status = 404


class StreamGone(StreamError):
    """The stream was deleted while forks still read from it (soft-deleted)."""

    code = "stream_gone"
    status = 410


class StreamConflict(StreamError):
    """The request conflicts with the stream's state or configuration."""

    code = "stream_conflict"
    status = 409


class ContentTypeMismatch(StreamConflict):
    code = "content_type_mismatch"


class StreamSeqConflict(StreamConflict):
    """A ``Stream-Seq`` not greater than the last one accepted."""

    code = "stream_seq_conflict"


class StreamClosedError(StreamConflict):
    """An append to a closed stream. ``tail`` is the final offset."""

    code = "stream_closed"

    def __init__(self, message: str, tail: str = "") -> None:
        super().__init__(message)
        self.tail = tail


class ProducerSeqGap(StreamConflict):
    """A producer skipped sequence numbers: ``expected`` is the next seq the server accepts."""

    code = "producer_seq_gap"

    def __init__(self, message: str, expected: int, received: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.received = received


class ProducerFenced(StaleEpochError):
    """A producer wrote with an epoch older than the stream has seen (zombie fencing, HTTP 403)."""

    status = 403

    def __init__(self, message: str, current_epoch: int) -> None:
        super().__init__(message)
        self.current_epoch = current_epoch


# -- offsets and content types -------------------------------------------------------------------
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


_JSON_WS = b" \t\n\r"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# One decoder for every append (``json.loads`` with options builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def flatten_json(body: bytes, *, allow_empty: bool) -> bytes:
    """Validate a JSON body and flatten one level of array: the stored form of a JSON append is
    its messages joined by commas (``[{"a":1},{"b":2}]`` → ``{"a":1},{"b":2}``), so a read is
    ``"[" + ",".join(records) + "]"``. An empty array stores nothing (only allowed on create)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidStreamRequest(f"the body is not valid UTF-8: {exc}") from exc
    try:
        if text.startswith("\ufeff"):
            raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)")
        value = _DECODER.decode(text)
    except ValueError as exc:
        raise InvalidStreamRequest(f"the body is not valid JSON: {exc}") from exc
    stripped = body.strip(_JSON_WS)
    if isinstance(value, list):
        if not value:
            if allow_empty:
                return b""
            raise InvalidStreamRequest("an empty JSON array appends nothing; send at least one value")
        return stripped[1:-1].strip(_JSON_WS)
    return stripped


def json_slice(data: bytes, count: int) -> bytes:
    """The first ``count`` messages of a stored JSON record (messages joined by commas)."""
    values = json.loads(b"[" + data + b"]")
    if count > len(values):
        raise InvalidStreamRequest(f"sub-offset {count} is past the {len(values)} messages of that append")
    return ",".join(json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values[:count]).encode()


def stream_key(stream_id: int) -> str:
    """The Hub key published whenever a stream changes (append, close, delete)."""
    return f"stream:{stream_id}"


def producer_key(producer_id: str, epoch: int, seq: int) -> str:
    return json.dumps([producer_id, epoch, seq], separators=(",", ":"))


# -- values --------------------------------------------------------------------------------------
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


# -- the append rules ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Commit:
    """What a backend must write for an accepted append, all in one transaction."""

    data: bytes
    producer_state: ProducerState | None
    stream_seq: str | None
    close: bool
    closed_by: str | None


def decide_append(
    info: StreamInfo, producer: ProducerState | None, req: AppendRequest, now: float
) -> AppendResult | _Commit:
    """Apply the protocol's append rules to one stream; raise for a refusal.

    Returns an :class:`AppendResult` when nothing is to be written (idempotent close, duplicate),
    or a commit plan whose ``data`` is what to store (JSON validated and flattened). Order, as in
    the reference server: closed, content type, producer, ``Stream-Seq``, then the body itself.
    """
    p = req.producer
    if info.closed:
        if p is not None and info.closed_by == producer_key(p.id, p.epoch, p.seq):
            return AppendResult(info.tail, True, duplicate=True, producer_epoch=p.epoch, producer_seq=p.seq)
        if not req.data and p is None:
            return AppendResult(info.tail, True)
        raise StreamClosedError("the stream is closed; no more data can be appended", format_offset(info.tail))
    if (
        req.data
        and req.content_type != info.content_type
        and normalize_content_type(req.content_type) != normalize_content_type(info.content_type)
    ):
        raise ContentTypeMismatch(
            f"content type {req.content_type!r} does not match the stream's {info.content_type!r}"
        )
    new_state: ProducerState | None = None
    if p is not None:
        checked = _check_producer(info, producer, p, now)
        if isinstance(checked, AppendResult):
            return checked
        new_state = checked
    if req.stream_seq is not None and info.last_stream_seq is not None and req.stream_seq <= info.last_stream_seq:
        raise StreamSeqConflict(
            f"Stream-Seq {req.stream_seq!r} is not greater than the last accepted {info.last_stream_seq!r}"
        )
    data = flatten_json(req.data, allow_empty=False) if (req.data and info.is_json) else req.data
    closed_by = producer_key(p.id, p.epoch, p.seq) if (req.close and p is not None) else None
    return _Commit(data, new_state, req.stream_seq, req.close, closed_by)


def committed(info: StreamInfo, decision: _Commit, tail: Offset, now: float) -> StreamInfo:
    """``info`` after ``decision`` was written with the new ``tail`` (built directly, not with
    ``dataclasses.replace``: this is every append's path, in every store)."""
    return StreamInfo(
        id=info.id,
        path=info.path,
        content_type=info.content_type,
        tail=tail,
        closed=info.closed or decision.close,
        ttl=info.ttl,
        expires_at=info.expires_at,
        created_at=info.created_at,
        accessed_at=now,
        fork_of=info.fork_of,
        fork_from=info.fork_from,
        fork_offset=info.fork_offset,
        fork_sub_offset=info.fork_sub_offset,
        refcount=info.refcount,
        deleted=info.deleted,
        closed_by=decision.closed_by if decision.close else info.closed_by,
        last_stream_seq=decision.stream_seq if decision.stream_seq is not None else info.last_stream_seq,
    )


def _check_producer(
    info: StreamInfo, producer: ProducerState | None, p: ProducerRef, now: float
) -> ProducerState | AppendResult:
    """The producer's next state if this batch is new; an AppendResult for a duplicate."""
    if producer is not None and now - producer.updated_at > PRODUCER_STATE_TTL:
        producer = None
    if producer is None:
        if p.seq != 0:
            raise ProducerSeqGap(f"producer {p.id!r} is unknown here; its first seq must be 0", 0, p.seq)
        return ProducerState(p.epoch, 0, now)
    if p.epoch < producer.epoch:
        raise ProducerFenced(
            f"producer {p.id!r} epoch {p.epoch} is stale; the stream has seen epoch {producer.epoch}", producer.epoch
        )
    if p.epoch > producer.epoch:
        if p.seq != 0:
            raise InvalidStreamRequest(f"a new producer epoch ({p.epoch}) must start at seq 0, not {p.seq}")
        return ProducerState(p.epoch, 0, now)
    if p.seq <= producer.last_seq:
        return AppendResult(
            info.tail, info.closed, duplicate=True, producer_epoch=p.epoch, producer_seq=producer.last_seq
        )
    if p.seq == producer.last_seq + 1:
        return ProducerState(p.epoch, p.seq, now)
    raise ProducerSeqGap(
        f"producer {p.id!r} sent seq {p.seq}; the next expected is {producer.last_seq + 1}",
        producer.last_seq + 1,
        p.seq,
    )


def same_config(existing: StreamInfo, new: NewStream, source: StreamInfo | None) -> bool:
    """Whether a re-PUT asks for exactly what ``existing`` is (then it is an idempotent 200)."""
    wanted_type = new.content_type or (source.content_type if source is not None else "application/octet-stream")
    ttl, expires_at = new.ttl, new.expires_at
    if source is not None and ttl is None and expires_at is None:
        ttl, expires_at = source.ttl, source.expires_at
    return (
        normalize_content_type(wanted_type) == normalize_content_type(existing.content_type)
        and ttl == existing.ttl
        and expires_at == existing.expires_at
        and new.closed == existing.closed
        and new.fork_from == existing.fork_from
        and (new.fork_offset is None or new.fork_offset == existing.fork_offset)
        and new.fork_sub_offset == existing.fork_sub_offset
    )


def next_tail(tail: Offset, data: bytes) -> Offset:
    return tail[0] + 1, tail[1] + len(data)


# -- the protocol ----------------------------------------------------------------------------------
@runtime_checkable
class StreamStore(Protocol):
    """Durable Streams persistence; implemented by the memory and SQLite stores.

    Every method is one atomic unit. Paths are relative to the server's stream root. Expiry is
    applied lazily: a method that finds an expired stream deletes it (soft-deletes it while forks
    read from it) before answering.
    """

    async def stream_create(self, new: NewStream, now: float) -> CreateResult:
        """Create a stream (or a fork), or confirm an identical one exists.

        Raises StreamConflict (different configuration, soft-deleted path, fork content type),
        StreamNotFound (fork source missing), InvalidStreamRequest (fork offset past the source's
        tail, bad sub-offset).
        """

    async def stream_get(self, path: str, now: float) -> StreamInfo | None:
        """The stream at ``path`` (``deleted`` set when soft-deleted), or None."""

    async def stream_touch(self, stream_id: int, now: float) -> None:
        """Restart a sliding TTL (reads and writes do; HEAD does not)."""

    async def stream_append(self, path: str, req: AppendRequest, now: float) -> AppendResult:
        """Append and/or close atomically with producer and ``Stream-Seq`` state.

        Raises StreamNotFound, StreamGone, StreamClosedError, ContentTypeMismatch,
        ProducerFenced, ProducerSeqGap, InvalidStreamRequest, StreamSeqConflict.
        """

    async def stream_read(self, stream_id: int, after: Offset, max_bytes: int) -> ReadResult:
        """Records with an end offset > ``after``, across the fork chain, in order; at most
        ``max_bytes`` of data unless the first record alone is larger."""

    async def stream_wait(self, stream_id: int, after: Offset, timeout: float) -> None:
        """Return once the stream's tail passes ``after``, it closes or goes away, or ``timeout``."""

    async def stream_delete(self, path: str, now: float) -> bool:
        """Delete (soft-delete while forks exist); True if hard-deleted. Raises StreamNotFound,
        StreamGone."""

    async def stream_sweep(self, now: float) -> int:
        """Delete every expired stream; return how many were removed or soft-deleted."""

    async def stream_paths(self, now: float) -> list[str]:
        """Every live (not deleted, not expired) stream path."""


def check_fork_offset(source: StreamInfo, offset: Offset | None) -> Offset:
    """The fork point: the source's tail by default; must not be past it."""
    if offset is None:
        return source.tail
    if offset > source.tail:
        raise InvalidStreamRequest(
            f"fork offset {format_offset(offset)} is past the source's tail {format_offset(source.tail)}"
        )
    return offset


def sub_offset_prefix(record: Record | None, sub_offset: int, json_mode: bool) -> bytes:
    """The first ``sub_offset`` bytes (messages, in JSON mode) of the record after the fork point."""
    if sub_offset == 0:
        return b""
    if record is None:
        raise InvalidStreamRequest("Stream-Fork-Sub-Offset points into an append that does not exist")
    if json_mode:
        return json_slice(record.data, sub_offset)
    if sub_offset > len(record.data):
        raise InvalidStreamRequest(f"sub-offset {sub_offset} is past the {len(record.data)} bytes of that append")
    return record.data[:sub_offset]


def initial_records(tail: Offset, chunks: Sequence[bytes]) -> tuple[list[Record], Offset]:
    """Records for the non-empty ``chunks`` laid after ``tail``; returns them and the new tail."""
    out: list[Record] = []
    for chunk in chunks:
        if chunk:
            tail = next_tail(tail, chunk)
            out.append(Record(tail, chunk))
    return out, tail
