"""Driving the offline site in Debian's Chromium: launch flags, the site server, an offline route
guard, Pyodide boot and running Python in a page with a deadline. Shared by ``conftest.py`` and
``bench/browser.py``; plain functions, no pytest.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.support.serve import ROOT, ServeProcess

SITE = ROOT / "dist" / "site"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Chromium's own account/update probes would otherwise try outside hosts.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LAUNCH = {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


def ensure_site() -> Path:
    """Build ``dist/site`` (``build.build_site``) when it or its vendored runtimes are missing."""
    if not (SITE / "stepstone-config.json").exists() or not (SITE / "local.html").exists():
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "-c", "import build; build.build_site()"],
            cwd=ROOT,
            check=True,
            timeout=600,
        )
    return SITE


def site_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((SITE / "stepstone-config.json").read_text())
    return config


@contextmanager
def serve_site(site: Path = SITE) -> Iterator[str]:
    """``stepstone serve --site`` on a free 127.0.0.1 port (a real uvicorn process, memory store,
    the demo jobs); yields its base URL and kills it by PID afterwards."""
    with tempfile.TemporaryDirectory(prefix="stepstone-site-") as tmp:
        for attempt in range(5):
            server = ServeProcess(None, jobs="stepstone.demo", site=site, log=Path(tmp) / f"serve-{attempt}.log")
            try:
                server.start(timeout=30)
            except AssertionError:  # e.g. the free port was taken meanwhile: try another one
                server.kill()
                continue
            try:
                yield server.url
            finally:
                server.kill()
            return
    raise RuntimeError("stepstone serve did not come up on a free port after 5 tries")


def guard_offline(context: Any) -> list[str]:
    """Abort every request not to 127.0.0.1 and record its URL in the returned list."""
    outside: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", handle)
    return outside


def collect_page_errors(context: Any) -> list[str]:
    """Record uncaught page errors and console errors of every page the context opens."""
    errors: list[str] = []

    def watch(page: Any) -> None:
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: uncaught {exc}"))
        page.on("console", lambda msg: msg.type == "error" and errors.append(f"{page.url}: console: {msg.text}"))

    for page in context.pages:
        watch(page)
    context.on("page", watch)
    return errors


_RUN_PY = """async ([code, ms]) => {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Python did not finish within ${ms} ms`)), ms);
  });
  try {
    const result = await Promise.race([window.pyodide.runPythonAsync(code), late]);
    return result === undefined || result === null ? null : String(result);
  } finally {
    clearTimeout(timer);
  }
}"""


def run_py(page: Any, code: str, timeout: float = 30.0) -> Any:
    """Run ``code`` in the page's Pyodide; its last expression must be a JSON string. Raises when it
    takes longer than ``timeout`` s (page.evaluate has no deadline of its own)."""
    text = page.evaluate(_RUN_PY, [code, int(timeout * 1000)])
    return None if text is None else json.loads(text)


_BOOT = """async (cfg) => {
  const t0 = performance.now();
  const { loadPyodide } = await import(cfg.pyodide);
  window.pyodide = await loadPyodide({ indexURL: cfg.pyodideIndexURL });
  await window.pyodide.loadPackage(cfg.wheel);
  return performance.now() - t0;
}"""


def boot_pyodide(page: Any, base: str, path: str = "/index.html") -> float:
    """Open ``path`` and start a bare Pyodide with the stepstone wheel; returns the boot time (ms)."""
    page.goto(base + path)
    ms = float(page.evaluate(_BOOT, site_config()))
    assert run_py(page, "import json, stepstone\njson.dumps(stepstone.__version__)"), "stepstone did not load"
    return ms


def wait_for(page: Any, expression: str, timeout: float = 30.0) -> Any:
    """Wait until the JS ``expression`` is truthy in the page; returns its value."""
    handle = page.wait_for_function(expression, timeout=timeout * 1000)
    return handle.json_value()
