"""The static site beside the API (one origin for pages and API): files from ``site_dir``, with
the MIME types Pyodide needs, no directory listings, no way out of the directory, and a small
landing page at ``/`` when the site has no ``index.html`` yet.

Server-only (imports starlette).
"""

from __future__ import annotations

import html
import mimetypes
import os
import stat
from email.utils import formatdate

from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

__all__ = ["MEDIA_TYPES", "SiteFiles", "landing_page"]

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

    def _resolve(self, path: str) -> str | None:
        """The file to serve for a URL path, or None. Refuses ``..``, NUL and symlinks out of root."""
        if self.root is None:
            return None
        parts = [p for p in path.split("/") if p]
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
            response = PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET, HEAD"})
            await response(scope, receive, send)
            return
        path = _route_path(scope)
        if self._needs_slash(path):
            query = scope.get("query_string", b"").decode("latin-1")
            location = scope.get("root_path", "") + path + "/" + (f"?{query}" if query else "")
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
                response = PlainTextResponse("Not Found", 404)
            await response(scope, receive, send)
            return
        info = os.stat(full)
        if not stat.S_ISREG(info.st_mode):
            await PlainTextResponse("Not Found", 404)(scope, receive, send)
            return
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        response = FileResponse(full, media_type=media_type(full), stat_result=info, headers=headers)
        etag = response.headers["etag"]
        for value in _request_header(scope, b"if-none-match").split(","):
            if value.strip() in (etag, "*"):
                headers = {"ETag": etag, "Cache-Control": "no-cache",
                           "Last-Modified": formatdate(info.st_mtime, usegmt=True)}
                response = Response(status_code=304, headers=headers)
                break
        await response(scope, receive, send)


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
