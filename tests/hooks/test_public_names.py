"""The public names of stepstone.client and stepstone.hooks, and what importing them pulls in."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stepstone.client
import stepstone.hooks
from stepstone import Progress
from stepstone.hooks.dom import countdown_text, progress_text


def test_client_exports() -> None:
    assert sorted(stepstone.client.__all__) == [
        "Client", "JobInfo", "MockStream", "MockTransport", "Request", "Response", "StreamResponse", "Transport",
        "default_transport",
    ]


def test_hooks_exports() -> None:
    assert sorted(stepstone.hooks.__all__) == [
        "HookState", "JobState", "LocalStorage", "LogEntry", "LogsState", "MemoryStorage", "RunActions", "RunState",
        "RunsState", "Source", "StepView", "Storage", "default_storage", "describe_error", "use_job",
        "use_job_logs", "use_job_run", "use_run_actions", "use_runs",
    ]
    for name in stepstone.hooks.__all__:
        assert getattr(stepstone.hooks, name).__doc__, f"{name} needs a docstring"


def test_importing_the_client_and_hooks_loads_no_third_party_or_browser_module() -> None:
    """They must load in Pyodide with no network: only the transport picked at run time imports more."""
    code = (
        "import sys, stepstone, stepstone.client, stepstone.hooks, stepstone.hooks.dom\n"
        "bad = sorted(m for m in ('httpx', 'httpcore', 'anyio', 'starlette', 'js', 'pyodide') if m in sys.modules)\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        (None, ""),
        (Progress(3), "3"),
        (Progress(3, 10), "3 / 10"),
        (Progress(2.5, 10, "copying"), "2.5 / 10 · copying"),
    ],
)
def test_progress_text(progress: Progress | None, text: str) -> None:
    assert progress_text(progress) == text


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (-5, "due now"), (0, "due now"), (0.2, "in 1 s"), (42, "in 42 s"), (60, "in 1 min 00 s"),
        (245.5, "in 4 min 06 s"), (7500, "in 2 h 05 min"), (86400 * 3 + 3600 * 4 + 5, "in 3 d 4 h"),
    ],
)
def test_countdown_text(left: float, text: str) -> None:
    assert countdown_text(1000.0 + left, now=1000.0) == text


async def test_hooks_need_a_running_loop_outside_pyodide() -> None:
    from stepstone.client import Client, MockTransport, Response

    client = Client("http://test/api", transport=MockTransport(lambda r: Response(200, {}, b"null")))
    with pytest.raises(RuntimeError, match="call them from async code"):
        await _call_outside_loop(lambda: stepstone.hooks.use_run_actions(client))


async def _call_outside_loop(fn: object) -> None:
    import asyncio

    await asyncio.to_thread(fn)  # type: ignore[arg-type]
