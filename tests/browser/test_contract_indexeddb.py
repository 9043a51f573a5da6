"""The Store contract (tests/stores/run_cases.py, the same file CPython runs against memory and
SQLite) runs inside Pyodide in Chromium against the IndexedDB store: one pytest item per case, each
on a fresh database, all in one booted page."""

from __future__ import annotations

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
