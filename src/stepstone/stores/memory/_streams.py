"""Durable Streams in the ``memory:`` store: a mixin of :class:`~stepstone.MemoryStore`.

Records of a stream live in two parallel lists (end offsets, data); reads find their start with
``bisect`` so a read costs O(log n + k) however long the stream is. Every method runs without an
``await`` between its reads and writes, so each is atomic with respect to the event loop.
Stdlib only; importable in Pyodide. Must never import sqlite3, js or anything HTTP.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from typing import TYPE_CHECKING

from ..._errors import StreamConflict, StreamGone, StreamNotFound
from ..._stream_models import (
    AppendRequest,
    AppendResult,
    CreateResult,
    NewStream,
    Offset,
    ProducerState,
    ReadResult,
    Record,
    StreamInfo,
    is_json_type,
    normalize_content_type,
)
from .._stream_rules import (
    check_fork_offset,
    committed,
    decide_append,
    flatten_json,
    initial_records,
    next_tail,
    same_config,
    stream_key,
    sub_offset_prefix,
)

if TYPE_CHECKING:
    from ..._notify import Hub

__all__ = ["MemoryStreamsMixin"]


class _Log:
    """One stream's own records: parallel lists of end offsets and data."""

    __slots__ = ("data", "ends", "producers")

    def __init__(self) -> None:
        self.ends: list[Offset] = []
        self.data: list[bytes] = []
        self.producers: dict[str, ProducerState] = {}

    def add(self, records: list[Record]) -> None:
        for r in records:
            self.ends.append(r.end)
            self.data.append(r.data)

    def after(self, after: Offset, upto: Offset | None, budget: int, out: list[Record]) -> int:
        """Append records with ``after < end <= upto`` to ``out`` within ``budget`` bytes."""
        i = bisect_right(self.ends, after)
        ends, data = self.ends, self.data
        while i < len(ends) and (upto is None or ends[i] <= upto):
            if out and budget < len(data[i]):
                return -1
            out.append(Record(ends[i], data[i]))
            budget -= len(data[i])
            i += 1
        return budget


class MemoryStreamsMixin:
    """Stream persistence for the in-memory store. Call :meth:`_init_streams` from ``__init__``."""

    if TYPE_CHECKING:
        _hub: Hub

    def _init_streams(self) -> None:
        self._ds_streams: dict[int, StreamInfo] = {}
        self._ds_paths: dict[str, int] = {}
        self._ds_logs: dict[int, _Log] = {}
        self._ds_next_id = 0

    # -- helpers -------------------------------------------------------------------------------
    def _ds_put(self, info: StreamInfo) -> StreamInfo:
        self._ds_streams[info.id] = info
        return info

    def _ds_lookup(self, path: str, now: float) -> StreamInfo | None:
        """The stream at ``path`` after applying expiry (None if gone for good)."""
        sid = self._ds_paths.get(path)
        if sid is None:
            return None
        info = self._ds_streams[sid]
        if not info.deleted and info.is_expired(now):
            self._ds_remove(info)
            sid = self._ds_paths.get(path)
            return None if sid is None else self._ds_streams[sid]
        return info

    def _ds_remove(self, info: StreamInfo) -> bool:
        """Delete, or soft-delete while forks read from it; cascade to sources. True if removed."""
        if info.refcount > 0:
            self._ds_put(replace(info, deleted=True))
            self._hub.publish(stream_key(info.id))
            return False
        del self._ds_streams[info.id]
        self._ds_logs.pop(info.id, None)
        if self._ds_paths.get(info.path) == info.id:
            del self._ds_paths[info.path]
        self._hub.publish(stream_key(info.id))
        if info.fork_of is not None:
            source = self._ds_streams.get(info.fork_of)
            if source is not None:
                source = self._ds_put(replace(source, refcount=max(0, source.refcount - 1)))
                if source.refcount == 0 and source.deleted:
                    self._ds_remove(source)
        return True

    def _ds_live(self, path: str, now: float) -> StreamInfo:
        info = self._ds_lookup(path, now)
        if info is None:
            raise StreamNotFound(f"no stream at {path!r}")
        if info.deleted:
            raise StreamGone(f"the stream at {path!r} was deleted")
        return info

    def _ds_read(self, sid: int, after: Offset, upto: Offset | None, budget: int, out: list[Record]) -> int:
        info = self._ds_streams[sid]
        if info.fork_of is not None and info.fork_offset is not None and after < info.fork_offset:
            cap = info.fork_offset if upto is None else min(upto, info.fork_offset)
            budget = self._ds_read(info.fork_of, after, cap, budget, out)
            if budget < 0:
                return budget
        return self._ds_logs[sid].after(after, upto, budget, out)

    # -- protocol ------------------------------------------------------------------------------
    async def stream_create(self, new: NewStream, now: float) -> CreateResult:
        existing = self._ds_lookup(new.path, now)
        source: StreamInfo | None = None
        if new.fork_from is not None:
            source = self._ds_lookup(new.fork_from, now)
            if source is None:
                raise StreamNotFound(f"the fork source {new.fork_from!r} does not exist")
        if existing is not None:
            if existing.deleted:
                raise StreamConflict(f"{new.path!r} was deleted but forks still read it; the path cannot be reused yet")
            if same_config(existing, new, source):
                return CreateResult(existing, False)
            raise StreamConflict(f"a stream already exists at {new.path!r} with a different configuration")
        records: list[Record] = []
        if source is None:
            content_type = new.content_type or "application/octet-stream"
            ttl, expires_at, tail = new.ttl, new.expires_at, (0, 0)
            fork_offset = None
        else:
            if source.deleted:
                raise StreamConflict(f"the fork source {source.path!r} was deleted")
            content_type = new.content_type or source.content_type
            if normalize_content_type(content_type) != normalize_content_type(source.content_type):
                raise StreamConflict(f"a fork must keep its source's content type {source.content_type!r}")
            fork_offset = check_fork_offset(source, new.fork_offset)
            nxt: list[Record] = []
            self._ds_read(source.id, fork_offset, None, 0, nxt)
            prefix = sub_offset_prefix(nxt[0] if nxt else None, new.fork_sub_offset, source.is_json)
            records, tail = initial_records(fork_offset, [prefix])
            ttl, expires_at = new.ttl, new.expires_at
            if ttl is None and expires_at is None:
                ttl, expires_at = source.ttl, source.expires_at
        body = flatten_json(new.body, allow_empty=True) if (new.body and is_json_type(content_type)) else new.body
        body_records, tail = initial_records(tail, [body])
        self._ds_next_id += 1
        info = StreamInfo(
            id=self._ds_next_id,
            path=new.path,
            content_type=content_type,
            tail=tail,
            closed=new.closed,
            ttl=ttl,
            expires_at=expires_at,
            created_at=now,
            accessed_at=now,
            fork_of=None if source is None else source.id,
            fork_from=new.fork_from,
            fork_offset=fork_offset,
            fork_sub_offset=new.fork_sub_offset,
        )
        if source is not None:
            self._ds_put(replace(source, refcount=source.refcount + 1))
        log = _Log()
        log.add(records + body_records)
        self._ds_logs[info.id] = log
        self._ds_paths[new.path] = info.id
        return CreateResult(self._ds_put(info), True)

    async def stream_get(self, path: str, now: float) -> StreamInfo | None:
        return self._ds_lookup(path, now)

    async def stream_touch(self, stream_id: int, now: float) -> None:
        info = self._ds_streams.get(stream_id)
        if info is not None and info.ttl is not None:
            self._ds_put(replace(info, accessed_at=now))

    async def stream_append(self, path: str, req: AppendRequest, now: float) -> AppendResult:
        info = self._ds_live(path, now)
        log = self._ds_logs[info.id]
        state = log.producers.get(req.producer.id) if req.producer is not None else None
        decision = decide_append(info, state, req, now)
        if isinstance(decision, AppendResult):
            if info.ttl is not None:
                self._ds_put(replace(info, accessed_at=now))
            return decision
        tail = info.tail
        if decision.data:
            tail = next_tail(tail, decision.data)
            log.ends.append(tail)
            log.data.append(decision.data)
        if decision.producer_state is not None and req.producer is not None:
            log.producers[req.producer.id] = decision.producer_state
        info = self._ds_put(committed(info, decision, tail, now))
        self._hub.publish(stream_key(info.id))
        p = req.producer
        return AppendResult(
            tail,
            info.closed,
            producer_epoch=None if p is None else p.epoch,
            producer_seq=None if p is None else p.seq,
            appended=bool(decision.data),
        )

    async def stream_read(self, stream_id: int, after: Offset, max_bytes: int) -> ReadResult:
        info = self._ds_streams.get(stream_id)
        if info is None:
            raise StreamNotFound(f"stream {stream_id} no longer exists")
        out: list[Record] = []
        self._ds_read(stream_id, after, None, max_bytes, out)
        return ReadResult(out, info.tail, info.closed)

    async def stream_wait(self, stream_id: int, after: Offset, timeout: float) -> None:
        info = self._ds_streams.get(stream_id)
        if info is None or info.tail > after or info.closed or info.deleted:
            return
        await self._hub.wait(stream_key(stream_id), timeout)

    async def stream_delete(self, path: str, now: float) -> bool:
        info = self._ds_live(path, now)
        return self._ds_remove(info)

    async def stream_sweep(self, now: float) -> int:
        expired = [i for i in self._ds_streams.values() if not i.deleted and i.is_expired(now)]
        for info in expired:
            if info.id in self._ds_streams:
                self._ds_remove(self._ds_streams[info.id])
        return len(expired)

    async def stream_paths(self, now: float) -> list[str]:
        return sorted(
            i.path
            for i in list(self._ds_streams.values())
            if not i.deleted and not i.is_expired(now) and self._ds_paths.get(i.path) == i.id
        )
