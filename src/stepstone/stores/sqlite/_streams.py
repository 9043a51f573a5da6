"""Durable Streams in the ``sqlite:///`` store: a mixin of :class:`~stepstone.stores.sqlite.SqliteStore`.

Records are rows keyed by one integer, ``stream_id << 32 | seq`` (the table's rowid, so records of
a stream sit together and no second index is kept); a read from an offset is a rowid range scan,
so it costs O(log n + k) however long the stream is. An append — the record, the stream's new
tail, the producer's ``(epoch, seq)`` and ``Stream-Seq`` — commits in one ``BEGIN IMMEDIATE``
transaction before it is acknowledged: a crash never leaves a producer state that disagrees with
the data. Appends made in one event-loop tick (concurrent requests) share one transaction,
committed at the start of the next tick (group commit: one COMMIT for many), and an append reads
nothing back: the stream's row and its producers' state are cached from this connection's own
commits while no other connection writes the file.

Wake-ups go through the store's per-file Hub, so waiters in this process wake at once; appends
made by another process are seen when a waiter's timeout runs out. Stdlib only (sqlite3); must
never import anything HTTP or browser.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING

from ..._errors import (
    ProducerFenced,
    StepstoneError,
    StoreError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamNotFound,
)
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
    from ..._notify import Hub

__all__ = ["SCHEMA_STREAMS", "SqliteStreamsMixin"]

log = logging.getLogger("stepstone")

#: The v2 migration: streams, their records and their producers' state.
SCHEMA_STREAMS = """
CREATE TABLE streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    tail_seq INTEGER NOT NULL,
    tail_pos INTEGER NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER,
    expires_at TEXT,
    created_at REAL NOT NULL,
    accessed_at REAL NOT NULL,
    fork_of INTEGER,
    fork_from TEXT,
    fork_seq INTEGER,
    fork_pos INTEGER,
    fork_sub_offset INTEGER NOT NULL DEFAULT 0,
    refcount INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    closed_by TEXT,
    last_stream_seq TEXT,
    expires_ts REAL
);
CREATE INDEX streams_expiring ON streams(id) WHERE ttl IS NOT NULL OR expires_ts IS NOT NULL;
CREATE TABLE stream_records (
    key INTEGER PRIMARY KEY,
    pos INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE stream_producers (
    stream_id INTEGER NOT NULL,
    producer_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) WITHOUT ROWID
"""

_SEQ_BITS = 32
_MAX_SEQ = (1 << _SEQ_BITS) - 1
_MAX_STREAM_ID = (1 << 30) - 1


_INSERT_RECORDS = "INSERT INTO stream_records (key, pos, data) VALUES (?, ?, ?)"


def _key(stream_id: int, seq: int) -> int:
    return (stream_id << _SEQ_BITS) | seq


class SqliteStreamsMixin:
    """Stream persistence for the SQLite store (tables from the v2 migration)."""

    if TYPE_CHECKING:
        _hub: Hub
        path: str

        def _publish(self, keys: Collection[str]) -> None: ...

        @property
        def _db(self) -> sqlite3.Connection: ...

        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def _init_streams(self) -> None:
        self._ds_queue: list[tuple[str, AppendRequest, float, asyncio.Future[AppendResult]]] = []
        self._ds_infos: dict[str, StreamInfo] = {}
        self._ds_producers: dict[tuple[int, str], ProducerState | None] = {}
        self._ds_cache_db: sqlite3.Connection | None = None
        self._ds_cache_version = -1

    # -- helpers (inside a transaction unless said otherwise) ------------------------------------
    def _ds_by_path(self, db: sqlite3.Connection, path: str) -> StreamInfo | None:
        row = db.execute(f"SELECT {STREAM_COLUMNS} FROM streams WHERE path = ?", (path,)).fetchone()
        return None if row is None else row_to_stream(row)

    def _ds_by_id(self, db: sqlite3.Connection, stream_id: int) -> StreamInfo | None:
        row = db.execute(f"SELECT {STREAM_COLUMNS} FROM streams WHERE id = ?", (stream_id,)).fetchone()
        return None if row is None else row_to_stream(row)

    def _ds_fetch(self, db: sqlite3.Connection, path: str, now: float, published: list[int]) -> StreamInfo | None:
        """The stream at ``path`` with expiry applied (call inside a transaction)."""
        info = self._ds_by_path(db, path)
        if info is not None and not info.deleted and info.is_expired(now):
            self._ds_remove(db, info, published)
            info = self._ds_by_path(db, path)
        return info

    def _ds_remove(self, db: sqlite3.Connection, info: StreamInfo, published: list[int]) -> bool:
        published.append(info.id)
        if info.refcount > 0:
            db.execute("UPDATE streams SET deleted = 1 WHERE id = ?", (info.id,))
            return False
        db.execute(
            "DELETE FROM stream_records WHERE key >= ? AND key <= ?", (_key(info.id, 0), _key(info.id, _MAX_SEQ))
        )
        db.execute("DELETE FROM stream_producers WHERE stream_id = ?", (info.id,))
        db.execute("DELETE FROM streams WHERE id = ?", (info.id,))
        if info.fork_of is not None:
            row = db.execute(
                "UPDATE streams SET refcount = MAX(0, refcount - 1) WHERE id = ? RETURNING refcount, deleted",
                (info.fork_of,),
            ).fetchone()
            if row is not None and row[0] == 0 and row[1]:
                source = self._ds_by_id(db, info.fork_of)
                if source is not None:
                    self._ds_remove(db, source, published)
        return True

    def _ds_publish(self, published: list[int]) -> None:
        if published:
            self._publish([stream_key(stream_id) for stream_id in published])

    def _ds_read(
        self, db: sqlite3.Connection, sid: int, after: Offset, upto: Offset | None, budget: int, out: list[Record]
    ) -> int:
        row = db.execute("SELECT fork_of, fork_seq, fork_pos FROM streams WHERE id = ?", (sid,)).fetchone()
        if row is None:
            return budget
        if row[0] is not None:
            fork_offset: Offset = (row[1], row[2])
            if after < fork_offset:
                cap = fork_offset if upto is None else min(upto, fork_offset)
                budget = self._ds_read(db, row[0], after, cap, budget, out)
                if budget < 0:
                    return budget
        for end, data in self._ds_scan(db, sid, after, upto):
            if out and budget < len(data):
                return -1
            out.append(Record(end, data))
            budget -= len(data)
        return budget

    def _ds_scan(
        self, db: sqlite3.Connection, sid: int, after: Offset, upto: Offset | None
    ) -> Iterator[tuple[Offset, bytes]]:
        last = _MAX_SEQ if upto is None else min(upto[0], _MAX_SEQ)
        first = min(after[0], _MAX_SEQ + 1)
        cur = db.execute(
            "SELECT key, pos, data FROM stream_records WHERE key >= ? AND key <= ? ORDER BY key",
            (_key(sid, 0) + first, _key(sid, last)),
        )
        try:
            while rows := cur.fetchmany(256):
                for key, pos, data in rows:
                    end = (key & _MAX_SEQ, pos)
                    if end <= after:
                        continue
                    if upto is not None and end > upto:
                        return
                    yield end, bytes(data)
        finally:
            cur.close()

    def _ds_insert(self, db: sqlite3.Connection, sid: int, records: list[Record]) -> None:
        db.executemany(_INSERT_RECORDS, [(_key(sid, r.end[0]), r.end[1], r.data) for r in records])

    # -- protocol ------------------------------------------------------------------------------
    async def stream_create(self, new: NewStream, now: float) -> CreateResult:
        published: list[int] = []
        error: StreamError | None = None
        result: CreateResult | None = None
        with self._ds_write() as db:
            existing = self._ds_fetch(db, new.path, now, published)
            source: StreamInfo | None = None
            if new.fork_from is not None:
                source = self._ds_fetch(db, new.fork_from, now, published)
            if new.fork_from is not None and source is None:
                error = StreamNotFound(f"the fork source {new.fork_from!r} does not exist")
            elif existing is not None:
                if existing.deleted:
                    error = StreamConflict(
                        f"{new.path!r} was deleted but forks still read it; the path cannot be reused yet"
                    )
                elif same_config(existing, new, source):
                    result = CreateResult(existing, False)
                else:
                    error = StreamConflict(f"a stream already exists at {new.path!r} with a different configuration")
            else:
                result = self._ds_create(db, new, source, now)
        self._ds_publish(published)
        if error is not None:
            raise error
        assert result is not None
        return result

    def _ds_create(self, db: sqlite3.Connection, new: NewStream, source: StreamInfo | None, now: float) -> CreateResult:
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
            self._ds_read(db, source.id, fork_offset, None, 0, nxt)
            prefix = sub_offset_prefix(nxt[0] if nxt else None, new.fork_sub_offset, source.is_json)
            records, tail = initial_records(fork_offset, [prefix])
            if ttl is None and expires_at is None:
                ttl, expires_at = source.ttl, source.expires_at
            db.execute("UPDATE streams SET refcount = refcount + 1 WHERE id = ?", (source.id,))
        body = flatten_json(new.body, allow_empty=True) if (new.body and is_json_type(content_type)) else new.body
        body_records, tail = initial_records(tail, [body])
        row = db.execute(
            "INSERT INTO streams (path, content_type, tail_seq, tail_pos, closed, ttl, expires_at, expires_ts, "
            "created_at, accessed_at, fork_of, fork_from, fork_seq, fork_pos, fork_sub_offset) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                new.path,
                content_type,
                tail[0],
                tail[1],
                int(new.closed),
                ttl,
                expires_at,
                None if expires_at is None else parse_expires_at(expires_at),
                now,
                now,
                None if source is None else source.id,
                new.fork_from,
                None if fork_offset is None else fork_offset[0],
                None if fork_offset is None else fork_offset[1],
                new.fork_sub_offset,
            ),
        ).fetchone()
        if row[0] > _MAX_STREAM_ID:
            raise StreamConflict("this store has created the most streams it can number")
        self._ds_insert(db, row[0], records + body_records)
        info = self._ds_by_id(db, row[0])
        assert info is not None
        return CreateResult(info, True)

    async def stream_get(self, path: str, now: float) -> StreamInfo | None:
        info = self._ds_by_path(self._db, path)
        if info is None or info.deleted or not info.is_expired(now):
            return info
        published: list[int] = []
        with self._ds_write() as db:
            info = self._ds_fetch(db, path, now, published)
        self._ds_publish(published)
        return info

    async def stream_touch(self, stream_id: int, now: float) -> None:
        with self._ds_write() as db:
            db.execute("UPDATE streams SET accessed_at = ? WHERE id = ? AND ttl IS NOT NULL", (now, stream_id))

    async def stream_append(self, path: str, req: AppendRequest, now: float) -> AppendResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[AppendResult] = loop.create_future()
        queue = self._ds_queue
        queue.append((path, req, now, fut))
        if len(queue) == 1:
            loop.call_soon(self._ds_flush)
        return await fut

    def _ds_flush(self) -> None:
        """Commit every append queued in this loop tick in one ``BEGIN IMMEDIATE`` transaction
        (group commit: concurrent appends, to one stream or many, share a COMMIT), then answer
        each. A refused append writes nothing (the rules decide before any write); the batch's
        writes are coalesced (one UPDATE per stream, one INSERT statement for all records). If
        the transaction itself fails, every append in it fails and none is acknowledged."""
        batch, self._ds_queue = self._ds_queue, []
        live = [item for item in batch if not item[3].cancelled()]
        if not live:
            return
        published: list[int] = []
        outcomes: list[AppendResult | StepstoneError] = []
        work = _Batch()
        try:
            with self._tx() as db:
                self._ds_check_cache(db)
                for path, req, now, _ in live:
                    try:
                        outcomes.append(self._ds_append_op(db, work, path, req, now, published))
                    except (StreamError, ProducerFenced) as refused:
                        outcomes.append(refused)
                    except Exception as exc:  # decided before any write: this append fails alone
                        log.error("stepstone: an append to %r in %s failed", path, self.path, exc_info=exc)
                        outcomes.append(StoreError(f"the append failed: {type(exc).__name__}"))
                work.write(db)
        except Exception as exc:  # the transaction failed: nothing in it was committed
            self._ds_forget()  # (the cache may hold part of it)
            log.error("stepstone: a stream write transaction in %s failed", self.path, exc_info=exc)
            error = exc if isinstance(exc, StoreError) else StoreError(f"the stream store could not write: {exc}")
            for item in live:
                if not item[3].done():
                    item[3].set_exception(error)
            return
        finally:
            self._ds_publish(published)
        self._ds_remember(work)
        for (_, _, _, fut), outcome in zip(live, outcomes, strict=True):
            if fut.done():
                continue
            if isinstance(outcome, AppendResult):
                fut.set_result(outcome)
            else:
                fut.set_exception(outcome)

    # -- the append cache ------------------------------------------------------------------------
    # An append needs the stream's row and its producer's state. Both are kept from this
    # connection's last commits, so a steady stream of appends reads nothing back: the cache holds
    # while no other connection has written the file (``PRAGMA data_version``, read inside the
    # write transaction, is unchanged) and is dropped by every other stream write made here.
    def _ds_check_cache(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if db is not self._ds_cache_db or version != self._ds_cache_version:
            self._ds_forget()
            self._ds_cache_db, self._ds_cache_version = db, version

    def _ds_write(self) -> AbstractContextManager[sqlite3.Connection]:
        """The transaction of a stream write other than an append (create, delete, expiry, touch):
        it drops the append cache first, since the cache only follows appends."""
        self._ds_forget()
        return self._tx()

    def _ds_forget(self) -> None:
        self._ds_infos.clear()
        self._ds_producers.clear()

    def _ds_remember(self, work: _Batch) -> None:
        if len(self._ds_infos) + len(work.infos) > _CACHE_SIZE:
            self._ds_infos.clear()
        if len(self._ds_producers) + len(work.producers) > _CACHE_SIZE:
            self._ds_producers.clear()
        self._ds_infos.update(work.infos)
        self._ds_producers.update(work.producers)

    def _ds_info_for_append(
        self, db: sqlite3.Connection, work: _Batch, path: str, now: float, published: list[int]
    ) -> StreamInfo | None:
        info = work.infos.get(path) or self._ds_infos.get(path)
        if info is not None and not info.deleted and not info.is_expired(now):
            return info
        # Not known, or known to need the expiry rules: read it. The batch's writes go first (so
        # a removal sees them) and are remembered as if committed (a failed commit forgets all).
        work.write(db)
        self._ds_remember(work)
        work.infos.clear()
        work.producers.clear()
        before = len(published)
        info = self._ds_fetch(db, path, now, published)
        if len(published) != before:  # a stream was removed: forget everything it may touch
            self._ds_forget()
        if info is not None:
            work.infos[path] = info
        return info

    def _ds_producer(
        self, db: sqlite3.Connection, work: _Batch, stream_id: int, producer_id: str
    ) -> ProducerState | None:
        key = (stream_id, producer_id)
        if key in work.producers:
            return work.producers[key]
        if key in self._ds_producers:
            return self._ds_producers[key]
        row = db.execute(
            "SELECT epoch, last_seq, updated_at FROM stream_producers WHERE stream_id = ? AND producer_id = ?", key
        ).fetchone()
        state = None if row is None else ProducerState(row[0], row[1], row[2])
        self._ds_producers[key] = state
        return state

    def _ds_append_op(
        self, db: sqlite3.Connection, work: _Batch, path: str, req: AppendRequest, now: float, published: list[int]
    ) -> AppendResult:
        """One append inside the batch's transaction; a refusal raises before anything is written."""
        info = self._ds_info_for_append(db, work, path, now, published)
        if info is None:
            raise StreamNotFound(f"no stream at {path!r}")
        if info.deleted:
            raise StreamGone(f"the stream at {path!r} was deleted")
        p = req.producer
        state = None if p is None else self._ds_producer(db, work, info.id, p.id)
        decision = decide_append(info, state, req, now)
        if isinstance(decision, AppendResult):
            if info.ttl is not None:
                work.touch(replace(info, accessed_at=now))
            return decision
        tail = info.tail
        if decision.data:
            tail = next_tail(tail, decision.data)
            if tail[0] > _MAX_SEQ:
                raise StreamConflict(f"stream {info.path!r} holds the most appends a stream can ({_MAX_SEQ})")
            work.records.append((_key(info.id, tail[0]), tail[1], decision.data))
        work.touch(committed(info, decision, tail, now))
        if decision.producer_state is not None and p is not None:
            work.producers[(info.id, p.id)] = decision.producer_state
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
        db = self._db
        # One read transaction, so the records and the tail come from the same snapshot.
        db.execute("BEGIN")
        try:
            info = self._ds_by_id(db, stream_id)
            if info is None:
                raise StreamNotFound(f"stream {stream_id} no longer exists")
            out: list[Record] = []
            self._ds_read(db, stream_id, after, None, max_bytes, out)
        finally:
            db.execute("COMMIT")
        return ReadResult(out, info.tail, info.closed)

    async def stream_wait(self, stream_id: int, after: Offset, timeout: float) -> None:
        row = self._db.execute(
            "SELECT tail_seq, tail_pos, closed, deleted FROM streams WHERE id = ?", (stream_id,)
        ).fetchone()
        if row is None or (row[0], row[1]) > after or row[2] or row[3]:
            return
        await self._hub.wait(stream_key(stream_id), timeout)

    async def stream_delete(self, path: str, now: float) -> bool:
        published: list[int] = []
        missing: StreamError | None = None
        removed = False
        with self._ds_write() as db:
            info = self._ds_fetch(db, path, now, published)
            if info is None:
                missing = StreamNotFound(f"no stream at {path!r}")
            elif info.deleted:
                missing = StreamGone(f"the stream at {path!r} was deleted")
            else:
                removed = self._ds_remove(db, info, published)
        self._ds_publish(published)
        if missing is not None:
            raise missing
        return removed

    async def stream_sweep(self, now: float) -> int:
        published: list[int] = []
        count = 0
        with self._ds_write() as db:
            rows = db.execute(
                f"SELECT {STREAM_COLUMNS} FROM streams "
                "WHERE deleted = 0 AND (expires_ts <= ? OR accessed_at + ttl <= ?)",
                (now, now),
            ).fetchall()
            for row in rows:
                info = self._ds_by_id(db, row[0])
                if info is not None and not info.deleted and info.is_expired(now):
                    self._ds_remove(db, info, published)
                    count += 1
        self._ds_publish(published)
        return count

    async def stream_paths(self, now: float) -> list[str]:
        rows = self._db.execute(f"SELECT {STREAM_COLUMNS} FROM streams WHERE deleted = 0 ORDER BY path").fetchall()
        return [info.path for info in map(row_to_stream, rows) if not info.is_expired(now)]


_CACHE_SIZE = 4096


class _Batch:
    """The writes of one group-committed batch of appends, coalesced until its end: every record
    in one INSERT statement, each touched stream's row and producer's state written once."""

    __slots__ = ("dirty", "infos", "producers", "records")

    def __init__(self) -> None:
        self.infos: dict[str, StreamInfo] = {}  # path → the stream as this batch leaves it
        self.dirty: dict[int, StreamInfo] = {}  # stream id → its row, still to write
        self.producers: dict[tuple[int, str], ProducerState] = {}  # new producer states
        self.records: list[tuple[int, int, bytes]] = []  # still to write

    def touch(self, info: StreamInfo) -> None:
        self.infos[info.path] = info
        self.dirty[info.id] = info

    def write(self, db: sqlite3.Connection) -> None:
        """Write what is pending (inside the batch's transaction)."""
        if self.records:
            db.executemany(_INSERT_RECORDS, self.records)
            self.records = []
        if self.dirty:
            db.executemany(
                "UPDATE streams SET tail_seq = ?, tail_pos = ?, accessed_at = ?, closed = ?, closed_by = ?, "
                "last_stream_seq = ? WHERE id = ?",
                [
                    (i.tail[0], i.tail[1], i.accessed_at, int(i.closed), i.closed_by, i.last_stream_seq, i.id)
                    for i in self.dirty.values()
                ],
            )
            self.dirty = {}
        if self.producers:
            db.executemany(
                "INSERT INTO stream_producers (stream_id, producer_id, epoch, last_seq, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id, producer_id) DO UPDATE SET "
                "epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = excluded.updated_at",
                [(sid, pid, st.epoch, st.last_seq, st.updated_at) for (sid, pid), st in self.producers.items()],
            )
