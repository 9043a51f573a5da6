"""Row mapping shared by the SQL stores (SQLite and PostgreSQL): the column lists they select and
how a row becomes a :class:`~stepstone.Run`, a :class:`~stepstone.StepRecord` or a
:class:`~stepstone.StreamInfo`. Both keep user values as JSON text and times as epoch seconds, so
one mapping serves both dialects (DBOS's split: share what the dialects agree on).

Stdlib only; must never import a backend driver (sqlite3, psycopg, js).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._models import Progress, Run, StepRecord, Wait
from .._stream_models import StreamInfo
from .._util import dumps, loads

__all__ = [
    "RUN_COLUMNS",
    "STEP_COLUMNS",
    "STREAM_COLUMNS",
    "progress_json",
    "row_to_run",
    "row_to_step",
    "row_to_stream",
    "step_params",
]

RUN_COLUMNS = (
    "id, job_name, job_version, status, input, output, error, progress, labels, idempotency_key, "
    "concurrency_key, attempt, owner, epoch, lease_expires_at, created_at, updated_at, started_at, "
    "finished_at, expires_at, last_seq, version, parent_id, parent_step, wait, wake_at, cancel_requested"
)
STEP_COLUMNS = "name, idx, status, output, error, started_at, completed_at, attempt, run_attempt, retry_at"
STREAM_COLUMNS = (
    "id, path, content_type, tail_seq, tail_pos, closed, ttl, expires_at, created_at, accessed_at, "
    "fork_of, fork_from, fork_seq, fork_pos, fork_sub_offset, refcount, deleted, closed_by, last_stream_seq"
)


def row_to_run(row: Sequence[Any]) -> Run:
    """A ``SELECT {RUN_COLUMNS}`` row as a Run."""
    return Run(
        id=row[0],
        job_name=row[1],
        job_version=row[2],
        status=row[3],
        input=loads(row[4]),
        output=loads(row[5]),
        error=row[6],
        progress=Progress.from_json(loads(row[7])),
        labels=loads(row[8]),
        idempotency_key=row[9],
        concurrency_key=row[10],
        attempt=row[11],
        owner=row[12],
        epoch=row[13],
        lease_expires_at=row[14],
        created_at=row[15],
        updated_at=row[16],
        started_at=row[17],
        finished_at=row[18],
        expires_at=row[19],
        last_seq=row[20],
        version=row[21],
        parent_id=row[22],
        parent_step=row[23],
        wait=Wait.from_json(loads(row[24])),
        wake_at=row[25],
        cancel_requested=bool(row[26]),
    )


def row_to_step(run_id: str, r: Sequence[Any]) -> StepRecord:
    """A ``SELECT {STEP_COLUMNS}`` row as a StepRecord."""
    return StepRecord(run_id, r[0], r[1], r[2], loads(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])


def step_params(run_id: str, step: StepRecord) -> tuple[Any, ...]:
    """A step's column values, in ``(run_id, STEP_COLUMNS)`` order."""
    return (
        run_id,
        step.name,
        step.index,
        step.status,
        dumps(step.output),
        step.error,
        step.started_at,
        step.completed_at,
        step.attempt,
        step.run_attempt,
        step.retry_at,
    )


def progress_json(progress: Progress | None) -> str | None:
    return None if progress is None else dumps(progress.to_json())


def row_to_stream(row: Sequence[Any]) -> StreamInfo:
    """A ``SELECT {STREAM_COLUMNS}`` row as a StreamInfo."""
    return StreamInfo(
        id=row[0],
        path=row[1],
        content_type=row[2],
        tail=(row[3], row[4]),
        closed=bool(row[5]),
        ttl=row[6],
        expires_at=row[7],
        created_at=row[8],
        accessed_at=row[9],
        fork_of=row[10],
        fork_from=row[11],
        fork_offset=None if row[12] is None else (row[12], row[13]),
        fork_sub_offset=row[14],
        refcount=row[15],
        deleted=bool(row[16]),
        closed_by=row[17],
        last_stream_seq=row[18],
    )
