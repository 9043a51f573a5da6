"""A server that executes nothing of the tests' jobs (it registers none of them) but serves the
API over the same database: its SSE streams follow runs executed by other servers."""

from __future__ import annotations

import stepstone


@stepstone.job("idle-nothing")
async def nothing(step: stepstone.Step, payload: object) -> None:
    return None
