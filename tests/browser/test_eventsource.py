"""``Client.subscribe`` in Chromium rides the browser's ``EventSource`` when it sends no headers:
the request is of type ``eventsource``, the browser resumes it by itself with ``Last-Event-ID``
across a SIGKILLed and restarted server (every seq once, in order), refusals (unknown run, wrong
API path) raise what the fetch path raises, and a client with a bearer token streams over ``fetch``.
The page runs this tree's ``src/stepstone`` against a real ``stepstone serve`` (SQLite) on
127.0.0.1; no request leaves it."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.helpers import ServerProcess, start_server

from .harness import collect_page_errors, ensure_site, guard_offline, run_py
from .srcboot import boot_with_source

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: Chromium logs every refused or failed load on the console; these tests cause them on purpose.
EXPECTED_FAILURES = ("Failed to load resource", "net::ERR_")


class Page:
    """One page with this tree's stepstone, its requests recorded, its context guarded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context()
        self.outside = guard_offline(self.context)
        self.errors = collect_page_errors(self.context)
        self.page = self.context.new_page()
        self.resource_types: list[tuple[str, str]] = []  # as Playwright reports them
        self.page.on("request", lambda request: self.resource_types.append((request.resource_type, request.url)))
        # Playwright shows a request before the browser adds Last-Event-ID to it; the DevTools
        # protocol's extra info has the headers as sent.
        self._sent: dict[str, dict[str, Any]] = {}
        self._cdp = self.context.new_cdp_session(self.page)
        self._cdp.on("Network.requestWillBeSent", self._will_send)
        self._cdp.on("Network.requestWillBeSentExtraInfo", self._extra_info)
        self._cdp.send("Network.enable")
        boot_with_source(self.page, url)

    def _will_send(self, event: dict[str, Any]) -> None:
        entry = self._sent.setdefault(event["requestId"], {})
        entry.update(type=event.get("type", "").lower(), url=event["request"]["url"], order=len(self._sent))

    def _extra_info(self, event: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in event.get("headers", {}).items()}
        self._sent.setdefault(event["requestId"], {"order": len(self._sent)})["headers"] = headers

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """(resource type, URL, Last-Event-ID as sent) of each request so far, in order."""
        entries = sorted((e for e in list(self._sent.values()) if "url" in e), key=lambda e: e["order"])
        return [(e["type"], e["url"], e.get("headers", {}).get("last-event-id")) for e in entries]

    def py(self, code: str, timeout: float = 30) -> Any:
        return run_py(self.page, code, timeout)

    def subscribe_requests(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if "/api/subscribe?" in r[1]]

    def close(self) -> None:
        self.context.close()
        assert not self.outside, f"the page asked for other origins (blocked): {self.outside}"
        errors = [e for e in self.errors if not any(marker in e for marker in EXPECTED_FAILURES)]
        assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is missing at /usr/bin/chromium")
    proc = start_server(tmp_path, jobs="stepstone.demo", site=ensure_site())
    yield proc
    proc.stop()


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Page]:
    p = Page(browser, f"{server.url}/index.html")
    yield p
    p.close()


FOLLOW = """
import asyncio, json
from stepstone.client import Client

client = Client("/api")
run = await client.trigger("demo-steps", {"steps": 10, "delay": 0.4})
SEEN = []

async def follow():
    async for event in client.subscribe(run.id):
        SEEN.append([event.seq, event.type])

TASK = asyncio.ensure_future(follow())
json.dumps([run.id, client.uses_event_source(), type(client.transport).__name__])
"""

PROGRESS = """
import json
json.dumps([SEEN, TASK.done(), None if not TASK.done() or TASK.cancelled() else repr(TASK.exception())])
"""


def wait_progress(page: Page, until: Any, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        seen, done, error = page.py(PROGRESS)
        assert error in (None, "None"), f"subscribe raised {error}"
        if until(seen, done):
            return [seen, done]
        assert time.monotonic() < deadline, f"after {timeout} s: {seen} (done: {done})"
        time.sleep(0.1)


def last_seq(server: ServerProcess, run_id: str) -> int:
    with urllib.request.urlopen(f"{server.api_url}/run?runId={run_id}", timeout=10) as response:
        run = json.loads(response.read())
    assert run["status"] == "completed", run
    return int(run["lastSeq"])


def test_event_source_follows_a_run_across_a_sigkill_and_restart(page: Page, server: ServerProcess) -> None:
    run_id, native, transport = page.py(FOLLOW)
    assert native and transport == "FetchTransport"
    wait_progress(page, lambda seen, done: len(seen) >= 5, 30)
    server.kill()  # mid-run: the browser sees the connection drop and keeps reconnecting
    time.sleep(1.0)
    server.start()  # same port, same SQLite file: the run is reclaimed and carries on
    seen, _ = wait_progress(page, lambda seen, done: done, 60)

    assert [seq for seq, _ in seen] == list(range(last_seq(server, run_id) + 1)), "every seq once, in order"
    assert seen[-1][1] == "run:complete" and [t for _, t in seen].count("run:start") == 2
    assert [kind for kind, url in page.resource_types if "/api/subscribe?" in url][:2] == ["eventsource"] * 2
    streams = page.subscribe_requests()
    assert streams and {kind for kind, _, _ in streams} <= {"eventsource", "fetch"}
    native_requests = [r for r in streams if r[0] == "eventsource"]
    assert len(native_requests) >= 2, f"the EventSource reconnected: {streams}"
    assert native_requests[0][1].endswith("from=0") and native_requests[0][2] is None
    resumed = [r for r in native_requests[1:] if r[2] is not None]
    assert resumed, f"a reconnect carried Last-Event-ID: {streams}"
    # what the browser resumed from was the last event the page had (no gap, no replay)
    assert all(int(r[2]) < len(seen) for r in resumed)


REFUSALS = """
import json
from stepstone import RunNotFound, ServerError, Unauthorized
from stepstone.client import Client

async def outcome(client, run_id):
    try:
        async for _ in client.subscribe(run_id):
            pass
        return "ended"
    except (RunNotFound, ServerError, Unauthorized) as exc:
        return f"{type(exc).__name__}: {exc}"

json.dumps([
    await outcome(Client("/api"), "no-such-run"),
    await outcome(Client("/not-the-api"), "r1"),
    await outcome(Client("/api", headers={"authorization": "Bearer t"}), "no-such-run"),
])
"""


def test_refused_event_sources_raise_what_the_fetch_path_raises(page: Page) -> None:
    unknown, wrong_path, bearer = page.py(REFUSALS)
    assert unknown.startswith("RunNotFound: ") and "no-such-run" in unknown
    assert wrong_path.startswith("ServerError: ") and "is the api_url right?" in wrong_path
    assert bearer == unknown, "the same answer over a streaming fetch"
    kinds = [(kind, url.split("/", 3)[3].split("?")[0]) for kind, url, _ in page.requests if "subscribe" in url]
    assert [kind for kind, url in page.resource_types if "subscribe" in url] == [k for k, _ in kinds]
    assert kinds == [
        ("eventsource", "api/subscribe"), ("fetch", "api/subscribe"),  # refused, then read once to learn why
        ("eventsource", "not-the-api/subscribe"), ("fetch", "not-the-api/subscribe"),
        ("fetch", "api/subscribe"),  # a bearer token: no EventSource
    ]
