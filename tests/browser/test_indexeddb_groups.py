"""Group commit on IndexedDB, in Chromium: step writes of several runs queued in one turn share one
transaction, each fenced on its own (a stale one fails alone and writes nothing), and two writes to
one run in one group append one after the other."""

from __future__ import annotations

from typing import Any

import pytest

from .harness import boot_pyodide, run_py

pytestmark = pytest.mark.browser

GROUP = """
import asyncio, json, time, uuid, js
from stepstone import NewEvent, NewRun, Progress, StaleLeaseError, StepRecord
from stepstone.stores.indexeddb import IndexedDBStore

_name = "groups-" + uuid.uuid4().hex[:8]
_store = IndexedDBStore(_name)
await _store.init()
_t = time.time()
for _i in range(4):
    await _store.create_run(NewRun(f"r{_i}", "job", "1", None, _t), NewEvent("run:trigger", {}, _t))
_runs = [await _store.claim_next("w", ("job",), _t, _t + 30) for _ in range(4)]
_transactions = []
_plain = _store._groups._run


async def _counting(program, stores, *args):
    _transactions.append(list(stores))
    return await _plain(program, stores, *args)


_store._groups._run = _counting


def _step(run, name, i):
    return StepRecord(run.id, name, i, "completed", {"i": i}, None, _t, _t)


def _ev(name):
    return [NewEvent("step:start", {"name": name}, _t), NewEvent("step:complete", {"name": name}, _t)]


_calls = [
    _store.commit_step(_runs[0].id, _runs[0].epoch, _step(_runs[0], "a", 0), _ev("a")),
    _store.append_events(_runs[0].id, _runs[0].epoch, [NewEvent("log:write", {"m": 1}, _t)], Progress(1, 2)),
    _store.commit_step(_runs[1].id, _runs[1].epoch, _step(_runs[1], "a", 0), _ev("a"), Progress(1, 3)),
    _store.commit_step(_runs[2].id, _runs[2].epoch + 7, _step(_runs[2], "a", 0), _ev("a")),  # stale
    _store.append_events(_runs[3].id, None, [NewEvent("log:write", {"m": 3}, _t)]),
    _store.append_events("no-such-run", None, [NewEvent("log:write", {}, _t)]),
]
_results = await asyncio.gather(*_calls, return_exceptions=True)
_out = {
    "transactions": len(_transactions),
    "results": [type(r).__name__ if isinstance(r, BaseException) else [e.seq for e in r] for r in _results],
    "events": {r.id: [[e.seq, e.type] for e in await _store.read_events(r.id)] for r in _runs},
    "steps": {r.id: [s.name for s in await _store.get_steps(r.id)] for r in _runs},
    "progress": [(await _store.get_run(r.id)).progress for r in _runs[:2]],
}
_out["progress"] = [p.to_json() if p else None for p in _out["progress"]]
_version = await _store.runs_version()
_changes = await _store.run_changes(0, 100)
_out["versions"] = [_version, sorted(c.version for c in _changes)[-1]]
await _store.close()
js.indexedDB.deleteDatabase(_name)
json.dumps(_out)
"""


def test_step_writes_of_one_turn_share_a_transaction_each_fenced_alone(context: Any, site_url: str) -> None:
    page = context.new_page()
    boot_pyodide(page, site_url)
    got = run_py(page, GROUP)
    assert got["transactions"] == 1, "six writes queued in one turn: one transaction"
    assert got["results"] == [[1, 2], [3], [1, 2], "StaleLeaseError", [1], "RunNotFound"]
    assert got["events"] == {
        "r0": [[0, "run:trigger"], [1, "step:start"], [2, "step:complete"], [3, "log:write"]],
        "r1": [[0, "run:trigger"], [1, "step:start"], [2, "step:complete"]],
        "r2": [[0, "run:trigger"]],  # the stale write wrote nothing
        "r3": [[0, "run:trigger"], [1, "log:write"]],
    }
    assert got["steps"] == {"r0": ["a"], "r1": ["a"], "r2": [], "r3": []}
    assert got["progress"] == [{"current": 1, "total": 2, "message": None}, {"current": 1, "total": 3, "message": None}]
    assert got["versions"][0] == got["versions"][1], "the counters were saved once, at the newest version"
