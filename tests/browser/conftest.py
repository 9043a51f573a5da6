"""Fixtures for the browser tests: the built site served by a real ``stepstone serve`` process on
127.0.0.1, Debian's Chromium through Playwright, and a route guard that fails a test whose pages
asked for anything outside 127.0.0.1.

    site_url          base URL of the served ``dist/site`` (session)
    browser           one headless Chromium (session)
    context           a fresh browser context with the offline guard (per test)
    new_guarded_context(browser_or_playwright, ...) for tests that need several contexts
    run_py / boot_pyodide / wait_for  (from harness) for driving Python in a page
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import LAUNCH, collect_page_errors, ensure_site, guard_offline, serve_site


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chromium-driven tests (sync: Playwright's sync API) are ``browser`` and run last; the async
    tests here run in CPython (the worker protocol, the OPFS log) and must run before Playwright
    holds the main thread's loop, so they keep their place."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and not inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    if not Path(LAUNCH["executable_path"]).exists():  # type: ignore[arg-type]
        pytest.skip("Chromium is missing at /usr/bin/chromium (python build.py test installs it)")
    site = ensure_site()
    with serve_site(site) as base:
        yield base


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(**LAUNCH)
    yield browser
    browser.close()


class Guarded:
    """Contexts opened for one test; each records requests that tried to leave 127.0.0.1."""

    def __init__(self) -> None:
        self.outside: list[list[str]] = []
        self.errors: list[list[str]] = []
        self.contexts: list[Any] = []

    def add(self, context: Any) -> Any:
        self.outside.append(guard_offline(context))
        self.errors.append(collect_page_errors(context))
        self.contexts.append(context)
        return context

    def check(self) -> None:
        blocked = [url for urls in self.outside for url in urls]
        assert not blocked, f"pages asked for other origins (blocked): {blocked}"
        errors = [e for errs in self.errors for e in errs]
        assert not errors, f"pages logged errors: {errors}"


@pytest.fixture
def guarded() -> Iterator[Guarded]:
    g = Guarded()
    yield g
    for context in g.contexts:
        with contextlib.suppress(Exception):  # already closed by the test (browser restart)
            context.close()
    g.check()


@pytest.fixture
def context(browser: Any, guarded: Guarded) -> Any:
    """A fresh context (its own storage) whose requests may only go to 127.0.0.1."""
    return guarded.add(browser.new_context())


@pytest.fixture
def new_guarded_context(guarded: Guarded) -> Callable[[Any], Any]:
    def make(context: Any) -> Any:
        return guarded.add(context)

    return make
