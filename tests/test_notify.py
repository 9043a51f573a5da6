"""``stepstone._notify.Hub``: in-process wake-ups by key.

Every wait here is bounded: a wake-up that never comes fails the test in seconds, not at the suite's
timeout. The cancellation tests look at ``hub._waiters`` (not ``hub.waiting``) to know a waiter has
registered, so they also run against older Hubs that lack ``waiting``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stepstone._notify import Hub

BOUND = 2.0  # seconds: far more than any wake-up here needs


def registered(hub: Hub, key: str) -> int:
    return len(hub._waiters.get(key, ()))


async def until_registered(hub: Hub, key: str, count: int) -> None:
    """Let the waiting tasks run until ``count`` of them wait on ``key`` (no timers involved)."""
    for _ in range(1000):
        if registered(hub, key) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"only {registered(hub, key)} of {count} waiters registered on {key!r}")


async def test_a_waiter_wakes_on_its_own_key_and_not_on_another() -> None:
    hub = Hub()
    waiter = asyncio.create_task(hub.wait("a", 30.0))
    await until_registered(hub, "a", 1)
    hub.publish("b")
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish("a")
    await asyncio.wait_for(waiter, BOUND)
    assert hub.waiting("a") == 0 and hub._waiters == {}


async def test_every_waiter_on_a_key_wakes_on_one_publish() -> None:
    hub = Hub()
    waiters = [asyncio.create_task(hub.wait("k", 30.0)) for _ in range(20)]
    await until_registered(hub, "k", 20)
    assert hub.waiting("k") == 20
    hub.publish("k")
    done, pending = await asyncio.wait(waiters, timeout=BOUND)
    assert not pending and all(t.exception() is None for t in done)
    assert hub.waiting("k") == 0 and hub._waiters == {}


async def test_a_wait_that_times_out_returns_without_error() -> None:
    hub = Hub()
    start = time.monotonic()
    await asyncio.wait_for(hub.wait("k", 0.05), BOUND)
    assert time.monotonic() - start >= 0.04
    assert hub.waiting("k") == 0 and hub._waiters == {}


async def test_a_zero_or_negative_timeout_returns_at_once() -> None:
    hub = Hub()
    await asyncio.wait_for(hub.wait("k", 0), BOUND)
    await asyncio.wait_for(hub.wait("k", -1), BOUND)
    assert hub._waiters == {}


async def test_no_wakeup_is_lost_when_the_condition_is_checked_just_before_waiting() -> None:
    # The documented contract: check, then wait, with no await between. The producer's publish is
    # queued (call_soon) before the consumer waits, so it lands after the check and before the
    # wait could have registered if registration were not synchronous.
    hub = Hub()
    state = {"value": 0}
    loop = asyncio.get_running_loop()

    def produce() -> None:
        state["value"] += 1
        hub.publish("k")

    async def consume(target: int) -> None:
        while state["value"] < target:
            loop.call_soon(produce)
            await hub.wait("k", None)

    await asyncio.wait_for(consume(200), BOUND)
    assert state["value"] == 200 and hub._waiters == {}


async def test_a_producer_and_a_consumer_ping_pong_without_losing_a_wakeup() -> None:
    hub = Hub()
    counter = {"n": 0}

    async def producer(rounds: int) -> None:
        for i in range(rounds):
            counter["n"] += 1
            hub.publish("k")
            for _ in range(i % 3):  # vary where the publish falls relative to the consumer's check
                await asyncio.sleep(0)

    async def consumer(target: int) -> None:
        while counter["n"] < target:
            await hub.wait("k", None)

    await asyncio.wait_for(asyncio.gather(consumer(500), producer(500)), BOUND)
    assert hub._waiters == {}


async def test_a_publish_with_nobody_waiting_is_not_remembered() -> None:
    hub = Hub()
    hub.publish("k")
    assert hub._waiters == {}
    start = time.monotonic()
    await asyncio.wait_for(hub.wait("k", 0.1), BOUND)
    assert time.monotonic() - start >= 0.09, "a publish made before the wait woke it"


async def test_nothing_stays_registered_once_every_waiter_has_left() -> None:
    hub = Hub()
    woken = asyncio.create_task(hub.wait("k", 30.0))
    timed_out = asyncio.create_task(hub.wait("k", 0.01))
    cancelled = asyncio.create_task(hub.wait("k", 30.0))
    other_key = asyncio.create_task(hub.wait("other", 30.0))
    await until_registered(hub, "k", 3)
    await until_registered(hub, "other", 1)

    await asyncio.wait_for(timed_out, BOUND)
    assert hub.waiting("k") == 2
    cancelled.cancel()
    await asyncio.wait({cancelled}, timeout=BOUND)
    assert cancelled.cancelled() and hub.waiting("k") == 1
    hub.publish("k")
    await asyncio.wait_for(woken, BOUND)
    assert hub.waiting("k") == 0 and "k" not in hub._waiters
    other_key.cancel()
    await asyncio.wait({other_key}, timeout=BOUND)
    assert other_key.cancelled()
    assert hub.waiting("other") == 0 and hub._waiters == {}


async def test_a_cancelled_waiter_ends_even_when_published_in_the_same_tick() -> None:
    # Python 3.11's asyncio.wait_for returns the inner result when a cancellation lands in the same
    # tick as the inner future's completion: a Hub built on it swallowed the cancellation and this
    # loop never ended.
    hub = Hub()

    async def loop_forever() -> None:
        while True:
            await hub.wait("k", 1.0)

    task = asyncio.create_task(loop_forever())
    await until_registered(hub, "k", 1)
    hub.publish("k")
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=BOUND)
    if not done:
        task.cancel()  # do not leak a looping task into the next test
        await asyncio.wait({task}, timeout=BOUND)
    assert done, "the waiter swallowed its cancellation and kept looping"
    assert task.cancelled()
    assert hub._waiters == {}


@pytest.mark.parametrize("shared_key", [True, False], ids=["one-key", "a-key-each"])
async def test_many_looping_waiters_cancelled_as_they_are_woken_all_end(shared_key: bool) -> None:
    hub = Hub()
    keys = ["k" if shared_key else f"k{i}" for i in range(200)]

    async def loop_forever(key: str) -> None:
        while True:
            await hub.wait(key, 1.0)

    tasks = [asyncio.create_task(loop_forever(key)) for key in keys]
    for key in set(keys):
        await until_registered(hub, key, keys.count(key))
    for key, task in zip(keys, tasks, strict=True):
        hub.publish(key)
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=BOUND)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=BOUND)
    assert len(pending) == 0, f"{len(pending)} of 200 waiters swallowed their cancellation"
    assert all(task.cancelled() for task in done)
    assert hub._waiters == {}
