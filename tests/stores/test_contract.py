"""Every store passes the same contracts: runs (cases.py) and, for stores that keep Durable Streams,
streams (stream_cases.py). Add a store: add it to STORES.

PostgreSQL runs against 127.0.0.1:5432 (a fresh schema per test in a database of this session,
``tests/postgres/db.py``); it is skipped, saying why, only when no server answers there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stepstone import MemoryStore
from stepstone.stores.sqlite import SqliteStore

from ..postgres import db as pgdb
from .run_cases import CASES
from .stream_cases import STREAM_CASES


def _memory(tmp_path: Path) -> Any:
    return MemoryStore()


def _sqlite(tmp_path: Path) -> Any:
    return SqliteStore(str(tmp_path / "contract.db"))


def _postgres(tmp_path: Path) -> Any:
    reason = pgdb.unavailable()
    if reason:
        pytest.skip(reason)
    from stepstone.stores.postgres import PostgresStore

    return PostgresStore(pgdb.store_url(pool_size=4))


STORES: dict[str, Callable[[Path], Any]] = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    s = STORES[request.param](tmp_path)
    await s.init()
    yield s
    await s.close()


@pytest.mark.parametrize("name", sorted(CASES))
async def test_store_contract(store: Any, name: str) -> None:
    case: Callable[[Any], Awaitable[None]] = CASES[name]
    await case(store)


@pytest.mark.parametrize("name", sorted(STREAM_CASES))
async def test_stream_store_contract(store: Any, name: str) -> None:
    case: Callable[[Any], Awaitable[None]] = STREAM_CASES[name]
    await case(store)
