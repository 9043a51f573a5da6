"""Group commit for the IndexedDB store: step commits (``commit_step``, ``append_events``) share
readwrite transactions. One group transaction is in flight at a time; the writes that arrive
meanwhile wait and go together in the next one (and writes of one event-loop turn go together).

A transaction costs milliseconds however little it writes, and the browser runs a database's
readwrite transactions one after the other anyway, so with several runs executing at once each
finished step no longer waits for a transaction of its own. Every write of the group is
fenced on its own: its run record is read (one batch of reads for the whole group), checked
against its epoch *before* it writes anything, and a refused write (``StaleLeaseError``,
``RunNotFound``) fails alone while the others commit. Writes to one run in one group see each
other (the second appends after the first's events). The caller's future settles once the
transaction has completed and the group's runs have been announced (one BroadcastChannel message
for the group); if the transaction itself fails, every write in it fails.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..._errors import RunNotFound, StaleLeaseError
from ..._models import Event, Progress, StepRecord
from ..._notify import RUNS_KEY
from ..._util import dumps
from ...browser._idb import Program
from ...browser._idb_batch import put_all
from ...browser._values import py_value
from .._contract import NewEvent
from ._schema import events_out, step_record
from ._tx import Tx, fence

__all__ = ["StepGroups"]

#: The object stores a group's transaction spans.
STORES = ("runs", "steps", "events", "meta")


@dataclass
class _Write:
    run_id: str
    epoch: int | None
    step: StepRecord | None
    events: Sequence[NewEvent]
    progress: Progress | None
    fut: asyncio.Future[list[Event]] = field(repr=False)


class _BatchTx(Tx):
    """The group's transaction view: its puts are collected and sent to IndexedDB in one call."""

    def __init__(self, tx: Any) -> None:
        super().__init__(tx)
        self.puts: list[tuple[str, dict[str, Any]]] = []

    def put(self, name: str, record: dict[str, Any]) -> None:
        self.puts.append((name, record))


def _group_program(t: _BatchTx, batch: list[_Write]) -> Program[list[tuple[bool, Any]]]:
    ids = list(dict.fromkeys(w.run_id for w in batch))
    counters = any(w.progress is not None for w in batch)
    requests = [t.store("runs").get(run_id) for run_id in ids]
    if counters:
        requests.append(t.counters_request())
    found = yield requests
    if counters:
        t.set_counters(found[-1])
    recs: dict[str, Any] = {run_id: py_value(value) for run_id, value in zip(ids, found, strict=False)}
    changed: dict[str, dict[str, Any]] = {}
    results: list[tuple[bool, Any]] = []
    for w in batch:
        try:
            rec = fence(recs[w.run_id], w.run_id, w.epoch)  # before this write touches anything
        except (StaleLeaseError, RunNotFound) as exc:
            results.append((False, exc))
            continue
        if w.step is not None:
            t.put("steps", step_record(w.step))
        if w.progress is not None:
            rec["progress"] = dumps(w.progress.to_json())
            rec["version"] = t.next_version()
        pairs = events_out(rec["id"], int(rec["last_seq"]), w.events)
        for _, record in pairs:
            t.put("events", record)
        if pairs:
            rec["last_seq"], rec["updated_at"] = pairs[-1][0].seq, pairs[-1][0].at
        if pairs or w.progress is not None:
            changed[w.run_id] = rec
        results.append((True, [event for event, _ in pairs]))
    for rec in changed.values():
        t.put_run(rec)
    if counters:
        t.save_counters()
    put_all(t.js, t.puts)  # every write of the group, in one call into JavaScript
    return results


class StepGroups:
    """Queues step writes and runs each turn's queue as one transaction through ``run``."""

    def __init__(self, run: Callable[..., Awaitable[Any]], publish: Callable[[list[str]], None]) -> None:
        self._run = run
        self._publish = publish  # once per group: the runs written (and the run list, for progress)
        self._queue: list[_Write] = []
        self._busy = False  # a group transaction is in flight: new writes wait for the next

    async def write(
        self,
        run_id: str,
        epoch: int | None,
        step: StepRecord | None,
        events: Sequence[NewEvent],
        progress: Progress | None,
    ) -> list[Event]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Event]] = loop.create_future()
        self._queue.append(_Write(run_id, epoch, step, list(events), progress, fut))
        if not self._busy:
            self._busy = True
            loop.call_soon(lambda: asyncio.ensure_future(self._drain()))
        # A caller that gives up does not take the write back: the group commits it anyway.
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._flush(batch)
        finally:
            self._busy = False

    async def _flush(self, batch: list[_Write]) -> None:
        def program(t: Tx) -> Program[list[tuple[bool, Any]]]:
            return (yield from _group_program(_BatchTx(t.js), batch))

        try:
            results: list[tuple[bool, Any]] = await self._run(program, STORES)
        except BaseException as exc:
            for w in batch:
                if not w.fut.done():
                    w.fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        keys: dict[str, None] = {}
        for w, (ok, _) in zip(batch, results, strict=True):
            if ok:
                keys[w.run_id] = None
                if w.progress is not None:
                    keys[RUNS_KEY] = None
        if keys:
            self._publish(list(keys))  # one BroadcastChannel message for the whole group
        for w, (ok, value) in zip(batch, results, strict=True):
            if w.fut.done():
                continue
            if ok:
                w.fut.set_result(value)
            else:
                w.fut.set_exception(value)
