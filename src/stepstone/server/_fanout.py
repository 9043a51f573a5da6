"""One shared tail per run, fanned out to every SSE subscriber of that run.

A thousand browsers watching one run must not mean a thousand store reads per event. Each run being
watched gets one :class:`_Tail`: a task that follows ``engine.subscribe`` and keeps the last
``buffer`` events already framed as SSE bytes. A subscriber reads older events straight from the
store, then serves itself from the shared buffer, then waits on the tail. It tracks the next ``seq``
it needs, so switching between the two sources can neither skip nor repeat an event.

The tail ends when ``engine.subscribe`` ends (after the terminal event, or when the run is deleted)
and is dropped as soon as its last subscriber leaves. Server-only module (no starlette needed here,
but it lives with the server); stdlib + asyncio otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import cast

from .._engine import Engine
from .._errors import RunNotFound
from .._models import Event, Run
from .._sse import format_event
from .._util import dumps

__all__ = ["RunTails", "event_frame"]

log = logging.getLogger("stepstone.server")


def event_frame(event: Event) -> bytes:
    """``id: <seq>`` / ``event: <type>`` / ``data: <Event JSON>``."""
    return format_event(dumps(event.to_json()), id=str(event.seq), event=event.type)


class _Tail:
    def __init__(self, run_id: str, start: int, size: int) -> None:
        self.run_id = run_id
        self.first = start  # seq of frames[0]
        self.end = start  # seq after the last buffered frame
        self.frames: list[bytes] = []
        self.size = size
        self.done = False
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None
        # set() wakes every waiter, clear() right after re-arms it; a waiter that is cancelled
        # only drops its own future (asyncio.Event makes one per waiter)
        self._changed = asyncio.Event()

    def push(self, event: Event) -> None:
        if event.seq != self.end:  # engine.subscribe yields in order with no gap; guard anyway
            self.frames.clear()
            self.first = event.seq
        self.frames.append(event_frame(event))
        self.end = event.seq + 1
        if len(self.frames) >= 2 * self.size:  # trim in bulk: amortised O(1) per event
            drop = len(self.frames) - self.size
            del self.frames[:drop]
            self.first += drop
        self._notify()

    def finish(self) -> None:
        self.done = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed.clear()

    async def changed(self) -> None:
        await self._changed.wait()


class RunTails:
    """The shared tails of one engine. ``frames(run, from_seq)`` is what an SSE endpoint streams."""

    def __init__(self, engine: Engine, buffer: int = 1024) -> None:
        self.engine = engine
        self.buffer = buffer
        self._tails: dict[str, _Tail] = {}

    @property
    def active(self) -> int:
        """How many runs currently have a shared tail (for leak checks and stats)."""
        return len(self._tails)

    def _acquire(self, run: Run) -> _Tail:
        tail = self._tails.get(run.id)
        if tail is None or tail.done:
            tail = _Tail(run.id, run.last_seq + 1, self.buffer)
            self._tails[run.id] = tail
            tail.task = asyncio.create_task(self._follow(tail), name=f"stepstone-tail-{run.id}")
        tail.subscribers += 1
        return tail

    def _release(self, tail: _Tail) -> None:
        tail.subscribers -= 1
        if tail.subscribers > 0:
            return
        if self._tails.get(tail.run_id) is tail:
            del self._tails[tail.run_id]
        if tail.task is not None and not tail.task.done():
            tail.task.cancel()

    async def _follow(self, tail: _Tail) -> None:
        try:
            events = cast(AsyncGenerator[Event, None], self.engine.subscribe(tail.run_id, tail.end))
            async with contextlib.aclosing(events):
                async for event in events:
                    tail.push(event)
        except RunNotFound:
            pass
        except Exception:
            log.exception("stepstone: following run %s failed", tail.run_id)
        finally:
            tail.finish()
            if self._tails.get(tail.run_id) is tail:
                del self._tails[tail.run_id]

    async def frames(self, run: Run, from_seq: int) -> AsyncGenerator[bytes, None]:
        """SSE frames of ``run``'s events from ``from_seq`` on, ending after the terminal event."""
        tail = self._acquire(run)
        try:
            next_seq = max(from_seq, 0)
            while True:
                if next_seq < tail.first:  # older than the shared buffer: read the store
                    batch = await self.engine.store.read_events(run.id, next_seq, min(500, tail.first - next_seq))
                    if batch and batch[0].seq == next_seq:
                        next_seq = batch[-1].seq + 1
                        yield b"".join(event_frame(event) for event in batch)
                        continue
                    if tail.done:  # deleted under us
                        return
                    await tail.changed()
                    continue
                if next_seq < tail.end:
                    chunk = b"".join(tail.frames[next_seq - tail.first :])
                    next_seq = tail.end
                    yield chunk
                    continue
                if tail.done:
                    return
                await tail.changed()
        finally:
            self._release(tail)
