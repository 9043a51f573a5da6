"""The README's quick start runs as pasted, and does what the README says around it: the first run
prints both steps and the result, a second run prints only the result (the idempotency key brings
the finished run back), and a run killed with SIGKILL mid-way resumes without re-running the
finished step. Real processes, a real SQLite file in a temporary directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT = "completed {'words': 9, 'distinct': 8}"


def quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Quick start has no ```python block"
    return match.group(1)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}


def _run(script: Path) -> str:
    done = subprocess.run(
        [sys.executable, script.name], cwd=script.parent, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "quickstart.py"
    path.write_text(quick_start())
    return path


def test_the_quick_start_runs_as_pasted_and_a_second_run_reruns_nothing(script: Path) -> None:
    first = _run(script)
    assert "step 'count' runs" in first and "step 'total' runs" in first
    assert first.strip().endswith(RESULT)
    second = _run(script)
    assert second.strip() == RESULT


def test_the_quick_start_killed_mid_way_resumes_without_rerunning_the_finished_step(script: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, script.name], cwd=script.parent, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "step 'total' runs" not in seen:
            assert time.monotonic() < deadline, f"the step never started: {seen!r}"
            line = proc.stdout.readline()
            assert line, f"the script ended early: {seen!r}"
            seen += line
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    resumed = _run(script)
    assert "step 'count' runs" not in resumed
    assert "step 'total' runs" in resumed
    assert resumed.strip().endswith(RESULT)


EXAMPLES = ROOT / "web" / "examples"


def test_the_readme_shows_the_example_pages_as_they_are_and_each_stays_within_15_lines() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Use it from your own PyScript page\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:html|python)\n(.*?)```", section, re.S)
    pages = {path.name: path.read_text() for path in sorted(EXAMPLES.iterdir())}
    assert sorted(pages) == ["local.html", "local.py", "server.html", "server.py"]
    assert sorted(blocks) == sorted(pages.values()), "the README's pages differ from web/examples/"
    for name, source in pages.items():
        if name.endswith(".py"):
            code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            assert len(code) <= 15, f"{name} has {len(code)} lines of Python (blank and comment lines aside)"
