"""The static site beside the API (one origin for pages and API): files from ``site_dir``, with
the MIME types Pyodide needs, no directory listings, no way out of the directory, and a small
landing page at ``/`` when the site has no ``index.html`` yet. Errors are JSON, as the API's are,
and a redirect never leaves the origin.

Caching (what ``tools/site.py`` builds the site for):

* a file under a *versioned* directory, one whose name holds ``@`` (``/vendor/pyodide@314.0.7-1a2b3c4d/``),
  is served ``Cache-Control: public, max-age=31536000, immutable``: its content never changes under
  that name, so a return visit asks for nothing;
* a *content-addressed* URL, ``/DIR/~HASH/NAME`` (``HASH``: 8 to 64 hex digits of the file's
  sha256), serves ``/DIR/NAME``: immutable when ``HASH`` matches the file as it is now, and
  ``no-cache`` when it does not (the file changed since the page naming it was built: it still works,
  only uncached). The name stays the file's own, so ``/wheels/~HASH/pkg-1.0-py3-none-any.whl`` is
  still a wheel to Pyodide and PyScript;
* everything else (the pages, their scripts, the configs) is ``no-cache`` with an ``ETag``: always
  revalidated, a ``304`` when unchanged.

Compression: a file with a gzipped copy beside it (``NAME.gz``, which ``tools/site.py`` writes for
the large ones: Pyodide's WebAssembly, the memory snapshot) is sent as that copy with
``Content-Encoding: gzip`` to a client whose ``Accept-Encoding`` takes gzip, and as itself to any
other; both carry ``Vary: Accept-Encoding`` and an ``ETag`` of their own. A ``.gz`` older than its
file is ignored (the file changed since it was compressed).

Server-only (imports starlette).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import os
import re
import stat
from email.utils import formatdate

from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from ._errors import error_response

__all__ = ["IMMUTABLE", "MEDIA_TYPES", "REVALIDATE", "SiteFiles", "landing_page"]

#: Cache-Control of versioned and content-addressed files, and of everything else.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_CONTENT_HASH = re.compile(r"~([0-9a-f]{8,64})")

#: Explicit types: the system's mimetypes table may lack .wasm/.mjs, and Pyodide refuses to
#: compile WebAssembly served with any type but application/wasm.
MEDIA_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".whl": "application/octet-stream",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".py": "text/x-python; charset=utf-8",
    ".toml": "application/toml",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return MEDIA_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def landing_page(api_path: str) -> str:
    """A minimal page listing the API, shown at ``/`` until the site has its own index.html."""
    base = html.escape(api_path)
    rows = [
        ("GET", "/jobs", "registered jobs"),
        ("POST", "/trigger", "start a run: {jobName, input, idempotencyKey?, concurrencyKey?, labels?}"),
        ("GET", "/runs?jobName=&status=&limit=&offset=", "list runs"),
        ("GET", "/run?runId=", "one run"),
        ("GET", "/steps?runId=", "a run's steps"),
        ("GET", "/subscribe?runId=&from=", "a run's events (SSE, resumable by Last-Event-ID)"),
        ("GET", "/runs/subscribe?jobName=&from=", "run changes (SSE)"),
        ("POST", "/retry?runId=", "retry a failed or cancelled run"),
        ("POST", "/cancel?runId=", "cancel a pending or running run"),
        ("DELETE", "/run?runId=", "delete a run"),
        ("GET", "/openapi.json", "this API as OpenAPI 3.1"),
    ]
    items = "\n".join(
        f"<tr><td><code>{m}</code></td><td><code>{base}{html.escape(p)}</code></td><td>{html.escape(d)}</td></tr>"
        for m, p, d in rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>stepstone</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem}}
td{{padding:.2rem .8rem .2rem 0;vertical-align:top}}code{{font-size:.92em}}</style></head>
<body><h1>stepstone</h1>
<p>Durable, resumable jobs. This server speaks the jobs API below
(<a href="{base}/openapi.json">OpenAPI document</a>); the web pages are not built yet.</p>
<table>{items}</table></body></html>
"""


class SiteFiles:
    """ASGI app serving ``directory`` read-only (GET/HEAD). ``/`` and directories serve their
    ``index.html``; a missing root index falls back to the landing page; nothing else is listed."""

    def __init__(self, directory: str | None, api_path: str) -> None:
        self.root = os.path.realpath(directory) if directory is not None else None
        self.api_path = api_path
        self._landing: dict[str, str] = {}  # by mount prefix: the page links to where the API is
        self._digests: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> (stat key, sha256)

    def _digest(self, full: str, info: os.stat_result) -> str:
        """The file's sha256 (hex), computed once per version of the file."""
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        known = self._digests.get(full)
        if known is not None and known[0] == key:
            return known[1]
        digest = hashlib.sha256()
        with open(full, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        self._digests[full] = (key, digest.hexdigest())
        return digest.hexdigest()

    def _cache_control(self, path: str, full: str, info: os.stat_result) -> str:
        """How long a browser may keep the file at URL ``path`` (see the module docstring)."""
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and (match := _CONTENT_HASH.fullmatch(parts[-2])):
            return IMMUTABLE if self._digest(full, info).startswith(match.group(1)) else REVALIDATE
        root = self.root or ""
        relative = os.path.relpath(os.path.dirname(full), root) if root else ""
        if any("@" in part for part in relative.split(os.sep)):
            return IMMUTABLE
        return REVALIDATE

    def _resolve(self, path: str) -> str | None:
        """The file to serve for a URL path, or None. Refuses ``..``, NUL and symlinks out of root;
        a ``~HASH`` segment before the file name is dropped (a content-addressed URL)."""
        if self.root is None:
            return None
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and _CONTENT_HASH.fullmatch(parts[-2]):
            del parts[-2]
        if any(p in ("..", ".") or "\0" in p or "\\" in p for p in parts):
            return None
        full = os.path.realpath(os.path.join(self.root, *parts))
        if full != self.root and not full.startswith(self.root + os.sep):
            return None
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full if os.path.isfile(full) else None

    def _needs_slash(self, path: str) -> bool:
        """A directory asked for without its trailing slash: relative links in its index.html
        would resolve against the parent, so redirect instead (as every web server does)."""
        full = self._resolve(path)
        return full is not None and not path.endswith("/") and os.path.basename(full) == "index.html" and (
            not path.endswith("index.html")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = error_response(
                405, "method_not_allowed", f"{scope['method']} is not allowed here", {"Allow": "GET, HEAD"}
            )
            await response(scope, receive, send)
            return
        path = _route_path(scope)
        if self._needs_slash(path):
            # Rebuilt from the path's segments: "//docs" must not become "//docs/", which a browser
            # reads as a link to the host "docs" (an open redirect).
            query = scope.get("query_string", b"").decode("latin-1")
            segments = "/".join(part for part in path.split("/") if part)
            location = scope.get("root_path", "").rstrip("/") + "/" + segments + "/" + (f"?{query}" if query else "")
            await Response(status_code=301, headers={"Location": location})(scope, receive, send)
            return
        full = self._resolve(path)
        if full is None:
            if path == "/":
                prefix: str = scope.get("root_path", "")
                if prefix not in self._landing:
                    self._landing[prefix] = landing_page(prefix + self.api_path)
                response = HTMLResponse(self._landing[prefix], headers={"Cache-Control": "no-cache"})
            else:
                response = _not_found(scope)
            await response(scope, receive, send)
            return
        info = os.stat(full)
        if not stat.S_ISREG(info.st_mode):
            await _not_found(scope)(scope, receive, send)
            return
        cache_control = self._cache_control(path, full, info)
        headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
        kind = media_type(full)
        gzipped = _gzipped(full, info)
        if gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(_request_header(scope, b"accept-encoding")):
                full, info = gzipped
                headers["Content-Encoding"] = "gzip"
        response = FileResponse(full, media_type=kind, stat_result=info, headers=headers)
        etag = response.headers["etag"]
        for value in _request_header(scope, b"if-none-match").split(","):
            if value.strip() in (etag, "*"):
                headers = {"ETag": etag, "Cache-Control": cache_control,
                           "Last-Modified": formatdate(info.st_mtime, usegmt=True)}
                if gzipped is not None:
                    headers["Vary"] = "Accept-Encoding"
                response = Response(status_code=304, headers=headers)
                break
        await response(scope, receive, send)


def _gzipped(full: str, info: os.stat_result) -> tuple[str, os.stat_result] | None:
    """``full``'s gzipped copy beside it, if there is one at least as new as the file."""
    try:
        packed = os.stat(full + ".gz")
    except OSError:
        return None
    if not stat.S_ISREG(packed.st_mode) or packed.st_mtime_ns < info.st_mtime_ns:
        return None
    return full + ".gz", packed


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip: ``gzip`` (or ``x-gzip``) with q > 0, or,
    when gzip is not named, ``*`` with q > 0."""
    qualities: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[coding.strip().lower()] = quality
    for coding in ("gzip", "x-gzip", "*"):
        if coding in qualities:
            return qualities[coding] > 0
    return False


def _not_found(scope: Scope) -> Response:
    return error_response(404, "not_found", f"nothing at {scope['path']}")


def _route_path(scope: Scope) -> str:
    """The path below where this app is mounted (``root_path`` removed), always starting with /."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def _request_header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
