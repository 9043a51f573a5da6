"""Testing helpers: a clock that travels in time, and probes you can run against your own store.

    from stepstone.testing import TestClock

    clock = TestClock()
    engine = stepstone.create_engine("memory:", clock=clock)
    ...                                   # a job that does `await step.sleep("nap", 86400)`
    clock.advance(86400)                  # the day passes at once: the run wakes and goes on

Probes, as ``@inbrowser/resumable/testing`` offers them:

    from stepstone.testing import check_store

    async def open_my_store():            # returns a store on the SAME data each call
        return MyStore("postgresql://...")

    report = await check_store(open_my_store)   # raises ProbeFailed listing what broke

Each probe drives a real engine (or the store directly) and checks a property the engine relies
on: results survive closing and reopening the store; expired runs are swept with everything they
own; a worker whose lease was taken over can no longer write. Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._engine import create_engine
from ._errors import StaleLeaseError, StepstoneError
from ._jobs import define_job
from ._step import Step
from ._util import new_id
from .stores._contract import NewEvent, NewRun, Store

__all__ = [
    "ProbeFailed",
    "TestClock",
    "ProbeResult",
    "StoreFactory",
    "check_store",
    "probe_durability",
    "probe_fencing",
    "probe_ttl_sweep",
]

StoreFactory = Callable[[], "Store | Awaitable[Store]"]


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TestClock:
    """A controllable clock for an engine (``create_engine(..., clock=TestClock())``): time stands
    still until :meth:`advance` moves it, firing every timer it passes, so a test of a one-day
    sleep, an event timeout or a retry backoff takes milliseconds (Temporal's time skipping).

    Leases are timed by it too: advancing past ``stale_threshold`` while a run executes makes its
    lease look expired to other engines on the same store (the one executing it never re-claims
    it). Timers fire on the running event loop; ``await clock.settle()`` lets woken runs proceed.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._timers: list[_Timer] = []

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(when, callback)
        if when <= self._now:
            asyncio.get_running_loop().call_soon(self._fire, timer)
        else:
            self._timers.append(timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        self.call_at(self._now + max(seconds, 0.0), wake)
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and fire, in time order, every timer now due."""
        if seconds < 0:
            raise ValueError("a TestClock only moves forward")
        self._now += seconds
        due = sorted((t for t in self._timers if t.when <= self._now), key=lambda t: t.when)
        self._timers = [t for t in self._timers if t.when > self._now]
        for timer in due:
            self._fire(timer)

    def advance_to(self, timestamp: float) -> None:
        self.advance(max(timestamp - self._now, 0.0))

    @property
    def next_timer(self) -> float | None:
        """When the earliest pending timer fires (None: none pending)."""
        pending = [t.when for t in self._timers if not t.cancelled]
        return min(pending) if pending else None

    async def settle(self, turns: int = 20) -> None:
        """Give the event loop a few turns, so what the last :meth:`advance` woke can run."""
        for _ in range(turns):
            await asyncio.sleep(0)

    @staticmethod
    def _fire(timer: _Timer) -> None:
        if not timer.cancelled:
            timer.cancelled = True
            timer.callback()


class ProbeFailed(StepstoneError, AssertionError):
    code = "probe_failed"


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str


async def _open(factory: StoreFactory) -> Store:
    store = factory()
    if inspect.isawaitable(store):
        store = await store
    assert not inspect.isawaitable(store)
    await store.init()
    return store


def _fast(store: Store, **extra: Any) -> Any:
    return create_engine(store, polling_interval=0.05, heartbeat_interval=0.1, stale_threshold=0.5, **extra)


def _record(calls: list[str], name: str) -> str:
    calls.append(name)
    return name


async def probe_durability(factory: StoreFactory, timeout: float = 10.0) -> ProbeResult:
    """A run stopped after two of four steps, store closed and reopened, finishes without running
    the first two again, and its event log has no gap."""
    calls: list[str] = []
    gate = asyncio.Event()

    async def job(step: Step, payload: Any) -> Any:
        for i in range(4):
            if i == 2 and not gate.is_set():
                await asyncio.sleep(3600)
            await step.run(f"s{i}", lambda i=i: _record(calls, f"s{i}"))
        return "done"

    name = f"probe-durability-{new_id()[-8:]}"
    definition = define_job(name, job)
    store = await _open(factory)
    engine = _fast(store)
    engine.register(definition)
    await engine.init()
    try:
        run = await engine.trigger(name, {})
        deadline = time.monotonic() + timeout
        while len(await store.get_steps(run.id)) < 2:
            if time.monotonic() > deadline:
                return ProbeResult("durability", False, "the first two steps were not recorded in time")
            await asyncio.sleep(0.02)
    finally:
        await engine.stop()
        await store.close()
    gate.set()
    store = await _open(factory)
    engine = _fast(store)
    engine.register(definition)
    await engine.init()
    try:
        if await store.get_run(run.id) is None:
            return ProbeResult("durability", False, "the run was gone after closing and reopening the store")
        done = await engine.wait(run.id, timeout=timeout)
        seqs = [e.seq async for e in engine.subscribe(run.id)]
        await engine.delete_run(run.id)
    except StepstoneError as exc:
        return ProbeResult("durability", False, f"resuming after reopen failed: {exc}")
    finally:
        await engine.stop()
        await store.close()
    if done.status != "completed" or done.output != "done":
        return ProbeResult("durability", False, f"run ended {done.status}: {done.error}")
    if calls != ["s0", "s1", "s2", "s3"]:
        return ProbeResult("durability", False, f"steps ran {calls}; expected each once")
    if seqs != list(range(len(seqs))):
        return ProbeResult("durability", False, f"event log has a gap or duplicate: {seqs}")
    return ProbeResult("durability", True, "resumed after reopen at the first unfinished step")


async def probe_ttl_sweep(factory: StoreFactory, timeout: float = 10.0) -> ProbeResult:
    """An expired run is deleted with its steps and events; an unexpired one is kept."""

    async def job(step: Step, payload: Any) -> Any:
        return await step.run("only", lambda: payload)

    short = define_job(f"probe-ttl-short-{new_id()[-8:]}", job, retention=0.05)
    long = define_job(f"probe-ttl-long-{new_id()[-8:]}", job, retention=3600)
    store = await _open(factory)
    engine = _fast(store)
    engine.register(short)
    engine.register(long)
    await engine.init()
    try:
        gone = await engine.trigger(short.name, 1)
        kept = await engine.trigger(long.name, 2)
        await engine.wait(gone.id, timeout=timeout)
        await engine.wait(kept.id, timeout=timeout)
        await asyncio.sleep(0.1)
        await engine.sweep()
        still = await store.get_run(gone.id)
        leftovers = len(await store.get_steps(gone.id)) + len(await store.read_events(gone.id, 0))
        kept_run = await store.get_run(kept.id)
        if kept_run is not None:
            await engine.delete_run(kept.id)
    finally:
        await engine.stop()
        await store.close()
    if still is not None or leftovers:
        return ProbeResult("ttl_sweep", False, "an expired run (or its steps/events) survived the sweep")
    if kept_run is None:
        return ProbeResult("ttl_sweep", False, "a run with an hour of retention left was swept")
    return ProbeResult("ttl_sweep", True, "expired runs swept with all they own; others kept")


async def probe_fencing(factory: StoreFactory) -> ProbeResult:
    """After a lease expires and another owner claims the run, the first owner's writes fail."""
    store = await _open(factory)
    job_name = f"probe-fencing-{new_id()[-8:]}"
    try:
        t = time.time()
        new = NewRun(id=new_id(), job_name=job_name, job_version="1", input=None, created_at=t)
        run, _ = await store.create_run(new, NewEvent("run:trigger", {}, t))
        first = await store.claim_next("probe-a", [job_name], time.time(), time.time() + 0.05)
        await asyncio.sleep(0.1)
        second = await store.claim_next("probe-b", [job_name], time.time(), time.time() + 30)
        if first is None or second is None or second.epoch <= first.epoch:
            return ProbeResult("fencing", False, "an expired lease was not reclaimed with a higher epoch")
        before = len(await store.read_events(run.id, 0))
        try:
            await store.append_events(run.id, first.epoch, [NewEvent("log:write", {"zombie": True}, time.time())])
        except StaleLeaseError:
            pass
        else:
            return ProbeResult("fencing", False, "a write with a stale epoch was accepted")
        if len(await store.read_events(run.id, 0)) != before:
            return ProbeResult("fencing", False, "a refused write still changed the log")
        await store.delete_run(run.id)
    finally:
        await store.close()
    return ProbeResult("fencing", True, "stale-epoch writes are refused and change nothing")


async def check_store(factory: StoreFactory) -> list[ProbeResult]:
    """Run every probe; raise ProbeFailed naming each one that failed."""
    results = [await probe_durability(factory), await probe_ttl_sweep(factory), await probe_fencing(factory)]
    failed = [r for r in results if not r.ok]
    if failed:
        raise ProbeFailed("; ".join(f"{r.name}: {r.detail}" for r in failed))
    return results
