"""The Store contract (tests/stores/run_cases.py, the file CPython runs on memory and SQLite) on
``opfs://`` inside a dedicated Web Worker in Chromium, one pytest item per case on a fresh
database; then what is OPFS's own: a page gets a clear StoreError, a second holder is refused
(and may wait), and the data outlives a reload and a browser restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stores.run_cases import CASES

from .harness import LAUNCH, ROOT, boot_pyodide, collect_page_errors, guard_offline, run_py
from .worker_harness import run_py_in_worker, start_worker_python, stop_worker, write_worker_file

pytestmark = pytest.mark.browser

CASES_FILE = ROOT / "tests" / "stores" / "run_cases.py"

_SETUP = """
import asyncio, json, traceback, uuid
import stepstone_contract_cases as contract
from stepstone.stores.opfs import OPFSStore

async def run_contract_case(name):
    db = f"contract-{name}-{uuid.uuid4().hex[:8]}"
    store = OPFSStore(db)
    await store.init()
    try:
        await asyncio.wait_for(contract.CASES[name](store), 20)
        return None
    except BaseException:
        return traceback.format_exc()
    finally:
        await store.close()
        await OPFSStore.destroy(db)

json.dumps(sorted(contract.CASES))
"""


@pytest.fixture(scope="module")
def worker_page(browser: Any, site_url: str) -> Iterator[Any]:
    context = browser.new_context()
    outside = guard_offline(context)
    errors = collect_page_errors(context)
    page = context.new_page()
    page.goto(f"{site_url}/index.html")
    start_worker_python(page)
    write_worker_file(page, "/home/pyodide/stepstone_contract_cases.py", CASES_FILE.read_text())
    assert run_py_in_worker(page, _SETUP, timeout=60) == sorted(CASES), "the worker sees the same cases as CPython"
    yield page
    context.close()
    assert not outside, f"the contract page asked for other origins: {outside}"
    assert not errors, f"the contract page logged errors: {errors}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_opfs_store_contract_in_a_worker(worker_page: Any, name: str) -> None:
    failure = run_py_in_worker(worker_page, f"json.dumps(await run_contract_case({name!r}))", timeout=30)
    if failure is not None:
        pytest.fail(f"contract case {name} failed in a worker on OPFS:\n{failure}", pytrace=False)


IN_THE_PAGE = """
import json, stepstone
from stepstone import StoreError
_errors = []
for _make in (lambda: stepstone.open_store("opfs://in-a-page"), lambda: stepstone.create_engine("opfs://in-a-page").store):
    try:
        await _make().init()
    except StoreError as exc:
        _errors.append(str(exc))
json.dumps(_errors)
"""


def test_in_a_page_it_says_it_needs_a_worker(context: Any, site_url: str) -> None:
    page = context.new_page()
    boot_pyodide(page, site_url)
    errors = run_py(page, IN_THE_PAGE)
    assert len(errors) == 2
    for message in errors:
        assert "opfs://in-a-page store needs a dedicated Web Worker" in message, message
        assert "worker mode" in message and "indexeddb://" in message


HOLD = """
import json
from stepstone.stores.opfs import OPFSStore
_store = OPFSStore({db!r})
await _store.init()
json.dumps(True)
"""

SECOND = """
import asyncio, json
from stepstone import StoreError
from stepstone.stores.opfs import OPFSStore
_store = OPFSStore({db!r})
try:
    await _store.init()
    _refused = None
except StoreError as exc:
    _refused = [exc.code, str(exc)]
_waiting = asyncio.ensure_future(_store.init(wait=True))
await asyncio.sleep(0.3)
json.dumps([_refused, _waiting.done()])
"""


def test_a_second_holder_is_refused_then_waits_its_turn(worker_page: Any) -> None:
    db = f"busy-{uuid.uuid4().hex[:8]}"
    start_worker_python(worker_page, "second")
    try:
        assert run_py_in_worker(worker_page, HOLD.format(db=db)) is True
        refused, done = run_py_in_worker(worker_page, SECOND.format(db=db), name="second")
        assert refused[0] == "store_busy", refused
        assert f"OPFS database {db!r} is held by another tab" in refused[1]
        assert f"indexeddb://{db}" in refused[1], "it says what to use instead"
        assert done is False, "init(wait=True) waits while the other holds it"
        assert run_py_in_worker(worker_page, "await _store.close()\njson.dumps(True)") is True
        took = "await asyncio.wait_for(_waiting, 10)\njson.dumps(_store.is_open)"
        assert run_py_in_worker(worker_page, took, name="second") is True, "it got the database once it was free"
        cleanup = f"await _store.close()\nawait OPFSStore.destroy({db!r})\njson.dumps(1)"
        run_py_in_worker(worker_page, cleanup, name="second")
    finally:
        stop_worker(worker_page, "second")


WRITE = """
import json, time
from stepstone import NewEvent, NewRun, Progress, StepRecord
from stepstone.stores.opfs import OPFSStore
_store = OPFSStore({db!r})
await _store.init()
_t = time.time()
for _i in range(3):
    _new = NewRun(f"r{{_i}}", "job", "1", {{"i": _i, "big": 2**60}}, _t)
    await _store.create_run(_new, NewEvent("run:trigger", {{}}, _t))
_run = await _store.claim_next("w", ("job",), _t, _t + 30)
await _store.commit_step(_run.id, _run.epoch, StepRecord(_run.id, "s0", 0, "completed", {{"x": "é"}}, None, _t, _t),
                         [NewEvent("step:complete", {{"name": "s0"}}, _t)], Progress(1, 2, "half"))
json.dumps(_run.id)
"""

READ = """
import json
from stepstone import RunFilter
from stepstone.stores.opfs import OPFSStore
_store = OPFSStore({db!r})
await _store.init()
_runs, _total = await _store.list_runs(RunFilter())
_run = await _store.get_run({run_id!r})
_steps = await _store.get_steps({run_id!r})
_events = await _store.read_events({run_id!r})
await _store.close()
json.dumps({{
    "ids": [r.id for r in _runs], "input": _run.input, "status": _run.status,
    "lease": _run.lease_expires_at, "progress": _run.progress.to_json(),
    "steps": [[s.name, s.output] for s in _steps], "events": [[e.seq, e.type] for e in _events],
}})
"""


def test_the_data_outlives_a_reload_and_a_browser_restart(
    playwright: Any, site_url: str, tmp_path: Path, new_guarded_context: Any
) -> None:
    profile = tmp_path / "profile"
    db = f"restart-{uuid.uuid4().hex[:8]}"
    first = new_guarded_context(playwright.chromium.launch_persistent_context(str(profile), **LAUNCH))
    page = first.new_page()
    page.goto(f"{site_url}/index.html")
    start_worker_python(page)
    run_id = run_py_in_worker(page, WRITE.format(db=db))
    page.reload()  # the worker dies with its page; nothing was closed
    start_worker_python(page)
    expected = {
        "ids": ["r2", "r1", "r0"], "input": {"i": 0, "big": 2**60}, "status": "running", "lease": -1.0,
        "progress": {"current": 1, "total": 2, "message": "half"}, "steps": [["s0", {"x": "é"}]],
        "events": [[0, "run:trigger"], [1, "step:complete"]],
    }  # fmt: skip
    assert run_py_in_worker(page, READ.format(db=db, run_id=run_id)) == expected, "after a reload"
    first.close()  # the whole browser goes away with its profile on disk
    second = new_guarded_context(playwright.chromium.launch_persistent_context(str(profile), **LAUNCH))
    page = second.new_page()
    page.goto(f"{site_url}/index.html")
    start_worker_python(page)
    assert run_py_in_worker(page, READ.format(db=db, run_id=run_id)) == expected, "after a browser restart"
    second.close()
