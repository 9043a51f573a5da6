"""Durable Streams in the PostgreSQL store: a mixin of :class:`~stepstone.stores.postgres.PostgresStore`.

Records are rows keyed by ``(stream_id, seq)``; a read from an offset is an index range scan, so it
costs O(log n + k) however long the stream is. An append locks its stream's row (``FOR UPDATE``),
so appends to one stream from any number of servers are serialised, and commits the record, the
new tail, the producer's ``(epoch, seq)`` and ``Stream-Seq`` in one transaction before it is
acknowledged. The protocol's decisions are the shared pure rules of ``_stream_rules.py``.

A write that applied expiry (deleting an expired stream) commits that even when the request is
then refused, as the other stores do. Wake-ups go through the store's hub and, for other
processes, its NOTIFY batches (``_listen.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._errors import ProducerFenced, StreamConflict, StreamError, StreamGone, StreamNotFound
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
    parse_expires_at,
)
from .._rows import STREAM_COLUMNS, row_to_stream
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
    from .._wakeups import Wakeups
    from ._conn import Conn, Database

__all__ = ["PgStreamsMixin"]

_SELECT = f"SELECT {STREAM_COLUMNS} FROM streams"
_PAGE = 256


async def _by_path(conn: Conn, path: str, lock: bool = False) -> StreamInfo | None:
    cur = await conn.execute(f"{_SELECT} WHERE path = %s{' FOR UPDATE' if lock else ''}", (path,))
    row = await cur.fetchone()
    return None if row is None else row_to_stream(row)


async def _by_id(conn: Conn, stream_id: int) -> StreamInfo | None:
    row = await (await conn.execute(f"{_SELECT} WHERE id = %s", (stream_id,))).fetchone()
    return None if row is None else row_to_stream(row)


async def _fetch(conn: Conn, path: str, now: float, published: list[int], lock: bool = False) -> StreamInfo | None:
    """The stream at ``path`` with expiry applied (inside a transaction)."""
    info = await _by_path(conn, path, lock)
    if info is not None and not info.deleted and info.is_expired(now):
        await _remove(conn, info, published)
        info = await _by_path(conn, path, lock)
    return info


async def _remove(conn: Conn, info: StreamInfo, published: list[int]) -> bool:
    """Delete (soft-delete while forks read from it); cascade to a soft-deleted source."""
    published.append(info.id)
    if info.refcount > 0:
        await conn.execute("UPDATE streams SET deleted = true WHERE id = %s", (info.id,))
        return False
    await conn.execute("DELETE FROM stream_records WHERE stream_id = %s", (info.id,))
    await conn.execute("DELETE FROM stream_producers WHERE stream_id = %s", (info.id,))
    await conn.execute("DELETE FROM streams WHERE id = %s", (info.id,))
    if info.fork_of is not None:
        row = await (await conn.execute(
            "UPDATE streams SET refcount = GREATEST(0, refcount - 1) WHERE id = %s RETURNING refcount, deleted",
            (info.fork_of,),
        )).fetchone()  # fmt: skip
        if row is not None and row[0] == 0 and row[1]:
            source = await _by_id(conn, info.fork_of)
            if source is not None:
                await _remove(conn, source, published)
    return True


async def _read(conn: Conn, sid: int, after: Offset, upto: Offset | None, budget: int, out: list[Record]) -> int:
    """Records with ``after < end <= upto`` across the fork chain, within ``budget`` bytes (-1:
    stopped for the budget)."""
    row = await (await conn.execute("SELECT fork_of, fork_seq, fork_pos FROM streams WHERE id = %s", (sid,))).fetchone()
    if row is None:
        return budget
    if row[0] is not None:
        fork_offset: Offset = (row[1], row[2])
        if after < fork_offset:
            cap = fork_offset if upto is None else min(upto, fork_offset)
            budget = await _read(conn, row[0], after, cap, budget, out)
            if budget < 0:
                return budget
    seq = after[0]
    while True:
        cur = await conn.execute(
            "SELECT seq, pos, data FROM stream_records WHERE stream_id = %s AND seq >= %s "
            + ("AND seq <= %s " if upto is not None else "")
            + "ORDER BY seq LIMIT %s",
            (sid, seq, *((upto[0],) if upto is not None else ()), _PAGE),
        )
        rows = await cur.fetchall()
        for rseq, pos, data in rows:
            end = (rseq, pos)
            if end <= after:
                continue
            if upto is not None and end > upto:
                return budget
            if out and budget < len(data):
                return -1
            out.append(Record(end, bytes(data)))
            budget -= len(data)
        if len(rows) < _PAGE:
            return budget
        seq = rows[-1][0] + 1


async def _insert(conn: Conn, sid: int, records: list[Record]) -> None:
    if records:
        await conn.execute(
            "INSERT INTO stream_records (stream_id, seq, pos, data) "
            "SELECT %s, x.seq, x.pos, x.data FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[]) AS x(seq, pos, data)",
            (sid, [r.end[0] for r in records], [r.end[1] for r in records], [r.data for r in records]),
        )


class PgStreamsMixin:
    """Stream persistence for the PostgreSQL store (tables from schema version 1)."""

    if TYPE_CHECKING:
        _db: Database

        _wakeups: Wakeups

        def _emit(self, *keys: str) -> None: ...

    def _init_streams(self) -> None:
        return None

    def _ds_publish(self, published: list[int]) -> None:
        if published:
            self._emit(*(stream_key(sid) for sid in published))

    async def stream_create(self, new: NewStream, now: float) -> CreateResult:
        published: list[int] = []

        async def op(conn: Conn) -> CreateResult | StreamError:
            existing = await _fetch(conn, new.path, now, published, lock=True)
            source: StreamInfo | None = None
            if new.fork_from is not None:
                source = await _fetch(conn, new.fork_from, now, published, lock=True)
                if source is None:
                    return StreamNotFound(f"the fork source {new.fork_from!r} does not exist")
            if existing is not None:
                if existing.deleted:
                    return StreamConflict(
                        f"{new.path!r} was deleted but forks still read it; the path cannot be reused yet"
                    )
                if same_config(existing, new, source):
                    return CreateResult(existing, False)
                return StreamConflict(f"a stream already exists at {new.path!r} with a different configuration")
            return await self._ds_create(conn, new, source, now)

        result = await self._db.run(op, tx=True)
        self._ds_publish(published)
        if isinstance(result, StreamError):
            raise result
        return result

    async def _ds_create(self, conn: Conn, new: NewStream, source: StreamInfo | None, now: float) -> CreateResult:
        records: list[Record] = []
        fork_offset: Offset | None = None
        tail: Offset = (0, 0)
        ttl, expires_at = new.ttl, new.expires_at
        content_type = new.content_type or "application/octet-stream"
        if source is not None:
            if source.deleted:
                raise StreamConflict(f"the fork source {source.path!r} was deleted")
            content_type = new.content_type or source.content_type
            if normalize_content_type(content_type) != normalize_content_type(source.content_type):
                raise StreamConflict(f"a fork must keep its source's content type {source.content_type!r}")
            fork_offset = check_fork_offset(source, new.fork_offset)
            nxt: list[Record] = []
            await _read(conn, source.id, fork_offset, None, 0, nxt)
            prefix = sub_offset_prefix(nxt[0] if nxt else None, new.fork_sub_offset, source.is_json)
            records, tail = initial_records(fork_offset, [prefix])
            if ttl is None and expires_at is None:
                ttl, expires_at = source.ttl, source.expires_at
            await conn.execute("UPDATE streams SET refcount = refcount + 1 WHERE id = %s", (source.id,))
        body = flatten_json(new.body, allow_empty=True) if (new.body and is_json_type(content_type)) else new.body
        body_records, tail = initial_records(tail, [body])
        cur = await conn.execute(
            "INSERT INTO streams (path, content_type, tail_seq, tail_pos, closed, ttl, expires_at, expires_ts, "
            "created_at, accessed_at, fork_of, fork_from, fork_seq, fork_pos, fork_sub_offset) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {STREAM_COLUMNS}",
            (
                new.path, content_type, tail[0], tail[1], new.closed, ttl, expires_at,
                None if expires_at is None else parse_expires_at(expires_at), now, now,
                None if source is None else source.id, new.fork_from,
                None if fork_offset is None else fork_offset[0], None if fork_offset is None else fork_offset[1],
                new.fork_sub_offset,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        info = row_to_stream(row)
        await _insert(conn, info.id, records + body_records)
        return CreateResult(info, True)

    async def stream_get(self, path: str, now: float) -> StreamInfo | None:
        info = await self._db.run(lambda conn: _by_path(conn, path))
        if info is None or info.deleted or not info.is_expired(now):
            return info
        published: list[int] = []
        info = await self._db.run(lambda conn: _fetch(conn, path, now, published, lock=True), tx=True)
        self._ds_publish(published)
        return info

    async def stream_touch(self, stream_id: int, now: float) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE streams SET accessed_at = %s WHERE id = %s AND ttl IS NOT NULL", (now, stream_id)
            )

        await self._db.run(op)

    async def stream_append(self, path: str, req: AppendRequest, now: float) -> AppendResult:
        published: list[int] = []

        async def op(conn: Conn) -> AppendResult | StreamError | ProducerFenced:
            try:
                return await self._ds_append(conn, path, req, now, published)
            except (StreamError, ProducerFenced) as refused:  # decided before any write of its own
                return refused

        result = await self._db.run(op, tx=True, pipeline=True)
        self._ds_publish(published)
        if isinstance(result, AppendResult):
            return result
        raise result

    async def _ds_append(
        self, conn: Conn, path: str, req: AppendRequest, now: float, published: list[int]
    ) -> AppendResult:
        info = await _fetch(conn, path, now, published, lock=True)
        if info is None:
            raise StreamNotFound(f"no stream at {path!r}")
        if info.deleted:
            raise StreamGone(f"the stream at {path!r} was deleted")
        p = req.producer
        state: ProducerState | None = None
        if p is not None:
            row = await (await conn.execute(
                "SELECT epoch, last_seq, updated_at FROM stream_producers WHERE stream_id = %s AND producer_id = %s",
                (info.id, p.id),
            )).fetchone()  # fmt: skip
            state = None if row is None else ProducerState(row[0], row[1], row[2])
        decision = decide_append(info, state, req, now)
        if isinstance(decision, AppendResult):
            if info.ttl is not None:
                await conn.execute("UPDATE streams SET accessed_at = %s WHERE id = %s", (now, info.id))
            return decision
        tail = info.tail
        if decision.data:
            tail = next_tail(tail, decision.data)
            await _insert(conn, info.id, [Record(tail, decision.data)])
        after = committed(info, decision, tail, now)
        await conn.execute(
            "UPDATE streams SET tail_seq = %s, tail_pos = %s, accessed_at = %s, closed = %s, closed_by = %s, "
            "last_stream_seq = %s WHERE id = %s",
            (tail[0], tail[1], now, after.closed, after.closed_by, after.last_stream_seq, info.id),
        )
        if decision.producer_state is not None and p is not None:
            st = decision.producer_state
            await conn.execute(
                "INSERT INTO stream_producers (stream_id, producer_id, epoch, last_seq, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stream_id, producer_id) DO UPDATE SET "
                "epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = excluded.updated_at",
                (info.id, p.id, st.epoch, st.last_seq, st.updated_at),
            )
        if decision.data or (decision.close and not info.closed):
            published.append(info.id)
        return AppendResult(
            tail,
            info.closed or decision.close,
            producer_epoch=None if p is None else p.epoch,
            producer_seq=None if p is None else p.seq,
            appended=bool(decision.data),
        )

    async def stream_read(self, stream_id: int, after: Offset, max_bytes: int) -> ReadResult:
        async def op(conn: Conn) -> ReadResult:
            # One REPEATABLE READ transaction: the records and the tail come from one snapshot.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            info = await _by_id(conn, stream_id)
            if info is None:
                raise StreamNotFound(f"stream {stream_id} no longer exists")
            out: list[Record] = []
            await _read(conn, stream_id, after, None, max_bytes, out)
            return ReadResult(out, info.tail, info.closed)

        return await self._db.run(op, tx=True)

    async def stream_wait(self, stream_id: int, after: Offset, timeout: float) -> None:
        async def op(conn: Conn) -> tuple[object, ...] | None:
            cur = await conn.execute(
                "SELECT tail_seq, tail_pos, closed, deleted FROM streams WHERE id = %s", (stream_id,)
            )
            return await cur.fetchone()

        with self._wakeups.expecting(stream_key(stream_id)) as woken:
            row = await self._db.run(op)
            if row is None or (row[0], row[1]) > after or row[2] or row[3]:
                return
            await self._wakeups.until(woken, timeout)

    async def stream_delete(self, path: str, now: float) -> bool:
        published: list[int] = []

        async def op(conn: Conn) -> bool | StreamError:
            info = await _fetch(conn, path, now, published, lock=True)
            if info is None:
                return StreamNotFound(f"no stream at {path!r}")
            if info.deleted:
                return StreamGone(f"the stream at {path!r} was deleted")
            return await _remove(conn, info, published)

        result = await self._db.run(op, tx=True)
        self._ds_publish(published)
        if isinstance(result, StreamError):
            raise result
        return result

    async def stream_sweep(self, now: float) -> int:
        published: list[int] = []

        async def op(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT id FROM streams WHERE deleted = false AND (expires_ts <= %s OR accessed_at + ttl <= %s) "
                "ORDER BY id FOR UPDATE",
                (now, now),
            )
            count = 0
            for (sid,) in await cur.fetchall():
                info = await _by_id(conn, sid)
                if info is not None and not info.deleted and info.is_expired(now):
                    await _remove(conn, info, published)
                    count += 1
            return count

        count = await self._db.run(op, tx=True)
        self._ds_publish(published)
        return count

    async def stream_paths(self, now: float) -> list[str]:
        async def op(conn: Conn) -> list[StreamInfo]:
            cur = await conn.execute(f"{_SELECT} WHERE deleted = false ORDER BY path COLLATE \"C\"")
            return [row_to_stream(r) for r in await cur.fetchall()]

        return [info.path for info in await self._db.run(op) if not info.is_expired(now)]
