"""The Durable Streams server tests share the stream client's fixture: one real ``stepstone serve``
(SQLite, 0.5 s long-poll) per test module."""

from tests.streams.conftest import server

__all__ = ["server"]
