"""Store URLs → store objects. Backends are imported only when their URL is used."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from .._errors import UnsupportedStoreURL
from ._contract import Store

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    """``memory:`` · ``sqlite:///relative.db`` · ``sqlite:////absolute.db`` (``?synchronous=full``) ·
    ``postgresql://user@host:5432/db`` (``?schema=…&pool_size=…``; the ``postgres`` extra) ·
    ``indexeddb://name`` (``?durability=strict``; inside Pyodide) · ``opfs://name``
    (``?durability=strict``; inside Pyodide, in a dedicated worker)."""
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "memory" and rest in ("", "//"):
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        if not rest.startswith("///"):
            raise UnsupportedStoreURL(
                f"bad sqlite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise UnsupportedStoreURL(f"bad sqlite URL {url!r}: no file path")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        from .sqlite import SqliteStore

        return SqliteStore(path, synchronous=query.get("synchronous", "normal"))
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise UnsupportedStoreURL(f"bad PostgreSQL URL {url!r}: use postgresql://user@host:5432/database")
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise UnsupportedStoreURL(
                f"the PostgreSQL store needs psycopg 3 and psycopg_pool: pip install 'stepstone[postgres]' ({exc})"
            ) from None
        return PostgresStore(url)
    if scheme == "indexeddb":
        name, _, query_text = (rest[2:] if rest.startswith("//") else rest).partition("?")
        if not name:
            raise UnsupportedStoreURL(f"bad indexeddb URL {url!r}: use indexeddb://database-name")
        query = {k: v[-1] for k, v in parse_qs(query_text).items()}
        unknown = set(query) - {"durability"}
        if unknown:
            raise UnsupportedStoreURL(
                f"unknown indexeddb URL option(s) {sorted(unknown)} in {url!r}; known: durability"
            )
        from .indexeddb import IndexedDBStore  # Pyodide only: imports js

        store: Store = IndexedDBStore(name, durability=query.get("durability", "relaxed"))
        return store
    if scheme == "opfs":
        name, _, query_text = (rest[2:] if rest.startswith("//") else rest).partition("?")
        if not name:
            raise UnsupportedStoreURL(f"bad opfs URL {url!r}: use opfs://database-name")
        query = {k: v[-1] for k, v in parse_qs(query_text).items()}
        unknown = set(query) - {"durability"}
        if unknown:
            raise UnsupportedStoreURL(f"unknown opfs URL option(s) {sorted(unknown)} in {url!r}; known: durability")
        from .opfs._store import OPFSStore  # Pyodide only (a dedicated worker): imports js

        return OPFSStore(name, durability=query.get("durability", "relaxed"))
    raise UnsupportedStoreURL(
        f"unsupported store URL {url!r}; this stepstone knows memory:, sqlite:///path.db, "
        "postgresql://user@host/db, indexeddb://name (in Pyodide) and opfs://name (in a dedicated worker)"
    )
