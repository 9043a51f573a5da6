"""The SQLite store, the embedded default: one WAL-mode file that several processes may share.

``_store`` (runs, steps, events), ``_schema`` (tables and forward migrations), ``_commit`` (the
group commit that shares one transaction among the writes of a loop tick), ``_streams`` (Durable
Streams) and ``_liveness`` (owner file locks that prove a dead process dead at once)."""

from ._store import SqliteStore

__all__ = ["SqliteStore"]
