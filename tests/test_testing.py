from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepstone import MemoryStore
from stepstone.stores.sqlite import SqliteStore
from stepstone.testing import ProbeFailed, check_store, probe_durability, probe_fencing


async def test_probes_pass_on_sqlite(tmp_path: Path) -> None:
    results = await check_store(lambda: SqliteStore(str(tmp_path / "p.db")))
    assert [r.name for r in results] == ["durability", "ttl_sweep", "fencing"] and all(r.ok for r in results)


async def test_probes_pass_on_memory() -> None:
    store = MemoryStore()
    assert all(r.ok for r in await check_store(lambda: store))


async def test_a_store_without_fencing_fails_the_probe() -> None:
    class Unfenced(MemoryStore):
        async def append_events(self, run_id: str, epoch: int | None, events: Any, progress: Any = None) -> Any:
            return await super().append_events(run_id, None, events, progress)

    store = Unfenced()
    result = await probe_fencing(lambda: store)
    assert not result.ok and "stale epoch" in result.detail
    with pytest.raises(ProbeFailed, match="fencing"):
        await check_store(lambda: store)


async def test_a_store_that_forgets_fails_durability() -> None:
    result = await probe_durability(MemoryStore, timeout=2.0)  # a new, empty store on each open
    assert not result.ok and "gone after closing and reopening" in result.detail
