"""Booting a bare Pyodide page with this tree's ``src/stepstone`` (not a previously built wheel) in
place of the wheel, for tests of the client and hooks inside the browser. Plain functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .harness import site_config

SRC = Path(__file__).resolve().parents[2] / "src" / "stepstone"

_BOOT = """async ([cfg, files]) => {
  const { loadPyodide } = await import(cfg.pyodide);
  const py = await loadPyodide({ indexURL: cfg.pyodideIndexURL });
  const root = `/lib/python${cfg.python}/site-packages/stepstone`;
  for (const [name, text] of Object.entries(files)) {
    const path = `${root}/${name}`;
    py.FS.mkdirTree(path.slice(0, path.lastIndexOf("/")));
    py.FS.writeFile(path, text);
  }
  window.pyodide = py;
}"""


def source_files() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text() for p in SRC.rglob("*.py")}


def boot_with_source(page: Any, url: str) -> None:
    """Open ``url`` (a page of the served site) and start Pyodide with this tree's stepstone."""
    page.goto(url)
    page.evaluate(_BOOT, [site_config(), source_files()])
