"""Caching of the built site as ``stepstone serve --site dist/site`` serves it: versioned vendor
directories and the content-addressed wheel are immutable, pages and configs are revalidated
(``no-cache`` + ``ETag``, 304 when unchanged), a stale content hash is served uncached, and a
return visit of a page in a person's browser (a persistent profile, no request interception, which
would switch the HTTP cache off) takes Pyodide, PyScript and the wheel from its cache, asking the
server only to revalidate pages, and nothing outside 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import pytest

from .harness import LAUNCH, SITE, site_config, wait_for

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
    for path in (cfg["pyodide"], cfg["pyodideIndexURL"] + "pyodide.asm.wasm", cfg["pyodideIndexURL"]
                 + "python_stdlib.zip", cfg["pyscript"], cfg["wheel"]):  # fmt: skip
        status, headers, _ = get(site_url + path)
        assert (status, headers["cache-control"]) == (200, IMMUTABLE), path
    wheel = SITE / "wheels" / cfg["wheel"].rsplit("/", 1)[1]
    assert cfg["wheel"].split("/")[2] == "~" + hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]

    for path in ("/server.html", "/index.html", "/server.py", "/pyscript.json", "/stepstone-config.json",
                 "/vendor/pyodide/pyodide.mjs", "/wheels/" + wheel.name):  # fmt: skip
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
    assert pyscript["interpreter"] == cfg["pyodide"] and list(pyscript["files"]) == [cfg["wheel"]]
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
              cfg["pyscript"], cfg["wheel"]]  # fmt: skip
    for path in cached:
        assert first[path] > 0, f"{path} came over the network on the first visit"
        assert second[path] == 0, f"{path} should come from the cache on a return visit, not the server"
    assert 0 < second["/pyscript.json"] < 1000, "a page's config is revalidated (a small 304)"
