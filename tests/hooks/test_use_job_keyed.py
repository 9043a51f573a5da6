"""Keyed ``use_job`` on both sources (an in-process Engine, and a Client to a real server): one
current run per (job, key), kept apart across a "reload", found again without storage by its
label, one run for two tabs triggering the same key at once, a new run only once the key's run is
finished, and ``follow_latest`` switching only to runs of its own key."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from stepstone.hooks import MemoryStorage, use_job
from stepstone.hooks._job import KEY_LABEL


def keys(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]  # the server is shared by the module's tests: keys of their own
    return [f"order-{tag}-{i}" for i in range(n)]


async def test_two_entities_stay_apart_across_a_reload(source: Any, gate: Path) -> None:
    storage = MemoryStorage()
    one, two = keys(2)
    first = {key: use_job(source, "steps", storage=storage, follow_latest=False, key=key) for key in (one, two)}
    runs = {key: await state.trigger({"steps": 3, "gate": str(gate)}) for key, state in first.items()}
    assert runs[one].id != runs[two].id and runs[one].labels[KEY_LABEL] == one
    for state in first.values():
        await state.aclose()  # the page goes away mid-run
    scope = f"server:{source.api_url}" if hasattr(source, "api_url") else "local"
    assert sorted(k for k in storage.data if ":key:" in k) == sorted(
        f"stepstone:{scope}:steps:key:{k}:current-run" for k in (one, two)
    )

    for key in (two, one):  # the reload, in another order
        async with use_job(source, "steps", storage=storage, follow_latest=False, key=key) as state:
            await state.ready(timeout=10)
            assert state.current_run_id == runs[key].id
    assert not any(k.endswith(":steps:current-run") for k in storage.data), "the job's own slot is untouched"

    # another browser (no storage): each key finds its own active run by its label
    for key in (one, two):
        async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False, key=key) as state:
            await state.ready(timeout=10)
            assert state.current_run_id == runs[key].id
    gate.touch()
    for run in runs.values():
        await source.wait(run.id, timeout=10)


async def test_two_tabs_triggering_one_key_at_once_make_one_run(source: Any) -> None:
    (key,) = keys(1)
    tabs = [use_job(source, "steps", storage=MemoryStorage(), follow_latest=False, key=key) for _ in range(3)]
    results = await asyncio.gather(*(tab.trigger({"steps": 1}) for tab in tabs))
    assert len({r.id for r in results}) == 1
    assert sorted(r.created for r in results) == [False, False, True]
    page = await source.get_runs("steps", labels={KEY_LABEL: key})
    assert page.total == 1
    assert all(tab.current_run_id == results[0].id for tab in tabs)
    await source.wait(results[0].id, timeout=10)
    again = await asyncio.gather(*(tab.trigger({"steps": 1}) for tab in tabs[:2]))  # a double click
    assert len({r.id for r in again}) == 1 and again[0].id != results[0].id
    assert (await source.get_runs("steps", labels={KEY_LABEL: key})).total == 2
    for tab in tabs:
        await tab.aclose()


async def test_a_trigger_while_the_keys_run_is_active_follows_it(source: Any, gate: Path) -> None:
    (key,) = keys(1)
    async with use_job(source, "steps", storage=MemoryStorage(), follow_latest=False, key=key) as state:
        first = await state.trigger({"steps": 2, "gate": str(gate)})
        second = await state.trigger({"steps": 2})
        assert second.id == first.id and not second.created and first.created
        gate.touch()
        await state.wait_for(lambda s: s.is_completed, timeout=10)
        third = await state.trigger({"steps": 1})
        assert third.created and third.id != first.id
        await state.wait_for(lambda s: s.current_run_id == third.id and s.is_completed, timeout=10)
        explicit = await state.trigger({"steps": 1}, idempotency_key=f"{key}-mine")
        assert explicit.created and explicit.idempotency_key == f"{key}-mine"


async def test_follow_latest_switches_only_to_runs_of_its_key(source: Any) -> None:
    mine, other = keys(2)
    async with use_job(source, "steps", storage=MemoryStorage(), key=mine) as state:
        await state.ready(timeout=10)
        foreign = await source.trigger("steps", {"steps": 1}, labels={KEY_LABEL: other})
        unkeyed = await source.trigger("steps", {"steps": 1})
        own = await source.trigger("steps", {"steps": 1}, labels={KEY_LABEL: mine})  # another tab
        await state.wait_for(lambda s: s.current_run_id == own.id and s.is_completed, timeout=10)
        for run in (foreign, unkeyed):
            await source.wait(run.id, timeout=10)
        assert state.current_run_id == own.id


async def test_a_key_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        use_job(object(), "steps", key="")  # type: ignore[arg-type]
