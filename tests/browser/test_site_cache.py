"""Caching of the built site as ``stepstone serve --site dist/site`` serves it: versioned vendor
directories and the content-addressed wheel, stepstone zip and loader are immutable, pages and
configs are revalidated (``no-cache`` + ``ETag``, 304 when unchanged), a stale content hash is
served uncached, and a return visit of a page in a person's browser (a persistent profile, no
request interception, which would switch the HTTP cache off) takes Pyodide, PyScript, the loader
and the stepstone zip from its cache, asking the server only to revalidate pages, and nothing
outside 127.0.0.1. The loader (``stepstone-pyodide.mjs``) makes stepstone importable from its zip."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from .harness import LAUNCH, SITE, run_py, site_config, wait_for

pytestmark = pytest.mark.browser

IMMUTABLE = "public, max-age=31536000, immutable"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_vendor_and_wheel_are_immutable_pages_are_revalidated(site_url: str) -> None:
    cfg = site_config()
    assert re.fullmatch(r"/vendor/pyodide@[\d.]+-[0-9a-f]{8}/", cfg["pyodideIndexURL"]), cfg
    assert re.fullmatch(r"/wheels/~[0-9a-f]{16}/stepstone-[^/]+\.whl", cfg["wheel"]), cfg
    assert re.fullmatch(r"/wheels/~[0-9a-f]{16}/stepstone-[^/-]+\.zip", cfg["zip"]), cfg
    assert re.fullmatch(r"/~[0-9a-f]{16}/stepstone-pyodide\.mjs", cfg["loader"]), cfg
    for path in (cfg["pyodide"], cfg["pyodideIndexURL"] + "pyodide.asm.wasm", cfg["pyodideIndexURL"]
                 + "python_stdlib.zip", cfg["pyscript"], cfg["wheel"], cfg["zip"], cfg["loader"],
                 cfg["snapshot"]):  # fmt: skip
        status, headers, _ = get(site_url + path)
        assert (status, headers["cache-control"]) == (200, IMMUTABLE), path
    wheel = SITE / "wheels" / cfg["wheel"].rsplit("/", 1)[1]
    assert cfg["wheel"].split("/")[2] == "~" + hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]

    for path in ("/server.html", "/index.html", "/server.py", "/pyscript.json", "/stepstone-config.json",
                 "/vendor/pyodide/pyodide.mjs", "/wheels/" + wheel.name, "/stepstone-pyodide.mjs"):  # fmt: skip
        status, headers, _ = get(site_url + path)
        assert (status, headers["cache-control"]) == (200, "no-cache"), path
        again, revalidated, body = get(site_url + path, {"If-None-Match": headers["etag"]})
        assert (again, body, revalidated["cache-control"]) == (304, b"", "no-cache"), path

    # a page built against an older wheel: still served (the current file), but not cached
    status, headers, body = get(f"{site_url}/wheels/~0123456789abcdef/{wheel.name}")
    assert (status, headers["cache-control"], body) == (200, "no-cache", wheel.read_bytes())
    assert get(f"{site_url}/wheels/~0123456789abcdef/no-such.whl")[0] == 404


def test_the_built_pages_name_only_versioned_runtimes() -> None:
    cfg = site_config()
    pyscript = json.loads((SITE / "pyscript.json").read_text())
    assert pyscript["interpreter"] == cfg["loader"] and "files" not in pyscript, pyscript
    loader = (SITE / "stepstone-pyodide.mjs").read_text()
    assert json.dumps(cfg["pyodide"]) in loader and json.dumps(cfg["zip"]) in loader
    pages = [p for p in SITE.rglob("*.html") if p.relative_to(SITE).parts[0] not in ("vendor", "simple")]
    loading = [p for p in pages if "/core.js" in p.read_text()]
    assert len(loading) >= 4, loading
    for page in loading:
        text = page.read_text()
        assert '"/vendor/pyscript/' not in text and cfg["pyscript"] in text, page


RESOURCES = """() => performance.getEntriesByType('resource')
  .map(r => [new URL(r.name).pathname, r.transferSize])"""


def test_a_return_visit_takes_the_runtimes_from_the_browser_cache(playwright: Any, site_url: str) -> None:
    cfg = site_config()
    with tempfile.TemporaryDirectory(prefix="stepstone-cache-") as profile:
        context = playwright.chromium.launch_persistent_context(profile, **LAUNCH)
        urls: list[str] = []
        context.on("request", lambda request: urls.append(request.url))
        try:
            visits = []
            for _ in range(2):
                page = context.new_page()
                page.goto(f"{site_url}/server.html")
                wait_for(page, "document.body.dataset.state === 'ready'", 120)
                visits.append(dict(page.evaluate(RESOURCES)))
                page.close()
        finally:
            context.close()
    assert urls and all(urlparse(url).hostname == "127.0.0.1" for url in urls), urls
    first, second = visits
    cached = [cfg["pyodide"], cfg["pyodideIndexURL"] + "pyodide.asm.wasm", cfg["pyodideIndexURL"] + "python_stdlib.zip",
              cfg["pyscript"], cfg["loader"], cfg["zip"], cfg["snapshot"]]  # fmt: skip
    for path in cached:
        assert first[path] > 0, f"{path} came over the network on the first visit"
        assert second[path] == 0, f"{path} should come from the cache on a return visit, not the server"
    assert 0 < second["/pyscript.json"] < 1000, "a page's config is revalidated (a small 304)"
    wasm = cfg["pyodideIndexURL"] + "pyodide.asm.wasm"
    size = (SITE / "vendor" / "pyodide" / "pyodide.asm.wasm").stat().st_size
    assert first[wasm] < size / 2, "the WebAssembly comes gzipped (its .gz copy)"


LOADER_BOOT = """async (cfg) => {
  const { loadPyodide } = await import(cfg.loader);
  window.pyodide = await loadPyodide();
}"""

LOADER_CHECKS = """
import sys
restored = sorted(m for m in sys.modules if m.startswith("stepstone"))  # before any import here
import importlib.metadata, json, random, traceback, zipfile
import stepstone
from stepstone import _models

archive = sys.path[-1]
try:
    _models.Progress.from_json({"total": 1})
except Exception:
    frames = traceback.format_exc()
with zipfile.ZipFile(archive) as z:
    names = set(z.namelist())
json.dumps({
    "archive": archive,
    "file": stepstone.__file__,
    "restored": restored,
    "random": random.random(),
    "site_packages_first": sys.path.index(next(p for p in sys.path if p.endswith("site-packages"))) < len(sys.path) - 1,
    "metadata": importlib.metadata.version("stepstone") == stepstone.__version__,
    "byte_code": "stepstone/_models.pyc" in names and "stepstone/_models.py" in names,
    "record": any(n.endswith(".dist-info/RECORD") for n in names),
    "source_in_traceback": 'data["current"]' in frames and ".zip/stepstone/_models.py" in frames,
})
"""


def loader_facts(context: Any, site_url: str) -> dict[str, Any]:
    page = context.new_page()
    page.goto(f"{site_url}/index.html")
    page.evaluate(LOADER_BOOT, site_config())
    facts: dict[str, Any] = run_py(page, LOADER_CHECKS)
    page.close()
    return facts


def test_the_loader_restores_a_snapshot_and_imports_stepstone_from_its_zip(context: Any, site_url: str) -> None:
    """``stepstone-pyodide.mjs`` (pyscript.json's interpreter): Pyodide comes back from the memory
    snapshot with the pages' modules imported, the random module seeded anew each time, and
    stepstone imports from the zip with its byte code, after site-packages, with its metadata;
    tracebacks show its source."""
    facts = loader_facts(context, site_url)
    assert {"stepstone.client", "stepstone.hooks.dom", "stepstone.stores.indexeddb"} <= set(facts["restored"]), facts
    assert facts["archive"].startswith("/lib/stepstone-") and facts["archive"].endswith(".zip"), facts
    assert facts["file"] == facts["archive"] + "/stepstone/__init__.pyc", facts  # its byte code
    assert facts["site_packages_first"] and facts["metadata"] and facts["byte_code"], facts
    assert not facts["record"] and facts["source_in_traceback"], facts
    assert loader_facts(context, site_url)["random"] != facts["random"], "every page restores the same random state"


def test_a_snapshot_that_does_not_load_falls_back_to_starting_python(context: Any, site_url: str) -> None:
    cfg = site_config()
    loader = (SITE / "stepstone-pyodide.mjs").read_text()
    snapshot = cfg["snapshot"]
    assert f"export const snapshot = {json.dumps(snapshot)};" in loader
    assert re.fullmatch(r"/snapshot/~[0-9a-f]{16}/pyodide-[\d.]+-stepstone-[^/]+\.snapshot", snapshot), snapshot
    warnings: list[str] = []
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "warning" and warnings.append(msg.text))
    page.route(f"{site_url}{snapshot}", lambda route: route.fulfill(status=200, body=b"STEPSNP1 but not a snapshot"))
    page.goto(f"{site_url}/index.html")
    page.evaluate(LOADER_BOOT, cfg)
    assert run_py(page, "import json, sys, stepstone.client\njson.dumps(sys.path[-1])").startswith("/lib/stepstone-")
    assert any("snapshot did not load" in w and "starting Python instead" in w for w in warnings), warnings


PAGES = ("/server.html", "/dashboard.html", "/local.html?db=snap", "/worker.html?db=snap")


def test_the_snapshot_holds_every_module_the_pages_import(context: Any, site_url: str) -> None:
    """What the bundled pages import once ready is already in the snapshot (it leaves out only
    tools/site.py's SNAPSHOT_SKIPS, the server side): none of them imports a stepstone module at
    start-up. (The examples import less than these pages.)"""
    restored = set(loader_facts(context, site_url)["restored"])
    for path in PAGES:
        page = context.new_page()
        page.goto(site_url + path)
        wait_for(page, "window.pyodide && document.body.dataset.state !== 'booting'", 60)
        code = "import json, sys\njson.dumps(sorted(m for m in sys.modules if m.startswith('stepstone')))"
        loaded = run_py(page, code)
        assert set(loaded) <= restored, (path, sorted(set(loaded) - restored))
        page.close()


ENVIRONMENT = """
import json, os, time
json.dumps([time.tzname, time.timezone, time.altzone, time.daylight, os.environ["LANG"],
            time.strftime("%Z %z", time.localtime(1750000000)), time.strftime("%Z %z", time.localtime(1735000000))])
"""

BARE_BOOT = """async (cfg) => {
  const { loadPyodide } = await import(cfg.pyodide);
  window.pyodide = await loadPyodide({ indexURL: cfg.pyodideIndexURL });
}"""


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Australia/Sydney", "America/New_York"])
def test_a_restored_snapshot_has_this_browsers_time_zone_and_language(
    browser: Any, new_guarded_context: Callable[[Any], Any], site_url: str, zone: str
) -> None:
    """The snapshot was made in Node on the build machine: the loader gives Python this browser's
    time zone (time.tzname, timezone, altzone, daylight, strftime's %Z) and LANG, exactly as a
    Pyodide started in the page has them."""
    seen = []
    for boot in (BARE_BOOT, LOADER_BOOT):
        page = new_guarded_context(browser.new_context(timezone_id=zone, locale="de-CH")).new_page()
        page.goto(f"{site_url}/index.html")
        page.evaluate(boot, site_config())
        seen.append(run_py(page, ENVIRONMENT))
        page.close()
    bare, restored = seen
    assert restored == bare, (zone, bare, restored)
    assert bare[4] == "de_CH.UTF-8", bare
