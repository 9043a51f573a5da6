"""``StreamServer``: the shared ``stepstone serve`` process (tests/support/serve.py) set up for the
Durable Streams tests (also used by ``tests/interop``): SQLite, the jobs of stream_jobs.py, a
short long-poll timeout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.support.serve import ROOT, ServeProcess, free_port

HERE = Path(__file__).resolve().parent
JOBS = "stream_jobs"  # tests/streams/stream_jobs.py

__all__ = ["HERE", "JOBS", "ROOT", "StreamServer", "free_port"]


class StreamServer(ServeProcess):
    """One ``stepstone serve`` subprocess on a SQLite file; restartable on the same port and file."""

    def __init__(
        self, db: Path, port: int | None = None, long_poll_timeout: float = 0.5, extra: Sequence[str] = ()
    ) -> None:
        super().__init__(
            db, port or free_port(), jobs=JOBS, jobs_dir=HERE, long_poll_timeout=long_poll_timeout,
            polling_interval=0.1, extra=["--max-body", str(64 << 20), *extra],
        )  # fmt: skip
