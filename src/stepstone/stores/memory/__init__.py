"""The in-memory store: runs, steps, event logs and Durable Streams in dicts, for tests, demos and
short-lived processes. Stdlib + asyncio only; nothing survives the process."""

from ._store import MemoryStore

__all__ = ["MemoryStore"]
