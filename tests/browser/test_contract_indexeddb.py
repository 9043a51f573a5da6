"""The Store contract (tests/stores/run_cases.py, the same file CPython runs against memory and
SQLite) runs inside Pyodide in Chromium against the IndexedDB store: one pytest item per case, each
on a fresh database, all in one booted page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stores.run_cases import CASES

from .harness import ROOT, boot_pyodide, collect_page_errors, guard_offline, run_py

CASES_FILE = ROOT / "tests" / "stores" / "run_cases.py"

_SETUP = """
import asyncio, json, sys, traceback, uuid
import js
sys.path.insert(0, "/home/pyodide")
import stepstone_contract_cases as contract
from stepstone.stores.indexeddb import IndexedDBStore

async def run_contract_case(name):
    db = f"contract-{name}-{uuid.uuid4().hex[:8]}"
    store = IndexedDBStore(db)
    await store.init()
    try:
        await asyncio.wait_for(contract.CASES[name](store), 20)
        return None
    except BaseException:
        return traceback.format_exc()
    finally:
        await store.close()
        js.indexedDB.deleteDatabase(db)

json.dumps(sorted(contract.CASES))
"""


@pytest.fixture(scope="module")
def contract_page(browser: Any, site_url: str) -> Iterator[Any]:
    context = browser.new_context()
    outside = guard_offline(context)
    errors = collect_page_errors(context)
    page = context.new_page()
    boot_pyodide(page, site_url)
    page.evaluate(
        "([path, text]) => window.pyodide.FS.writeFile(path, text)",
        ["/home/pyodide/stepstone_contract_cases.py", CASES_FILE.read_text()],
    )
    names = run_py(page, _SETUP)
    assert names == sorted(CASES), "the page sees the same cases as CPython"
    yield page
    context.close()
    assert not outside, f"the contract page asked for other origins: {outside}"
    assert not errors, f"the contract page logged errors: {errors}"


@pytest.mark.browser
@pytest.mark.parametrize("name", sorted(CASES))
def test_indexeddb_store_contract(contract_page: Any, name: str) -> None:
    failure = run_py(contract_page, f"json.dumps(await run_contract_case({name!r}))", timeout=30)
    if failure is not None:
        pytest.fail(f"contract case {name} failed inside Pyodide on IndexedDB:\n{failure}", pytrace=False)


UPGRADE_HELPERS = """() => {
  window.idbVersion = (name) => new Promise((ok, bad) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => { const v = r.result.version; r.result.close(); ok(v); };
    r.onerror = () => bad(r.error);
  });
  // What a newer stepstone in another tab does: open the database at a higher version.
  window.idbUpgrade = (name, version) => new Promise((ok, bad) => {
    const r = indexedDB.open(name, version);
    r.onblocked = () => ok("blocked");
    r.onsuccess = () => { r.result.close(); ok("upgraded"); };
    r.onerror = () => bad(r.error);
  });
}"""

UPGRADE_ELSEWHERE = """
import json, uuid, js
from stepstone import StoreError
from stepstone.stores.indexeddb import IndexedDBStore

_name = f"upgrade-{uuid.uuid4().hex[:8]}"
_store = IndexedDBStore(_name)
await _store.init()
_upgraded = await js.idbUpgrade(_name, await js.idbVersion(_name) + 1)
try:
    await _store.get_run("x")
    _after = "no error"
except StoreError as exc:
    _after = str(exc)
await _store.close()
js.indexedDB.deleteDatabase(_name)
json.dumps([_upgraded, _after])
"""


@pytest.mark.browser
def test_an_upgrade_from_another_tab_is_not_blocked(contract_page: Any) -> None:
    contract_page.evaluate(UPGRADE_HELPERS)
    upgraded, after = run_py(contract_page, UPGRADE_ELSEWHERE)
    assert upgraded == "upgraded", "the open store blocked another tab's upgrade"
    assert "was upgraded by another tab; reload this page" in after, after


# A database as the schema-1 store (before suspension) left it: its indexes, counters, and records
# without any of the fields schema 2 added (parent, wait, wake, cancel request, step attempts).
SCHEMA_1_DATABASE = """(name) => new Promise((resolve, reject) => {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    const db = request.result;
    const runs = db.createObjectStore("runs", { keyPath: "id" });
    const indexes = {
      pos: ["pos", true, false], active: ["active", false, false], idem: ["idem", true, false],
      job: [["job_name", "pos"], false, false], status: [["status", "pos"], false, false],
      job_status: [["job_name", "status", "pos"], false, false], labels: ["label_index", false, true],
      version: ["version", true, false], expires: ["expires_at", false, false],
    };
    for (const [index, [keyPath, unique, multiEntry]] of Object.entries(indexes)) {
      runs.createIndex(index, keyPath, { unique, multiEntry });
    }
    const steps = db.createObjectStore("steps", { keyPath: ["run_id", "name"] });
    const events = db.createObjectStore("events", { keyPath: ["run_id", "seq"] });
    const tombstones = db.createObjectStore("tombstones", { keyPath: "version" });
    tombstones.createIndex("deleted_at", "deleted_at", { unique: false });
    const meta = db.createObjectStore("meta", { keyPath: "key" });
    meta.put({ key: "schema", value: 1 });
    meta.put({ key: "counters", pos: 2, version: 2 });
    const run = (id, pos, ckey, status, epoch, step) => ({
      id, pos, job_name: "job", job_version: "1", status, input: '{"n":' + pos + '}', output: "null",
      error: null, progress: null, labels: "{}", label_index: [], idempotency_key: null, idem: null,
      concurrency_key: ckey, attempt: 1, owner: null, epoch, lease_expires_at: null, created_at: pos,
      updated_at: pos, started_at: step ? pos : null, finished_at: null, expires_at: null,
      last_seq: step ? 2 : 0, version: pos, active: pos,
    });
    runs.put(run("old-1", 1, null, "pending", 1, true));
    runs.put(run("old-2", 2, "k", "pending", 0, false));
    events.put({ run_id: "old-1", seq: 0, type: "run:trigger", data: "{}", at: 1 });
    events.put({ run_id: "old-1", seq: 1, type: "step:start", data: '{"name":"a"}', at: 1 });
    events.put({ run_id: "old-1", seq: 2, type: "step:complete", data: '{"name":"a"}', at: 1 });
    events.put({ run_id: "old-2", seq: 0, type: "run:trigger", data: "{}", at: 2 });
    steps.put({ run_id: "old-1", name: "a", idx: 0, status: "completed", output: "7", error: null,
                started_at: 1, completed_at: 1 });
  };
  request.onsuccess = () => { request.result.close(); resolve(true); };
  request.onerror = () => reject(String(request.error));
})"""

MIGRATE_SCHEMA_1 = """
import json, time, js
from stepstone import NewEvent, NewRun, RunFilter, Wait
from stepstone.browser._values import py_value
from stepstone.stores.indexeddb import IndexedDBStore

_name = {name!r}
_store = IndexedDBStore(_name)
await _store.init()
_old = await _store.get_run("old-1")
_steps = await _store.get_steps("old-1")
_t = time.time()
_new, _created = await _store.create_run(
    NewRun("new-3", "job", "1", None, _t, concurrency_key="k"), NewEvent("run:trigger", {{}}, _t)
)
_child, _ = await _store.create_run(
    NewRun("child-4", "job", "1", None, _t, parent_id="old-1", parent_step="s"), NewEvent("run:trigger", {{}}, _t)
)
_first = await _store.claim_next("w", ("job",), _t, _t + 30)
_second = await _store.claim_next("w", ("job",), _t, _t + 30)
_third = await _store.claim_next("w", ("job",), _t, _t + 30)  # the child: new-3 waits for old-2 (key k)
_parked, _ = await _store.suspend_run(_first.id, _first.epoch, Wait("event", events=("go",)), _t, [])
await _store.send_event(_first.id, "go", 1, _t)
_woken = await _store.claim_next("w", ("job",), time.time(), time.time() + 30)
_children, _ = await _store.list_runs(RunFilter(parent_id="old-1"))


def _schema(t):
    return py_value((yield t.store("meta").get("schema")))


_meta = await _store._conn.run(_schema, ["meta"], "readonly")
await _store.close()
js.indexedDB.deleteDatabase(_name)
json.dumps({{
    "old": [_old.status, _old.parent_id, _old.wait, _old.cancel_requested, _old.last_seq],
    "steps": [[s.name, s.output, s.attempt, s.run_attempt, s.retry_at] for s in _steps],
    "new": [_created, _new.version],
    "claims": [_first.id, _second.id, _third.id],
    "woken": [_woken.id, _woken.wait.events],
    "children": [r.id for r in _children],
    "schema": _meta["value"],
}})
"""


@pytest.mark.browser
def test_a_schema_1_database_migrates_forward(contract_page: Any) -> None:
    name = "schema-1-" + uuid.uuid4().hex[:8]
    assert contract_page.evaluate(SCHEMA_1_DATABASE, name) is True
    got = run_py(contract_page, MIGRATE_SCHEMA_1.format(name=name))
    assert got["old"] == ["pending", None, None, False, 2], "an old run reads with the new fields' defaults"
    assert got["steps"] == [["a", 7, 1, 1, None]]
    assert got["new"][0] is True and got["new"][1] > 2, "the counters went on where they were"
    assert got["claims"] == ["old-1", "old-2", "child-4"], "old runs claim in order and keep their key"
    assert got["woken"] == ["old-1", ["go"]]
    assert got["children"] == ["child-4"]
    assert got["schema"] == 2


DELETED_CHILD = """
import json, time, uuid, js
from stepstone import NewEvent, NewRun, Wait
from stepstone.stores.indexeddb import IndexedDBStore

_name = "deleted-child-" + uuid.uuid4().hex[:8]
_store = IndexedDBStore(_name)
await _store.init()
_t = time.time()
await _store.create_run(NewRun("p", "job", "1", None, _t), NewEvent("run:trigger", {}, _t))
_parent = await _store.claim_next("w", ("job",), _t, _t + 30)
for _c in ("a", "b"):
    await _store.create_run(
        NewRun(_c, "child", "1", None, _t, parent_id="p", parent_step=_c), NewEvent("run:trigger", {}, _t)
    )
await _store.suspend_run("p", _parent.epoch, Wait("children", children=("a", "b")), _t, [])
_before = await _store.claim_next("w", ("job",), time.time(), time.time() + 30)
await _store.delete_run("a")
_after = await _store.claim_next("w", ("job",), time.time(), time.time() + 30)
_b = await _store.get_run("b")
await _store.close()
js.indexedDB.deleteDatabase(_name)
json.dumps([_before is None, _after.id if _after else None, _b.status])
"""


@pytest.mark.browser
def test_deleting_an_awaited_child_wakes_its_parent(contract_page: Any) -> None:
    """As in SQLite: a deleted child did not complete, so the parent waiting for it wakes."""
    assert run_py(contract_page, DELETED_CHILD) == [True, "p", "pending"]
