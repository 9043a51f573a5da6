"""A run's event log served as a read-only Durable Stream (``application/json``, one event per
message), so any Durable Streams client — the npm ``@durable-streams/client`` included — can tail
a run with catch-up, long-poll or SSE reads.

Offsets: the offset after event ``seq`` is ``(seq + 1, 0)``, so ``-1`` starts at event 0 and a
``Stream-Next-Offset`` resumes with no gap and no duplicate. The log reports itself closed once
the run has completed (a failed or cancelled run can still be retried, so its log stays open).
Server-only; never imported by ``stepstone/__init__.py`` or the browser path.
"""

from __future__ import annotations

from ..._errors import StreamNotFound
from ..._stream_models import Offset, ReadResult, Record
from ..._util import dumps
from ...stores._contract import Store

__all__ = ["RunLogSource"]

_BATCH = 500


class RunLogSource:
    """The event log of one run, readable like a stored JSON stream."""

    content_type = "application/json"
    is_json = True

    def __init__(self, store: Store, run_id: str, path: str) -> None:
        self.store = store
        self.run_id = run_id
        self.path = path

    async def state(self) -> tuple[Offset, bool]:
        run = await self.store.get_run(self.run_id)
        if run is None:
            raise StreamNotFound(f"no run with id {self.run_id!r}")
        return (run.last_seq + 1, 0), run.status == "completed"

    async def read(self, after: Offset, max_bytes: int) -> ReadResult:
        tail, closed = await self.state()
        records: list[Record] = []
        budget = max_bytes
        seq = after[0]
        while True:
            events = await self.store.read_events(self.run_id, seq, _BATCH)
            for event in events:
                data = dumps(event.to_json()).encode()
                if records and budget < len(data):
                    return ReadResult(records, max(tail, records[-1].end), closed)
                records.append(Record((event.seq + 1, 0), data))
                budget -= len(data)
            if len(events) < _BATCH:
                break
            seq = events[-1].seq + 1
        if records:
            tail = max(tail, records[-1].end)
        return ReadResult(records, tail, closed)

    async def wait(self, after: Offset, timeout: float) -> None:
        await self.store.wait_events(self.run_id, after[0] - 1, timeout)
