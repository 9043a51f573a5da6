"""The test PostgreSQL server: 127.0.0.1:5432 (trust auth, user ``postgres``), here and in CI.

One database per test session (``stepstone_test_<pid>_<hex>``), created on first use and dropped
when the session's process exits; every store gets a fresh schema in it. ``unavailable()`` says
why PostgreSQL tests must be skipped — only when no server answers or psycopg is missing.
Plain functions (no pytest) so the contract suite, the PostgreSQL tests and helper processes can
all use them. Override the server with ``STEPSTONE_TEST_PG=postgresql://user@host:port/db``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
from urllib.parse import urlsplit, urlunsplit

ADMIN_URL = os.environ.get("STEPSTONE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_state: dict[str, str] = {}


def unavailable() -> str | None:
    """None when tests can use PostgreSQL; else the reason to skip them."""
    if "unavailable" in _state:
        return _state["unavailable"] or None
    reason = ""
    parts = urlsplit(ADMIN_URL)
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        reason = f"psycopg is not installed ({exc}): pip install -e '.[postgres]'"
    else:
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
                pass
        except OSError as exc:
            reason = f"no PostgreSQL server answers on {parts.hostname}:{parts.port or 5432} ({exc})"
    _state["unavailable"] = reason
    return reason or None


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def database_url() -> str:
    """This session's database (created on first call, dropped at exit)."""
    if "url" not in _state:
        import psycopg

        name = f"stepstone_test_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _state["url"] = _with_db(ADMIN_URL, name)
        atexit.register(_drop, name, os.getpid())
    return _state["url"]


def _drop(name: str, pid: int) -> None:
    if os.getpid() != pid:  # a forked child: the parent drops it
        return
    import psycopg

    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass


def new_schema(prefix: str = "t") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def store_url(schema: str | None = None, **options: object) -> str:
    """A ``postgresql://`` URL for a store in this session's database, in ``schema`` (a new one by
    default), with store options such as ``pool_size``."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema or new_schema(), **options}.items())
    return f"{database_url()}?{query}"


def admin(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run ``sql`` on this session's database (autocommit); rows if it returns any."""
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []
