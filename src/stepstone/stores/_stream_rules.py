"""The Durable Streams rules every stream backend applies, so that each answers the same request
the same way: create/re-create matching, forks, idempotent producers, ``Stream-Seq``, JSON
flattening and expiry. Pure functions over the values of :mod:`stepstone._stream_models`; the
backends (``memory/_streams.py``, ``sqlite/_streams.py``) do the I/O. Stdlib only; must never import
a backend (sqlite3, js, …) nor anything HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerFenced,
    ProducerSeqGap,
    StreamClosedError,
    StreamSeqConflict,
)
from .._stream_models import (
    AppendRequest,
    AppendResult,
    NewStream,
    Offset,
    ProducerRef,
    ProducerState,
    Record,
    StreamInfo,
    format_offset,
    normalize_content_type,
)

__all__ = [
    "PRODUCER_STATE_TTL",
    "check_fork_offset",
    "committed",
    "decide_append",
    "flatten_json",
    "initial_records",
    "json_slice",
    "next_tail",
    "producer_key",
    "same_config",
    "stream_key",
    "sub_offset_prefix",
]

#: Producer state expires after this long without a write (as in the reference server).
PRODUCER_STATE_TTL = 7 * 24 * 3600.0


_JSON_WS = b" \t\n\r"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


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
    except RecursionError:
        raise InvalidStreamRequest("the body's JSON nests too deeply") from None
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
    try:
        values = json.loads(b"[" + data + b"]")
    except RecursionError:  # stored by an older stepstone that allowed it
        raise InvalidStreamRequest("that append's JSON nests too deeply to split") from None
    if count > len(values):
        raise InvalidStreamRequest(f"sub-offset {count} is past the {len(values)} messages of that append")
    return ",".join(json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values[:count]).encode()


def stream_key(stream_id: int) -> str:
    """The Hub key published whenever a stream changes (append, close, delete)."""
    return f"stream:{stream_id}"


def producer_key(producer_id: str, epoch: int, seq: int) -> str:
    return json.dumps([producer_id, epoch, seq], separators=(",", ":"))


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
