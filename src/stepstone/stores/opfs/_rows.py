"""The OPFS store's rows as JSON, and the files its log lives in (as protocols, so the log's
logic runs on in-memory files in CPython too). Stdlib only."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..._models import Progress, Run, StepRecord, Wait

__all__ = ["LogDir", "LogFile", "row_run", "row_step", "run_row", "step_row"]


class LogFile(Protocol):
    """One open file, read and written synchronously (a ``FileSystemSyncAccessHandle``)."""

    def size(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def truncate(self, size: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LogDir(Protocol):
    """The directory of one database: generations of its log, ``data-<gen>.log``."""

    async def generations(self) -> list[int]: ...

    async def open(self, gen: int) -> LogFile:
        """The file of generation ``gen``, created empty if missing."""

    async def remove(self, gen: int) -> None: ...


# -- rows as JSON ------------------------------------------------------------------------------
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(Run))
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))


def run_row(run: Run) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _RUN_FIELDS:
        value = getattr(run, name)
        if name in ("progress", "wait"):
            value = None if value is None else value.to_json()
        elif name == "labels":
            value = dict(value)
        row[name] = value
    return row


def row_run(row: dict[str, Any]) -> Run:
    values = {k: v for k, v in row.items() if k in _RUN_FIELDS}
    values["progress"] = Progress.from_json(values.get("progress"))
    values["wait"] = Wait.from_json(values.get("wait"))
    return Run(**values)


def step_row(step: StepRecord) -> dict[str, Any]:
    return {name: getattr(step, name) for name in _STEP_FIELDS}


def row_step(row: dict[str, Any]) -> StepRecord:
    return StepRecord(**{k: v for k, v in row.items() if k in _STEP_FIELDS})


def _last_rows(ops: list[Any]) -> list[Any]:
    """``ops`` with only the last row of each run (a method often writes a run twice: its new
    status, then its last event's seq); they are upserts, so the last one is the run."""
    last = {op[2]["id"]: i for i, op in enumerate(ops) if op[0] == "R"}
    if len(last) == sum(1 for op in ops if op[0] == "R"):
        return ops
    return [op for i, op in enumerate(ops) if op[0] != "R" or last[op[2]["id"]] == i]
