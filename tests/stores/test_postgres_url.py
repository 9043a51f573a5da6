"""``postgresql://`` URLs: our options are taken out, everything else goes to libpq."""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from stepstone import StoreError, open_store
from stepstone.stores.postgres import PostgresStore
from stepstone.stores.postgres._conn import parse_url


def test_store_options_come_out_of_the_url_and_the_rest_goes_to_libpq() -> None:
    options = parse_url("postgres://app:pw@db:6543/jobs?schema=pay&pool_size=20&sslmode=require&pool_min=2")
    assert options.schema == "pay" and options.pool_size == 20 and options.pool_min == 2
    assert options.conninfo == "postgresql://app:pw@db:6543/jobs?sslmode=require"
    assert parse_url("postgresql://db/jobs").schema == "stepstone"


def test_open_store_gives_a_postgres_store_and_bad_options_are_refused() -> None:
    store = open_store("postgresql://app@127.0.0.1:5432/jobs?synchronous_commit=off")
    assert isinstance(store, PostgresStore) and store.schema == "stepstone"
    with pytest.raises(StoreError, match="pool"):
        PostgresStore("postgresql://db/jobs?pool_size=0")
    with pytest.raises(StoreError, match="synchronous_commit"):
        PostgresStore("postgresql://db/jobs?synchronous_commit=maybe")
    with pytest.raises(StoreError, match="bad option"):
        PostgresStore("postgresql://db/jobs?pool_size=ten")
