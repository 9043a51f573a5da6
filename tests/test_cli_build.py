"""``build.py``'s command line: ``serve`` starts at once and quietly when nothing changed (the site
is stamped with what it is made from), and the wheel builds with no setuptools deprecation."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.serve import ROOT, free_port

VENV_PY = ROOT / ".venv" / "bin" / "python"


def _load_build_py() -> Any:
    """This checkout's build.py (``import build`` could find PyPA's ``build`` package instead)."""
    spec = importlib.util.spec_from_file_location("stepstone_build_py", ROOT / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_py()


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """build.py pointed at a small copy of the inputs, with the wheel build and tools/site.py faked;
    yields the list of steps each build_site() call really did."""
    for name in ("src/pkg/a.py", "web/page.html", "tools/site.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "package-lock.json").write_text("{}")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    dist = tmp_path / "dist"
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "DIST", dist)
    monkeypatch.setattr(build, "SITE", dist / "site")
    monkeypatch.setattr(build, "SITE_STAMP", dist / ".stamp-site")
    done: list[str] = []

    def fake_wheel() -> Path:
        done.append("wheel")
        (dist / "wheel").mkdir(parents=True, exist_ok=True)
        wheel = dist / "wheel" / "stepstone-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"PK")
        return wheel

    def fake_run(*cmd: Any, **kwargs: Any) -> int:
        done.append("site.py")
        (dist / "site" / "stepstone-config.json").write_text("{}")
        return 0

    monkeypatch.setattr(build, "build_wheel", fake_wheel)
    monkeypatch.setattr(build, "ensure_node_modules", lambda: None)
    monkeypatch.setattr(build, "run", fake_run)
    yield done


def test_the_site_is_rebuilt_only_when_what_it_is_made_of_changed(tree: list[str]) -> None:
    build.build_site()
    assert tree == ["wheel", "site.py"]
    build.build_site()
    assert tree == ["wheel", "site.py"], "nothing changed: no wheel, no site"
    cache = build.ROOT / "src" / "pkg" / "__pycache__"
    cache.mkdir()
    (cache / "a.cpython-311.pyc").write_bytes(b"\0")
    (build.ROOT / "src" / "stepstone.egg-info").mkdir()
    build.build_site()
    assert tree == ["wheel", "site.py"], "byte code and egg-info are not inputs"
    for name in ("web/page.html", "src/pkg/a.py", "package-lock.json", "tools/site.py"):
        (build.ROOT / name).write_text(name + " changed")
        build.build_site()
        assert tree[-2:] == ["wheel", "site.py"] and len(tree) % 2 == 0, name
    count = len(tree)
    (build.ROOT / "src" / "pkg" / "new.py").write_text("")
    build.build_site()
    assert len(tree) == count + 2, "a new file is a change"
    build.build_site(force=True)
    assert len(tree) == count + 4


def test_a_half_built_site_is_rebuilt(tree: list[str]) -> None:
    build.build_site()
    (build.SITE / "stepstone-config.json").unlink()
    build.build_site()
    assert tree == ["wheel", "site.py", "wheel", "site.py"]


def serve_output(*extra: str) -> list[str]:
    """The lines ``build.py serve`` prints before its "stepstone serving on" line."""
    cmd = [sys.executable, "build.py", "serve", "--port", str(free_port()), "--store", "memory:", *extra]
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "stepstone serving on" in line:
                    return lines
                lines.append(line.rstrip("\n"))
            raise AssertionError("build.py serve ended without serving:\n" + "\n".join(lines))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)  # build.py exec'd stepstone serve: the same PID
            proc.wait(timeout=30)


@pytest.mark.skipif(not VENV_PY.exists(), reason="needs the .venv that build.py sets up")
def test_serve_with_nothing_changed_starts_quietly() -> None:
    subprocess.run([sys.executable, "build.py", "site"], cwd=ROOT, check=True, capture_output=True, timeout=600)
    lines = serve_output()
    assert len(lines) == 1 and lines[0].startswith("[build] ") and "stepstone serve --store" in lines[0], lines


@pytest.mark.skipif(not VENV_PY.exists(), reason="needs the .venv that build.py sets up")
def test_the_wheel_builds_without_a_license_deprecation(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_PY), "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deprecated" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    [wheel] = tmp_path.glob("stepstone-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: MIT" in metadata.splitlines()
