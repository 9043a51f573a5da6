"""The Store contract, as plain async cases: stdlib + stepstone only, so the same file runs in
CPython (``test_contract.py``) and inside Pyodide against IndexedDB (``tests/browser``).

Each case takes a fresh, initialised, empty store and raises AssertionError on a broken rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stepstone import (
    InvalidRunState,
    NewEvent,
    NewRun,
    Progress,
    RunFilter,
    RunNotFound,
    StaleLeaseError,
    StepRecord,
    Wait,
)

Case = Callable[[Any], Awaitable[None]]
CASES: dict[str, Case] = {}
_counter = [0]


def case(fn: Case) -> Case:
    CASES[fn.__name__] = fn
    return fn


def _new(
    job: str = "job",
    *,
    key: str | None = None,
    ckey: str | None = None,
    labels: dict[str, str] | None = None,
    input: Any = None,
    at: float | None = None,
) -> NewRun:
    _counter[0] += 1
    t = time.time() if at is None else at
    return NewRun(
        id=f"run-{_counter[0]:06d}-{int(t * 1000) % 100000}",
        job_name=job,
        job_version="1",
        input={"n": _counter[0]} if input is None else input,
        created_at=t,
        labels=labels or {},
        idempotency_key=key,
        concurrency_key=ckey,
    )


def _ev(type: str = "log:write", **data: Any) -> NewEvent:
    return NewEvent(type, data, time.time())


async def _create(store: Any, **kw: Any) -> Any:
    run, created = await store.create_run(_new(**kw), _ev("run:trigger"))
    assert created
    return run


async def _claim(store: Any, owner: str = "w1", jobs: tuple[str, ...] = ("job",), lease: float = 30.0) -> Any:
    t = time.time()
    return await store.claim_next(owner, jobs, t, t + lease)


def _raises(exc_type: type[BaseException]) -> Any:
    class _Ctx:
        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, et: Any, ev: Any, tb: Any) -> bool:
            assert et is not None, f"expected {exc_type.__name__}, nothing was raised"
            assert issubclass(et, exc_type), f"expected {exc_type.__name__}, got {et.__name__}: {ev}"
            return True

    return _Ctx()


# -- creating and reading runs ------------------------------------------------------------------
@case
async def create_run_is_pending_with_trigger_event(store: Any) -> None:
    run = await _create(store, input={"a": [1, 2, {"b": None}]}, labels={"team": "x"})
    assert run.status == "pending" and run.attempt == 1 and run.epoch == 0
    assert run.input == {"a": [1, 2, {"b": None}]}
    assert dict(run.labels) == {"team": "x"}
    assert run.last_seq == 0
    got = await store.get_run(run.id)
    assert got is not None and got.id == run.id and got.input == run.input
    events = await store.read_events(run.id, 0)
    assert [(e.seq, e.type) for e in events] == [(0, "run:trigger")]


@case
async def get_missing_run_is_none(store: Any) -> None:
    assert await store.get_run("nope") is None
    assert await store.get_steps("nope") == []
    assert await store.read_events("nope", 0) == []


@case
async def idempotency_key_returns_existing_run_per_job(store: Any) -> None:
    first = await _create(store, key="k1")
    again, created = await store.create_run(_new(key="k1"), _ev("run:trigger"))
    assert not created and again.id == first.id
    other, created = await store.create_run(_new(job="other", key="k1"), _ev("run:trigger"))
    assert created and other.id != first.id
    runs, total = await store.list_runs(RunFilter())
    assert total == 2 and len(runs) == 2


@case
async def list_runs_filters_paginates_and_counts(store: Any) -> None:
    ids = []
    for i in range(7):
        run = await _create(store, job="a" if i % 2 == 0 else "b", labels={"tier": "gold" if i < 3 else "free"})
        ids.append(run.id)
    runs, total = await store.list_runs(RunFilter(limit=3, offset=0))
    assert total == 7 and [r.id for r in runs] == ids[::-1][:3], "newest first"
    runs, total = await store.list_runs(RunFilter(limit=3, offset=6))
    assert total == 7 and [r.id for r in runs] == [ids[0]]
    runs, total = await store.list_runs(RunFilter(job_name="a"))
    assert total == 4 and {r.job_name for r in runs} == {"a"}
    runs, total = await store.list_runs(RunFilter(labels={"tier": "gold"}))
    assert total == 3 and {r.id for r in runs} == set(ids[:3])
    runs, total = await store.list_runs(RunFilter(job_name="b", labels={"tier": "gold"}))
    assert total == 1 and runs[0].id == ids[1]
    await _claim(store, jobs=("a",))
    runs, total = await store.list_runs(RunFilter(statuses=("running",)))
    assert total == 1 and runs[0].id == ids[0]
    runs, total = await store.list_runs(RunFilter(statuses=("pending", "running")))
    assert total == 7


# -- claiming -----------------------------------------------------------------------------------
@case
async def claim_takes_oldest_and_bumps_epoch(store: Any) -> None:
    a = await _create(store)
    b = await _create(store)
    got = await _claim(store)
    assert got.id == a.id and got.status == "running" and got.owner == "w1" and got.epoch == 1
    assert got.started_at is not None and got.lease_expires_at is not None
    got2 = await _claim(store, owner="w2")
    assert got2.id == b.id and got2.owner == "w2"
    assert await _claim(store, owner="w3") is None


@case
async def claim_only_takes_listed_jobs(store: Any) -> None:
    await _create(store, job="x")
    assert await _claim(store, jobs=("y",)) is None
    assert await _claim(store, jobs=()) is None
    assert (await _claim(store, jobs=("y", "x"))).job_name == "x"


@case
async def expired_lease_is_reclaimed_with_new_epoch(store: Any) -> None:
    run = await _create(store)
    first = await _claim(store, owner="w1", lease=0.05)
    assert first.epoch == 1
    assert await _claim(store, owner="w2") is None, "live lease must not be reclaimed"
    await asyncio.sleep(0.1)
    second = await _claim(store, owner="w2")
    assert second is not None and second.id == run.id and second.epoch == 2 and second.owner == "w2"


@case
async def concurrency_key_runs_one_at_a_time_in_order(store: Any) -> None:
    a = await _create(store, ckey="acct-1")
    b = await _create(store, ckey="acct-1")
    c = await _create(store, ckey="acct-2")
    first = await _claim(store)
    assert first.id == a.id
    second = await _claim(store)
    assert second.id == c.id, "a different key runs beside it"
    assert await _claim(store) is None, "same key waits while the first is running"
    await store.finish_run(a.id, first.epoch, "completed", None, None, time.time(), None, [_ev("run:complete")])
    third = await _claim(store)
    assert third.id == b.id


@case
async def concurrency_key_order_holds_for_pending_runs(store: Any) -> None:
    a = await _create(store, job="slow", ckey="k")
    b = await _create(store, job="job", ckey="k")
    assert await _claim(store, jobs=("job",)) is None, "b must wait for the older a, even if a is not ours"
    got = await _claim(store, jobs=("slow",))
    assert got.id == a.id
    await store.finish_run(a.id, got.epoch, "cancelled", None, None, time.time(), None, [_ev("run:cancel")])
    assert (await _claim(store, jobs=("job",))).id == b.id


@case
async def renew_lease_is_fenced(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    assert await store.renew_lease(run.id, run.epoch, time.time() + 60)
    assert not await store.renew_lease(run.id, run.epoch + 1, time.time() + 60)
    assert not await store.renew_lease("nope", 1, time.time() + 60)


@case
async def release_lease_makes_run_claimable_at_once(store: Any) -> None:
    await _create(store)
    run = await _claim(store, owner="w1")
    assert not await store.release_lease(run.id, run.epoch + 5, time.time())
    assert await store.release_lease(run.id, run.epoch, time.time())
    got = await store.get_run(run.id)
    assert got.status == "pending" and got.owner is None
    again = await _claim(store, owner="w2")
    assert again.id == run.id and again.epoch == run.epoch + 1


@case
async def expire_leases_of_a_dead_owner(store: Any) -> None:
    await _create(store)
    await _create(store)
    a = await _claim(store, owner="dead")
    b = await _claim(store, owner="alive")
    assert await store.lease_owners(time.time()) == {"dead", "alive"}
    assert await store.expire_leases("dead", time.time()) == 1
    assert await store.lease_owners(time.time()) == {"alive"}
    got = await _claim(store, owner="new")
    assert got.id == a.id and got.epoch == a.epoch + 1
    assert (await store.get_run(b.id)).owner == "alive"


# -- fenced writes ------------------------------------------------------------------------------
@case
async def events_get_consecutive_seqs(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    out = await store.append_events(run.id, run.epoch, [_ev("run:start"), _ev(i=1), _ev(i=2)])
    assert [e.seq for e in out] == [1, 2, 3]
    out = await store.append_events(run.id, run.epoch, [_ev(i=3)])
    assert [e.seq for e in out] == [4]
    events = await store.read_events(run.id, 0)
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]
    assert events[2].data == {"i": 1}
    assert [e.seq for e in await store.read_events(run.id, 3)] == [3, 4]
    assert [e.seq for e in await store.read_events(run.id, 1, limit=2)] == [1, 2]
    assert await store.read_events(run.id, 99) == []
    assert (await store.get_run(run.id)).last_seq == 4


@case
async def stale_epoch_writes_are_refused_and_change_nothing(store: Any) -> None:
    await _create(store)
    old = await _claim(store, owner="w1", lease=0.05)
    await asyncio.sleep(0.1)
    new = await _claim(store, owner="w2")
    assert new.epoch == old.epoch + 1
    before = await store.read_events(old.id, 0)
    async with _raises(StaleLeaseError):
        await store.append_events(old.id, old.epoch, [_ev(zombie=True)])
    async with _raises(StaleLeaseError):
        await store.commit_step(old.id, old.epoch, StepRecord(old.id, "s", 0, "completed", 1), [_ev("step:complete")])
    async with _raises(StaleLeaseError):
        await store.finish_run(old.id, old.epoch, "completed", 1, None, time.time(), None, [_ev("run:complete")])
    assert await store.read_events(old.id, 0) == before
    assert await store.get_steps(old.id) == []
    got = await store.get_run(old.id)
    assert got.status == "running" and got.owner == "w2" and got.output is None


@case
async def unfenced_append_needs_an_existing_run(store: Any) -> None:
    run = await _create(store)
    out = await store.append_events(run.id, None, [_ev("note")])
    assert out[0].seq == 1
    async with _raises(RunNotFound):
        await store.append_events("missing", None, [_ev("note")])
    async with _raises(StaleLeaseError):
        await store.append_events("missing", 3, [_ev("note")])


@case
async def commit_step_records_result_events_and_progress(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    rec = StepRecord(run.id, "fetch", 0, "completed", {"users": [1, 2]}, None, 1.0, 2.0)
    out = await store.commit_step(
        run.id, run.epoch, rec, [_ev("step:start"), _ev("step:complete")], Progress(1, 3, "one")
    )
    assert [e.seq for e in out] == [1, 2]
    steps = await store.get_steps(run.id)
    assert len(steps) == 1 and steps[0].name == "fetch" and steps[0].output == {"users": [1, 2]}
    assert steps[0].status == "completed" and steps[0].index == 0
    got = await store.get_run(run.id)
    assert got.progress == Progress(1, 3, "one")
    failed = StepRecord(run.id, "save", 1, "failed", None, "boom", 2.0, 3.0)
    await store.commit_step(run.id, run.epoch, failed, [_ev("step:fail")])
    retried = StepRecord(run.id, "save", 1, "completed", 7, None, 3.0, 4.0)
    await store.commit_step(run.id, run.epoch, retried, [_ev("step:complete")])
    steps = await store.get_steps(run.id)
    assert [(s.name, s.status, s.output) for s in steps] == [
        ("fetch", "completed", {"users": [1, 2]}),
        ("save", "completed", 7),
    ]


@case
async def finish_run_is_terminal_and_clears_lease(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    t = time.time()
    done, out = await store.finish_run(
        run.id, run.epoch, "completed", {"ok": True}, None, t, t + 60, [_ev("run:complete")]
    )
    assert done.status == "completed" and done.output == {"ok": True} and done.finished_at == t
    assert done.expires_at == t + 60 and done.owner is None and done.lease_expires_at is None
    assert out[0].seq == done.last_seq
    assert not await store.renew_lease(run.id, run.epoch, t + 60)
    assert await _claim(store) is None
    failed_run = await _create(store)
    claimed = await _claim(store)
    assert claimed.id == failed_run.id
    failed, _ = await store.finish_run(
        claimed.id, claimed.epoch, "failed", None, "ValueError: x", t, None, [_ev("run:fail")]
    )
    assert failed.status == "failed" and failed.error == "ValueError: x"


# -- cancel and retry ---------------------------------------------------------------------------
@case
async def cancel_of_a_pending_run_is_final_and_of_a_running_one_is_a_request(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    requested, out = await store.cancel_run(run.id, time.time(), _ev("run:cancel"))
    assert requested.status == "running" and requested.cancel_requested and out == []
    assert requested.epoch == run.epoch, "the worker keeps the run: its job runs cleanup steps, then ends it"
    await store.append_events(run.id, run.epoch, [_ev("cleanup")])
    renewed = await store.renew_lease(run.id, run.epoch, time.time() + 10)
    assert renewed is not None and renewed.cancel_requested, "a heartbeat tells the worker"
    t = time.time()
    ended, _ = await store.finish_run(run.id, run.epoch, "cancelled", None, None, t, None, [_ev("run:cancel")])
    assert ended.status == "cancelled"
    pending = await _create(store)
    cancelled, out = await store.cancel_run(pending.id, time.time(), _ev("run:cancel"))
    assert cancelled.status == "cancelled" and cancelled.epoch == pending.epoch + 1
    assert [e.type for e in out] == ["run:cancel"]
    assert await _claim(store) is None, "a cancelled pending run never starts"


@case
async def cancel_rejects_finished_and_missing_runs(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await store.finish_run(run.id, run.epoch, "completed", 1, None, time.time(), None, [_ev("run:complete")])
    before = await store.read_events(run.id, 0)
    async with _raises(InvalidRunState):
        await store.cancel_run(run.id, time.time(), _ev("run:cancel"))
    async with _raises(RunNotFound):
        await store.cancel_run("missing", time.time(), _ev("run:cancel"))
    assert await store.read_events(run.id, 0) == before
    assert (await store.get_run(run.id)).status == "completed"


@case
async def retry_keeps_steps_and_bumps_attempt(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await store.commit_step(run.id, run.epoch, StepRecord(run.id, "a", 0, "completed", 1), [_ev("step:complete")])
    await store.finish_run(run.id, run.epoch, "failed", None, "boom", time.time(), time.time() + 5, [_ev("run:fail")])
    retried, out = await store.retry_run(run.id, time.time(), _ev("run:retry"))
    assert retried.status == "pending" and retried.attempt == 2 and retried.error is None
    assert retried.expires_at is None and out[0].type == "run:retry"
    assert [s.name for s in await store.get_steps(run.id)] == ["a"]
    again = await _claim(store)
    assert again.id == run.id and again.epoch > run.epoch


@case
async def retry_rejects_completed_running_and_missing(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    async with _raises(InvalidRunState):
        await store.retry_run(run.id, time.time(), _ev("run:retry"))
    await store.finish_run(run.id, run.epoch, "completed", 1, None, time.time(), None, [_ev("run:complete")])
    async with _raises(InvalidRunState):
        await store.retry_run(run.id, time.time(), _ev("run:retry"))
    async with _raises(RunNotFound):
        await store.retry_run("missing", time.time(), _ev("run:retry"))
    got = await store.get_run(run.id)
    assert got.status == "completed" and got.attempt == 1


# -- waiting ------------------------------------------------------------------------------------
@case
async def wait_events_returns_at_once_when_behind(store: Any) -> None:
    run = await _create(store)
    t0 = time.monotonic()
    await store.wait_events(run.id, -1, 5.0)
    assert time.monotonic() - t0 < 1.0


@case
async def wait_events_wakes_on_append(store: Any) -> None:
    await _create(store)
    run = await _claim(store)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await store.append_events(run.id, run.epoch, [_ev("x")])

    task = asyncio.ensure_future(later())
    t0 = time.monotonic()
    await store.wait_events(run.id, 0, 5.0)
    elapsed = time.monotonic() - t0
    await task
    assert elapsed < 2.0, f"woke after {elapsed:.2f}s: notification, not the timeout"
    t0 = time.monotonic()
    await store.wait_events(run.id, 1, 0.05)
    assert time.monotonic() - t0 >= 0.04, "times out when nothing new arrives"


@case
async def run_changes_feed_orders_and_resumes(store: Any) -> None:
    v0 = await store.runs_version()
    assert await store.run_changes(v0) == []
    a = await _create(store)
    b = await _create(store)
    changes = await store.run_changes(v0)
    assert [c.run_id for c in changes] == [a.id, b.id]
    assert changes[0].version < changes[1].version
    mark = changes[-1].version
    claimed = await _claim(store)
    await store.delete_run(b.id)
    later = await store.run_changes(mark)
    assert [(c.run_id, c.run is None) for c in later] == [(claimed.id, False), (b.id, True)]
    assert later[0].run.status == "running"
    assert await store.run_changes(later[-1].version) == []
    assert await store.runs_version() == later[-1].version

    async def poke() -> None:
        await asyncio.sleep(0.05)
        await _create(store)

    task = asyncio.ensure_future(poke())
    t0 = time.monotonic()
    await store.wait_run_changes(later[-1].version, 5.0)
    await task
    assert time.monotonic() - t0 < 2.0


# -- deletion and retention ---------------------------------------------------------------------
@case
async def delete_run_removes_everything(store: Any) -> None:
    keep = await _create(store, key="keep")
    gone = await _create(store, key="gone", labels={"x": "y"})
    run = await _claim(store)
    assert run.id == keep.id
    run2 = await _claim(store)
    await store.commit_step(run2.id, run2.epoch, StepRecord(run2.id, "s", 0, "completed", 1), [_ev("step:complete")])
    assert await store.delete_run(gone.id)
    assert not await store.delete_run(gone.id)
    assert await store.get_run(gone.id) is None
    assert await store.get_steps(gone.id) == [] and await store.read_events(gone.id, 0) == []
    runs, total = await store.list_runs(RunFilter(labels={"x": "y"}))
    assert total == 0 and runs == []
    again, created = await store.create_run(_new(key="gone"), _ev("run:trigger"))
    assert created and again.id != gone.id, "the idempotency key is free again"
    assert (await store.get_run(keep.id)) is not None


@case
async def sweep_deletes_only_expired_runs(store: Any) -> None:
    t = time.time()
    runs = []
    for _ in range(3):
        await _create(store)
        runs.append(await _claim(store))
    await store.finish_run(runs[0].id, runs[0].epoch, "completed", 1, None, t, t - 1, [_ev("run:complete")])
    await store.finish_run(runs[1].id, runs[1].epoch, "failed", None, "x", t, t + 3600, [_ev("run:fail")])
    await store.finish_run(runs[2].id, runs[2].epoch, "completed", 1, None, t, None, [_ev("run:complete")])
    assert await store.sweep(t) == 1
    assert await store.get_run(runs[0].id) is None and await store.read_events(runs[0].id, 0) == []
    assert await store.get_run(runs[1].id) is not None and await store.get_run(runs[2].id) is not None
    assert await store.sweep(t + 7200) == 1
    assert await store.sweep(t + 7200) == 0
    await store.set_expiry(runs[2].id, t)
    assert await store.sweep(t + 1) == 1


@case
async def values_round_trip_as_json(store: Any) -> None:
    value = {"unicode": "żółw 🐢", "nested": [1, 2.5, True, None, {"k": []}], "big": 2**53}
    run = await _create(store, input=value)
    assert (await store.get_run(run.id)).input == value
    claimed = await _claim(store)
    await store.commit_step(claimed.id, claimed.epoch, StepRecord(run.id, "s", 0, "completed", value), [_ev(v=value)])
    assert (await store.get_steps(run.id))[0].output == value
    assert (await store.read_events(run.id, 1))[0].data == {"v": value}


@case
async def claim_skips_excluded_runs(store: Any) -> None:
    a = await _create(store)
    b = await _create(store)
    first = await _claim(store, lease=0.05)
    assert first.id == a.id
    await asyncio.sleep(0.1)
    t = time.time()
    got = await store.claim_next("w1", ("job",), t, t + 30, exclude=(a.id,))
    assert got is not None and got.id == b.id, "a lapsed run the caller still executes is not re-claimed"
    assert (await store.get_run(a.id)).epoch == first.epoch
    assert await store.renew_lease(a.id, first.epoch, time.time() + 30), "so its own lease can still be renewed"


# -- suspension, events, child runs, versions ---------------------------------------------------
def _wait(
    reason: str = "sleep", until: float | None = None, events: tuple[str, ...] = (), children: tuple[str, ...] = ()
) -> Wait:
    return Wait(reason, until, events, children)


async def _suspend(store: Any, run: Any, wait: Any) -> Any:
    suspended, out = await store.suspend_run(run.id, run.epoch, wait, time.time(), [_ev("run:suspend")])
    assert [e.type for e in out] == ["run:suspend"]
    return suspended


@case
async def a_suspended_run_holds_no_lease_and_wakes_by_time(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    until = time.time() + 0.3
    parked = await _suspend(store, run, _wait(until=until))
    assert parked.status == "suspended" and parked.owner is None and parked.lease_expires_at is None
    assert parked.wait == _wait(until=until) and parked.wake_at == until
    assert await store.lease_owners(time.time()) == set()
    assert await _claim(store) is None, "not before its time"
    assert await store.next_wake(time.time()) == until
    t = until + 0.01
    woken = await store.claim_next("w2", ("job",), t, t + 30)
    assert woken is not None and woken.id == run.id and woken.status == "running" and woken.owner == "w2"
    assert woken.epoch == run.epoch + 1 and woken.wait == _wait(until=until), "it says what it woke from"
    stored = await store.get_run(run.id)
    assert stored.wait is None and stored.wake_at is None
    assert await store.next_wake(time.time()) is None


@case
async def suspending_is_fenced(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    async with _raises(StaleLeaseError):
        await store.suspend_run(run.id, run.epoch + 1, _wait(until=time.time() + 60), time.time(), [_ev("x")])
    assert (await store.get_run(run.id)).status == "running"


@case
async def a_retry_backoff_suspension_sets_the_attempt_and_error(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    parked, _ = await store.suspend_run(
        run.id, run.epoch, _wait("retry", until=time.time() + 60), time.time(), [_ev("run:suspend")],
        attempt=2, error="ValueError: x",
    )  # fmt: skip
    assert parked.attempt == 2 and parked.error == "ValueError: x" and parked.status == "suspended"


@case
async def events_are_queued_and_taken_oldest_first_each_once(store: Any) -> None:
    created = await _create(store)
    await store.send_event(created.id, "approval", {"by": "ann"}, time.time())
    await store.send_event(created.id, "other", 1, time.time())
    await store.send_event(created.id, "approval", {"by": "bob"}, time.time())
    run = await _claim(store)
    rec = StepRecord(run.id, "event:approval", 0, "completed", None, None, 1.0, 2.0)
    taken = await store.take_event(run.id, run.epoch, "approval", rec, [_ev("step:complete")])
    assert taken[0] is True and taken[1] == {"by": "ann"} and [e.type for e in taken[2]] == ["step:complete"]
    [step] = await store.get_steps(run.id)
    assert step.status == "completed" and step.output == {"event": "approval", "data": {"by": "ann"}}
    rec2 = StepRecord(run.id, "event:approval#2", 1, "completed", None, None, 1.0, 2.0)
    assert (await store.take_event(run.id, run.epoch, "approval", rec2, [_ev("step:complete")]))[1] == {"by": "bob"}
    before = await store.read_events(run.id, 0)
    rec3 = StepRecord(run.id, "event:approval#3", 2, "completed", None, None, 1.0, 2.0)
    assert await store.take_event(run.id, run.epoch, "approval", rec3, [_ev("step:complete")]) == (False, None, [])
    assert await store.read_events(run.id, 0) == before and len(await store.get_steps(run.id)) == 2
    async with _raises(StaleLeaseError):
        await store.take_event(run.id, run.epoch + 1, "other", rec3, [_ev("step:complete")])


@case
async def an_event_wakes_a_run_waiting_for_it_and_only_that_one(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await _suspend(store, run, _wait("event", events=("approval",)))
    await store.send_event(run.id, "unrelated", None, time.time())
    assert await _claim(store) is None
    await store.send_event(run.id, "approval", None, time.time())
    woken = await _claim(store)
    assert woken is not None and woken.id == run.id and woken.wait.events == ("approval",)


@case
async def a_wait_for_an_event_already_queued_is_claimable_at_once(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await store.send_event(run.id, "approval", 1, time.time())
    parked = await _suspend(store, run, _wait("event", until=time.time() + 3600, events=("approval",)))
    assert parked.wake_at is not None and parked.wake_at <= time.time()
    assert (await _claim(store)).id == run.id


@case
async def events_for_missing_or_finished_runs_are_refused(store: Any) -> None:
    async with _raises(RunNotFound):
        await store.send_event("missing", "x", None, time.time())
    await _create(store)
    run = await _claim(store)
    await store.finish_run(run.id, run.epoch, "completed", None, None, time.time(), None, [_ev("run:complete")])
    async with _raises(InvalidRunState):
        await store.send_event(run.id, "x", None, time.time())


def _child(parent: Any, step: str, job: str = "child") -> NewRun:
    new = _new(job)
    return NewRun(new.id, new.job_name, "1", new.input, new.created_at, parent_id=parent.id, parent_step=step)


@case
async def a_child_run_is_created_once_per_parent_step_and_listed_by_parent(store: Any) -> None:
    parent = await _create(store)
    first, created = await store.create_run(_child(parent, "charge"), _ev("run:trigger"))
    assert created and first.parent_id == parent.id and first.parent_step == "charge"
    again, created = await store.create_run(_child(parent, "charge"), _ev("run:trigger"))
    assert not created and again.id == first.id
    other, created = await store.create_run(_child(parent, "ship"), _ev("run:trigger"))
    assert created
    runs, total = await store.list_runs(RunFilter(parent_id=parent.id))
    assert total == 2 and {r.id for r in runs} == {first.id, other.id}


async def _finish(store: Any, run_id: str, status: str = "completed") -> None:
    t = time.time()
    run = await store.claim_next("cw", ("child",), t, t + 30)
    assert run is not None and run.id == run_id, (run, run_id)
    await store.finish_run(run.id, run.epoch, status, {"ok": 1}, None, time.time(), None, [_ev("run:x")])


@case
async def a_parent_wakes_when_the_last_awaited_child_finishes(store: Any) -> None:
    await _create(store)
    parent = await _claim(store)
    a, _ = await store.create_run(_child(parent, "a"), _ev("run:trigger"))
    b, _ = await store.create_run(_child(parent, "b"), _ev("run:trigger"))
    await _suspend(store, parent, _wait("children", children=(a.id, b.id)))
    assert await _claim(store) is None
    await _finish(store, a.id)
    assert await _claim(store) is None, "one child is still going"
    await _finish(store, b.id)
    woken = await _claim(store)
    assert woken is not None and woken.id == parent.id and set(woken.wait.children) == {a.id, b.id}


@case
async def a_failed_child_wakes_its_parent_at_once(store: Any) -> None:
    await _create(store)
    parent = await _claim(store)
    a, _ = await store.create_run(_child(parent, "a"), _ev("run:trigger"))
    b, _ = await store.create_run(_child(parent, "b"), _ev("run:trigger"))
    await _suspend(store, parent, _wait("children", children=(a.id, b.id)))
    await _finish(store, a.id, "failed")
    assert (await _claim(store)).id == parent.id


@case
async def a_cancelled_pending_child_wakes_its_parent(store: Any) -> None:
    await _create(store)
    parent = await _claim(store)
    a, _ = await store.create_run(_child(parent, "a"), _ev("run:trigger"))
    await _suspend(store, parent, _wait("children", children=(a.id,)))
    await store.cancel_run(a.id, time.time(), _ev("run:cancel"))
    assert (await _claim(store)).id == parent.id


@case
async def children_that_finished_before_the_parent_suspends_wake_it_at_once(store: Any) -> None:
    await _create(store)
    parent = await _claim(store)
    a, _ = await store.create_run(_child(parent, "a"), _ev("run:trigger"))
    await _finish(store, a.id)
    parked = await _suspend(store, parent, _wait("children", children=(a.id,)))
    assert parked.wake_at is not None
    assert (await _claim(store)).id == parent.id


@case
async def cancelling_a_suspended_run_requests_it_and_wakes_it(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await _suspend(store, run, _wait(until=time.time() + 3600))
    requested, out = await store.cancel_run(run.id, time.time(), _ev("run:cancel"))
    assert requested.status == "suspended" and requested.cancel_requested and out == []
    woken = await _claim(store)
    assert woken.id == run.id and woken.cancel_requested


@case
async def a_run_executes_only_on_code_of_its_version(store: Any) -> None:
    new = _new()
    await store.create_run(NewRun(new.id, "job", "1", None, new.created_at), _ev("run:trigger"))
    assert await _claim(store, jobs=(("job", "2"),)) is None, "a v1 run is not claimed by a v2-only worker"
    got = await _claim(store, jobs=(("job", "2"), ("job", "1")))
    assert got is not None and got.job_version == "1"


@case
async def a_suspended_run_keeps_its_concurrency_key(store: Any) -> None:
    a = await _create(store, ckey="k")
    b = await _create(store, ckey="k")
    run = await _claim(store)
    assert run.id == a.id
    await _suspend(store, run, _wait(until=time.time() + 3600))
    assert await _claim(store) is None, f"{b.id} waits while the older run with its key sleeps"


@case
async def retry_clears_a_cancel_request_and_the_wait(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    await store.cancel_run(run.id, time.time(), _ev("run:cancel"))
    await store.finish_run(run.id, run.epoch, "cancelled", None, None, time.time(), None, [_ev("run:cancel")])
    again, _ = await store.retry_run(run.id, time.time(), _ev("run:retry"))
    assert again.status == "pending" and not again.cancel_requested and again.wait is None


@case
async def step_records_keep_attempts_and_waiting_state(store: Any) -> None:
    await _create(store)
    run = await _claim(store)
    waiting = StepRecord(run.id, "nap", 0, "waiting", {"until": 5.0}, None, 1.0, 1.0, 1, 1, None)
    retrying = StepRecord(run.id, "call", 1, "failed", None, "ValueError: x", 1.0, 2.0, 2, 1, 9.5)
    await store.commit_step(run.id, run.epoch, waiting, [_ev("step:start")])
    await store.commit_step(run.id, run.epoch, retrying, [_ev("step:retry")])
    assert await store.get_steps(run.id) == [waiting, retrying]


@case
async def delete_run_forgets_its_queued_events(store: Any) -> None:
    created = await _create(store)
    await store.send_event(created.id, "x", 1, time.time())
    assert await store.delete_run(created.id)
    async with _raises(RunNotFound):
        await store.send_event(created.id, "x", 1, time.time())


@case
async def deleting_an_awaited_child_wakes_its_parent(store: Any) -> None:
    await _create(store)
    parent = await _claim(store)
    a, _ = await store.create_run(_child(parent, "a"), _ev("run:trigger"))
    b, _ = await store.create_run(_child(parent, "b"), _ev("run:trigger"))
    await _suspend(store, parent, _wait("children", children=(a.id, b.id)))
    assert await store.delete_run(a.id)
    woken = await _claim(store)
    assert woken is not None and woken.id == parent.id
    await _suspend(store, woken, _wait("children", children=(a.id, b.id)))
    assert (await _claim(store)).id == parent.id, "a child deleted before the parent suspends wakes it at once"
