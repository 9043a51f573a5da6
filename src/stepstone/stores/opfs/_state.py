"""The OPFS store's state, on any append-only files: runs, steps, logs, suspension, the change
feed, kept in memory and made durable as a log of row changes. Stdlib + asyncio only.

One process holds a database at a time (``OPFSStore`` makes sure with a Web Lock), so the store
keeps every row in memory (like :class:`~stepstone.MemoryStore`, whose rules it follows) and each
method is atomic the way the memory store's are: it checks and changes the rows with no ``await``
in between. What it changed is then written as one frame of row changes (``_log``) at the end of
the log file, before the method returns: at once with ``durability="relaxed"`` (a write to a sync
access handle is a plain file write, no pause), and with ``"strict"`` together with the other
frames of the same event-loop turn, sharing one ``flush()`` (group commit); relaxed writes are
grouped the same way (without the flush) where writes are slow (a private window). When a write
fails (quota), the store refuses every later call rather than drift from its files.

At open the newest complete generation of the log is replayed. Compaction writes the live rows
into the next generation (``data-N.log``), ends it with a snapshot marker, switches to it and
deletes the old one; it runs when the log has doubled since the last snapshot (and passed 4 MiB).

Frame: ``{"v": version, "p": pos, "o": [op, ...]}``; ops:

    ["R", pos, run]                   a run, every field (upsert)
    ["S", run_id, step]               a step record (upsert)
    ["E", run_id, [[seq, type, data, at], ...]]   events (by seq); the run's last_seq, updated_at
    ["I", run_id, name, data(, delivered)]        an event sent to the run, queued
    ["D", run_id, index]              that queued event was taken
    ["A", child, parent | null]       a suspended parent awaits this child (or no longer)
    ["X", run_id, version, at]        the run was deleted with all it owns; a tombstone stays
    ["T", run_id]                     the tombstone was swept
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from ..._errors import SchemaError, StoreError
from ..._models import Event, Run, StepRecord
from ..._notify import Hub
from .._contract import NewEvent, fenced
from ._log import SCHEMA, decode_frames, encode_frame, header
from ._rows import LogDir, LogFile, _last_rows, row_run, row_step, run_row, step_row

__all__ = ["COMPACT_AT", "LogState"]

log = logging.getLogger("stepstone")

_TOMBSTONE_TTL = 86400.0
#: Compact when the log passed this size and doubled since the last snapshot.
COMPACT_AT = 4 << 20
#: A write slower than this (seconds, on average) is not a plain file write: group writes per turn.
SLOW_WRITE = 0.00025
_SNAPSHOT_OPS = 2000  # ops per snapshot frame


class _Liveness:
    """Only the process holding the database executes its runs, so an owner no engine of this
    process holds is gone (its tab closed): its runs resume at once."""

    def __init__(self, held: set[str]) -> None:
        self._held = held

    async def hold(self, owner: str) -> None:
        self._held.add(owner)

    async def release(self, owner: str) -> None:
        self._held.discard(owner)

    async def is_dead(self, owner: str) -> bool:
        return owner not in self._held


class LogState:
    """The rows in memory and the log that makes them durable: open (replay), commit (a frame of
    row changes per method, grouped per turn), compaction, and the row changes every store method
    is made of. :class:`~._core.LogStore` adds the Store contract's methods on top.
    ``durability``: ``"relaxed"`` (a returned write survives the tab and the browser: it is in the
    file) or ``"strict"`` (also an OS crash: ``flush()`` before returning)."""

    def __init__(self, *, durability: str = "relaxed", compact_at: int = COMPACT_AT) -> None:
        if durability not in ("relaxed", "strict"):
            raise StoreError(f"unknown durability {durability!r}; use relaxed or strict")
        self.durability = durability
        self.compact_at = compact_at
        self._dir: LogDir | None = None
        self._file: LogFile | None = None
        self._gen = 0
        self._size = 0
        self._snapshot_size = 0
        self._broken: str | None = None
        self._pending: list[bytes] = []  # strict: frames of this turn's group
        self._pending_keys: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._write_cost = 0.0  # seconds a write takes, on average: a slow file system groups writes
        self._compacting: asyncio.Task[None] | None = None
        self._hub = Hub()
        self._owners: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self._runs: dict[str, Run] = {}  # in creation order
        self._pos: dict[str, int] = {}
        self._active: set[str] = set()
        self._suspended: dict[str, float | None] = {}
        self._by_key: dict[str, set[str]] = {}
        self._idem: dict[tuple[str, str], str] = {}
        self._children: dict[tuple[str, str], str] = {}
        self._inbox: dict[str, list[list[Any]]] = {}  # run -> [name, data, delivered]
        self._awaited: dict[str, str] = {}  # child -> the suspended parent awaiting it
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._events: dict[str, list[Event]] = {}
        self._tombs: dict[str, tuple[int, float]] = {}  # deleted run -> (version, deleted_at)
        self._version_of: dict[str, int] = {}  # run (or tombstone) -> its change version
        self._at_version: dict[int, str] = {}
        self._versions: list[int] = []  # sorted
        self._counter = 0
        self._version = 0

    # -- opening and closing -------------------------------------------------------------------
    async def _open_dir(self) -> LogDir:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        return self._file is not None

    async def init(self) -> None:
        if self._file is not None:
            return
        directory = await self._open_dir()
        try:
            await self._load(directory)
        except BaseException:
            if self._file is not None:
                self._file.close()
                self._file = None
            raise
        self._dir = directory
        self._broken = None

    async def _choose(self, directory: LogDir) -> tuple[int, LogFile, list[Any], int, int]:
        """The newest complete generation: (gen, its open file, its records, the length of its
        good part, its size). Unfinished compactions are deleted."""
        for gen in sorted(await directory.generations(), reverse=True):
            file = await directory.open(gen)
            size = file.size()
            records, good = decode_frames(file.read(0, size))
            head = records[0] if records else None
            if isinstance(head, dict) and head.get("stepstone") == "opfs":
                if int(head.get("schema", 0)) > SCHEMA:
                    file.close()
                    raise SchemaError(
                        f"the OPFS database was written by a newer stepstone (log schema {head.get('schema')}, "
                        f"this one knows {SCHEMA}); upgrade stepstone to open it"
                    )
                if gen <= 1 or {"snapshot": gen} in records:
                    return gen, file, records, good, size
            if gen <= 1 and size > 0:  # its very first write never completed: start it again
                return gen, file, [], 0, size
            file.close()
            await directory.remove(gen)  # an unfinished compaction, or nothing at all
        return 1, await directory.open(1), [], 0, 0

    async def _load(self, directory: LogDir) -> None:
        self._reset()
        gen, file, records, good, size = await self._choose(directory)
        self._file, self._gen = file, gen
        if not records:  # new: write its header
            file.truncate(0)
            start = header(gen)
            file.write(0, start)
            file.flush()
            good = size = len(start)
        for record in records[1:]:
            if isinstance(record, dict) and "o" in record:
                self._replay(record)
        if good < size:
            log.warning("stepstone: the OPFS log ended in an unfinished write (%d bytes); cut it off", size - good)
            file.truncate(good)
            file.flush()
        self._size = good
        self._snapshot_size = good if gen > 1 else 0
        for old in await directory.generations():
            if old < gen:
                await directory.remove(old)
        # The database is ours alone: runs left running belong to a process that is gone.
        for run_id in list(self._active):
            run = self._runs[run_id]
            if run.status == "running":
                self._runs[run_id] = replace(run, lease_expires_at=-1.0)

    async def close(self) -> None:
        if self._file is None:
            return
        if self._compacting is not None:
            await asyncio.gather(self._compacting, return_exceptions=True)
        if self._pending:
            self._write_group()
        self._file.close()
        self._file = None
        self._dir = None

    def liveness(self) -> _Liveness:
        return _Liveness(self._owners)

    # -- the log ---------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._broken is not None:
            raise StoreError(self._broken)
        if self._file is None:
            raise StoreError(f"{self!r} is not open; call init() first")

    async def _commit(self, ops: list[Any], keys: Iterable[str]) -> None:
        """Write ``ops`` (already applied); publish ``keys`` once they are in the file.

        Relaxed: written at once, with no pause (a write to a sync access handle is a plain file
        write: it survives the tab and the browser). Strict: queued with the other frames of this
        event-loop turn, written and flushed together, and this returns after the flush. Relaxed
        on a slow file system (a private window keeps OPFS in memory behind IPC: about 0.5 ms a
        write) is grouped per turn too, without the flush."""
        if not ops:
            return
        frame = encode_frame({"v": self._version, "p": self._counter, "o": _last_rows(ops)})
        if self.durability == "relaxed" and self._write_cost < SLOW_WRITE:
            self._write(frame)
            for key in keys:
                self._hub.publish(key)
            self._maybe_compact()
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.append(frame)
        self._pending_keys.update(keys)
        self._waiters.append(waiter)
        if len(self._pending) == 1:
            loop.call_soon(self._write_group)
        await waiter  # a caller that gives up does not take its write back

    def _write(self, data: bytes, flush: bool = False) -> None:
        """Append ``data`` to the log; a failure breaks the store (memory is ahead of the file)."""
        try:
            if self._file is None:
                raise StoreError("the store was closed")
            started = time.perf_counter()
            self._file.write(self._size, data)
            self._write_cost += (time.perf_counter() - started - self._write_cost) / 8  # moving average
            if flush:
                self._file.flush()
            self._size += len(data)
        except Exception as exc:
            self._broken = (
                f"the OPFS store could not write its log ({type(exc).__name__}: {exc}); "
                "nothing more is written: reload the page"
            )
            log.error("stepstone: %s", self._broken)
            raise StoreError(self._broken) from exc

    def _write_group(self) -> None:
        frames, self._pending = self._pending, []
        keys, self._pending_keys = self._pending_keys, set()
        waiters, self._waiters = self._waiters, []
        if not frames:
            return
        try:
            self._write(b"".join(frames), flush=self.durability == "strict")
        except StoreError as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for key in keys:
            self._hub.publish(key)
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._compacting is not None or self._dir is None:
            return
        if self._size > self.compact_at and self._size > 2 * self._snapshot_size:
            self._compacting = asyncio.ensure_future(self._compact())

    async def _compact(self) -> None:
        directory, old_gen = self._dir, self._gen
        new: LogFile | None = None
        try:
            assert directory is not None
            new = await directory.open(old_gen + 1)
            if self._file is None or self._broken is not None:
                return
            # from here to the switch, no await: the snapshot is exactly what the old file holds
            if self._pending:
                self._write_group()
            data = bytearray(header(old_gen + 1))
            for frame in self._snapshot_frames():
                data += frame
            data += encode_frame({"snapshot": old_gen + 1})
            new.truncate(0)
            new.write(0, bytes(data))
            new.flush()
            old, self._file, new = self._file, new, None
            self._gen, self._size, self._snapshot_size = old_gen + 1, len(data), len(data)
            old.close()
            await directory.remove(old_gen)
        except Exception:
            log.exception("stepstone: compacting the OPFS log failed; it goes on growing")
            self._snapshot_size = self._size  # try again once it has doubled
        finally:
            if new is not None:
                new.close()
            self._compacting = None

    def _snapshot_frames(self) -> Iterator[bytes]:
        ops: list[Any] = []
        for run_id, run in self._runs.items():
            events = self._events.get(run_id)
            if events:  # before the run: its row, not its last event, has the last word on updated_at
                ops.append(["E", run_id, [[e.seq, e.type, e.data, e.at] for e in events]])
            ops.append(["R", self._pos[run_id], run_row(run)])
            ops.extend(["S", run_id, step_row(s)] for s in self._steps.get(run_id, {}).values())
            ops.extend(["I", run_id, name, data, delivered] for name, data, delivered in self._inbox.get(run_id, ()))
            if run_id in self._awaited:
                ops.append(["A", run_id, self._awaited[run_id]])
            if len(ops) >= _SNAPSHOT_OPS:
                yield encode_frame({"v": self._version, "p": self._counter, "o": ops})
                ops = []
        ops.extend(["X", run_id, version, at] for run_id, (version, at) in self._tombs.items())
        yield encode_frame({"v": self._version, "p": self._counter, "o": ops})

    # -- applying changes (live and at replay) ---------------------------------------------------
    def _replay(self, record: dict[str, Any]) -> None:
        for op in record["o"]:
            self._apply(op)
        self._version = max(self._version, int(record.get("v", 0)))
        self._counter = max(self._counter, int(record.get("p", 0)))

    def _apply(self, op: list[Any]) -> None:
        kind = op[0]
        if kind == "R":
            self._index(row_run(op[2]), int(op[1]))
        elif kind == "S":
            step = row_step(op[2])
            self._steps.setdefault(op[1], {})[step.name] = step
        elif kind == "E":
            events = self._events.setdefault(op[1], [])
            for seq, type_, data, at in op[2]:
                event = Event(op[1], seq, type_, data, at)
                if seq < len(events):
                    events[seq] = event
                else:
                    events.append(event)
            run = self._runs.get(op[1])
            if run is not None and op[2] and op[2][-1][0] >= run.last_seq:
                self._runs[op[1]] = replace(run, last_seq=op[2][-1][0], updated_at=op[2][-1][3])
        elif kind == "I":
            self._inbox.setdefault(op[1], []).append([op[2], op[3], bool(op[4]) if len(op) > 4 else False])
        elif kind == "D":
            self._inbox[op[1]][op[2]][2] = True
        elif kind == "A":
            if op[2] is None:
                self._awaited.pop(op[1], None)
            else:
                self._awaited[op[1]] = op[2]
        elif kind == "X":
            self._drop(op[1], int(op[2]), float(op[3]))
        elif kind == "T":
            self._tombs.pop(op[1], None)
            self._set_version(op[1], None)

    def _set_version(self, run_id: str, version: int | None) -> None:
        old = self._version_of.pop(run_id, None)
        if old is not None:
            del self._versions[bisect.bisect_left(self._versions, old)]
            self._at_version.pop(old, None)
        if version is not None:
            self._version_of[run_id] = version
            self._at_version[version] = run_id
            bisect.insort(self._versions, version)

    def _index(self, run: Run, pos: int) -> None:
        run_id = run.id
        self._runs[run_id] = run
        self._pos[run_id] = pos
        if run.status in ("pending", "running"):
            self._active.add(run_id)
        else:
            self._active.discard(run_id)
        if run.status == "suspended":
            self._suspended[run_id] = run.wake_at
        else:
            self._suspended.pop(run_id, None)
        if run.concurrency_key is not None:
            keyed = self._by_key.setdefault(run.concurrency_key, set())
            if run.is_terminal:
                keyed.discard(run_id)
            else:
                keyed.add(run_id)
        if run.idempotency_key is not None:
            self._idem[(run.job_name, run.idempotency_key)] = run_id
        if run.parent_id is not None and run.parent_step is not None:
            self._children[(run.parent_id, run.parent_step)] = run_id
        if self._version_of.get(run_id) != run.version:
            self._set_version(run_id, run.version)

    def _drop(self, run_id: str, version: int, at: float) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self._pos.pop(run_id, None)
            self._active.discard(run_id)
            self._suspended.pop(run_id, None)
            if run.concurrency_key is not None:
                self._by_key.get(run.concurrency_key, set()).discard(run_id)
            if run.idempotency_key is not None:
                self._idem.pop((run.job_name, run.idempotency_key), None)
            if run.parent_id is not None and run.parent_step is not None:
                self._children.pop((run.parent_id, run.parent_step), None)
        self._inbox.pop(run_id, None)
        self._awaited.pop(run_id, None)
        for child, parent in list(self._awaited.items()):
            if parent == run_id:
                del self._awaited[child]
        self._steps.pop(run_id, None)
        self._events.pop(run_id, None)
        self._tombs[run_id] = (version, at)
        self._set_version(run_id, version)

    # -- helpers that change rows and say so in the transaction's ops --------------------------------
    def _put(self, ops: list[Any], run: Run, bump: bool = True) -> Run:
        if bump:
            self._version += 1
            run = replace(run, version=self._version)
        self._index(run, self._pos[run.id])
        ops.append(["R", self._pos[run.id], run_row(run)])
        return run

    def _append(self, ops: list[Any], run: Run, events: Sequence[NewEvent]) -> tuple[Run, list[Event]]:
        log_ = self._events.setdefault(run.id, [])
        out = [Event(run.id, len(log_) + i, e.type, e.data, e.at) for i, e in enumerate(events)]
        if not out:
            return run, out
        log_.extend(out)
        ops.append(["E", run.id, [[e.seq, e.type, e.data, e.at] for e in out]])
        run = self._runs[run.id] = replace(run, last_seq=out[-1].seq, updated_at=out[-1].at)  # as "E" says
        return run, out

    def _set_awaited(self, ops: list[Any], child: str, parent: str | None) -> None:
        self._apply(["A", child, parent])
        ops.append(["A", child, parent])

    def _ended(self, ops: list[Any], run: Run, status: str, at: float) -> None:
        """``run`` finished with ``status`` (or was deleted): wake the suspended parent awaiting it
        when it was the last one awaited, or did not complete."""
        parent_id = self._awaited.get(run.id)
        if parent_id is None:
            return
        self._set_awaited(ops, run.id, None)
        left = sum(1 for p in self._awaited.values() if p == parent_id)
        parent = self._runs.get(parent_id)
        if parent is not None and parent.status == "suspended" and (left <= 0 or status != "completed"):
            self._put(ops, replace(parent, wake_at=at))

    def _forget_awaited(self, ops: list[Any], parent_id: str) -> None:
        for child, parent in list(self._awaited.items()):
            if parent == parent_id:
                self._set_awaited(ops, child, None)

    def _get(self, run_id: str) -> Run:
        return fenced(self._runs.get(run_id), run_id, None)

    def _fenced(self, run_id: str, epoch: int | None) -> Run:
        return fenced(self._runs.get(run_id), run_id, epoch)
