"""Suite-wide ordering: browser tests run last.

Playwright's sync API keeps its own event loop running in the main thread while its session-scoped
browser is open, and an asyncio test cannot start a loop beside it. Running every Chromium-driven
test (marked ``browser``) after the rest keeps one ``pytest`` run for the whole suite.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
