"""Keyed ``use_job`` in Chromium (server mode, localStorage): a page that follows one run per
entity keeps two entities' runs apart across a reload, and two tabs that trigger the same key at
the same moment make one run. The pages run this tree's ``src/stepstone`` against a real
``stepstone serve`` (SQLite) on 127.0.0.1; no request leaves it."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server

from .harness import collect_page_errors, ensure_site, guard_offline, run_py
from .srcboot import boot_with_source

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

STATES = """
import json, js
from stepstone.client import Client
from stepstone.hooks import use_job

client = Client("/api")
STATES = {{key: use_job(client, "demo-steps", key=key) for key in {keys!r}}}
for state in STATES.values():
    await state.ready(timeout=20)
json.dumps({{
    "current": {{key: state.current_run_id for key, state in STATES.items()}},
    "stored": sorted(js.localStorage.key(i) for i in range(js.localStorage.length)),
    "native": client.uses_event_source(),
}})
"""

TRIGGER = """
import json
_results = [await STATES[key].trigger({{"steps": 20, "delay": 0.5}}) for key in {keys!r}]
json.dumps([[r.id, r.created] for r in _results])
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is missing at /usr/bin/chromium")
    proc = start_server(tmp_path, jobs="stepstone.demo", site=ensure_site())
    yield proc
    proc.stop()


@pytest.fixture
def context(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """Depends on ``server`` so that its pages close before the server stops: a page still
    following a run would otherwise log the refused reconnect of its EventSource."""
    context = browser.new_context()
    outside = guard_offline(context)
    errors = collect_page_errors(context)
    yield context
    context.close()
    assert not outside, f"pages asked for other origins (blocked): {outside}"
    assert not errors, f"pages logged errors: {errors}"


def open_tab(context: Any, server: ServerProcess, keys: list[str]) -> tuple[Any, dict[str, Any]]:
    page = context.new_page()
    boot_with_source(page, f"{server.url}/index.html")
    return page, run_py(page, STATES.format(keys=keys), 60)


def runs_of_key(server: ServerProcess, key: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"jobName": "demo-steps", "label.stepstone.key": key})
    with urllib.request.urlopen(f"{server.api_url}/runs?{query}", timeout=10) as response:
        runs: list[dict[str, Any]] = json.loads(response.read())["runs"]
    return runs


def test_two_entities_stay_apart_across_a_reload(context: Any, server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    keys = [f"order-{tag}-1", f"order-{tag}-2"]
    page, first = open_tab(context, server, keys)
    assert first["current"] == dict.fromkeys(keys) and first["native"]
    (one, created_one), (two, created_two) = run_py(page, TRIGGER.format(keys=keys))
    assert created_one and created_two and one != two

    page.reload()  # mid-run (20 steps of 0.5 s)
    boot_with_source(page, f"{server.url}/index.html")
    again = run_py(page, STATES.format(keys=keys[::-1]), 60)
    assert again["current"] == {keys[0]: one, keys[1]: two}, "each entity found its own run again"
    assert [k for k in again["stored"] if ":key:" in k] == sorted(
        f"stepstone:server:/api:demo-steps:key:{key}:current-run" for key in keys
    )
    assert [r["id"] for r in runs_of_key(server, keys[0])] == [one]
    assert [r["id"] for r in runs_of_key(server, keys[1])] == [two]
    statuses = run_py(page, "import json\njson.dumps([s.status for s in STATES.values()])")
    assert set(statuses) <= {"pending", "running"}, "the reload landed mid-run"


def test_two_tabs_triggering_one_key_make_one_run(context: Any, server: ServerProcess) -> None:
    key = f"document-{uuid.uuid4().hex[:6]}"
    tabs = [open_tab(context, server, [key])[0] for _ in range(2)]
    code = TRIGGER.format(keys=[key])
    for tab in tabs:  # both start before either is answered
        tab.evaluate("code => { window.__trigger = window.pyodide.runPythonAsync(code); }", code)
    answers = [json.loads(tab.evaluate("() => window.__trigger")) for tab in tabs]
    (first_id, first_created), (second_id, second_created) = answers[0][0], answers[1][0]
    assert first_id == second_id, answers
    assert sorted([first_created, second_created]) == [False, True]
    assert [r["id"] for r in runs_of_key(server, key)] == [first_id]
    for tab in tabs:
        current = run_py(tab, "import json\njson.dumps(next(iter(STATES.values())).current_run_id)")
        assert current == first_id
