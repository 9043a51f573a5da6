"""PostgreSQL tests skip, saying why, only when no server answers on 127.0.0.1:5432."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from . import db as pgdb


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    reason = pgdb.unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
async def open_store() -> AsyncIterator[Callable[..., Any]]:
    """``await open_store(schema=None, **options)``: an initialised PostgresStore, closed after the
    test; stores opened with one ``schema`` share their data (like servers on one database)."""
    from stepstone.stores.postgres import PostgresStore

    opened: list[Any] = []

    async def factory(schema: str | None = None, **options: Any) -> Any:
        store = PostgresStore(pgdb.store_url(schema, **options))
        await store.init()
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        await store.close()
