"""The static site served beside the API: MIME types, index pages, no listings, no way out."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from .conftest import Server


def raw_get(server: Server, target: str) -> bytes:
    """Send a request line exactly as given (httpx would normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/app.wasm", "application/wasm"),
        ("/mod.mjs", "text/javascript"),
        ("/main.js", "text/javascript"),
        ("/pkg.whl", "application/octet-stream"),
        ("/data.json", "application/json"),
        ("/sub/page.txt", "text/plain"),
        ("/docs/", "text/html"),
        ("/docs/index.html", "text/html"),
    ],
)
def test_site_files_are_served_with_the_right_type(api_server: Server, path: str, media_type: str) -> None:
    response = httpx.get(api_server.url + path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type


def test_root_without_index_shows_the_landing_page_then_the_index(api_server: Server, site_dir: Path) -> None:
    landing = httpx.get(api_server.url + "/")
    assert landing.status_code == 200 and "/api/openapi.json" in landing.text and "/api/trigger" in landing.text
    (site_dir / "index.html").write_text("<h1>the real index</h1>")
    try:
        assert "the real index" in httpx.get(api_server.url + "/").text
    finally:
        (site_dir / "index.html").unlink()


def test_directory_without_slash_redirects(api_server: Server) -> None:
    response = httpx.get(api_server.url + "/docs?x=1")
    assert response.status_code == 301 and response.headers["location"] == "/docs/?x=1"


@pytest.mark.parametrize(
    ("target", "location"),
    [("//docs", "/docs/"), ("///docs", "/docs/"), ("//docs?x=1", "/docs/?x=1"), ("/docs//", None), ("/./docs", None)],
)
def test_a_directory_redirect_never_leaves_the_origin(api_server: Server, target: str, location: str | None) -> None:
    # "//docs/" in a Location is protocol-relative: a browser would go to the host "docs"
    response = raw_get(api_server, target)
    status, _, rest = response.partition(b"\r\n")
    headers = dict(
        line.decode("latin-1").split(": ", 1) for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b": " in line
    )
    if location is None:
        assert b" 301 " not in status, response[:300]
    else:
        assert b" 301 " in status and headers["location"] == location, response[:300]


def test_site_errors_are_json_like_the_apis(api_server: Server) -> None:
    for path in ("/missing.js", "/sub/", "/api"):
        missing = httpx.get(api_server.url + path)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert missing.json()["error"]["code"] == "not_found" and missing.json()["error"]["message"]
    refused = httpx.post(api_server.url + "/main.js")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["code"] == "method_not_allowed"


def test_no_directory_listing_and_missing_files_are_404(api_server: Server) -> None:
    assert httpx.get(api_server.url + "/sub/").status_code == 404
    assert httpx.get(api_server.url + "/sub").status_code == 404
    assert httpx.get(api_server.url + "/missing.js").status_code == 404


@pytest.mark.parametrize(
    "target", ["/../jobs.db", "/sub/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
               "/sub/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd"],
)
def test_path_traversal_is_refused(api_server: Server, target: str) -> None:
    response = raw_get(api_server, target)
    status = response.split(b"\r\n", 1)[0]
    assert b" 404 " in status or b" 400 " in status, status
    assert b"root:" not in response


def test_etag_revalidation_gives_304(api_server: Server) -> None:
    first = httpx.get(api_server.url + "/main.js")
    again = httpx.get(api_server.url + "/main.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_site_refuses_writes(api_server: Server) -> None:
    assert httpx.post(api_server.url + "/main.js").status_code == 405


def test_site_is_not_behind_the_api(api_server: Server) -> None:
    # /api without a trailing path is not an endpoint; it falls to the site (404, not an API error)
    assert httpx.get(api_server.url + "/api").status_code == 404


BIG = b"\0asm\1\0\0\0" + bytes(range(256)) * 64


def test_a_gzipped_copy_is_sent_to_clients_that_take_gzip(api_server: Server) -> None:
    packed = httpx.get(api_server.url + "/big.wasm", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["content-type"] == "application/wasm" and packed.content == BIG  # httpx decodes
    assert int(packed.headers["content-length"]) < len(BIG) / 4
    for refusal in ("identity", "gzip;q=0, br", "br, *;q=0", "gzip;q=0, *"):
        plain = httpx.get(api_server.url + "/big.wasm", headers={"Accept-Encoding": refusal})
        assert "content-encoding" not in plain.headers, refusal
        assert plain.headers["vary"] == "Accept-Encoding" and plain.content == BIG, refusal
        assert plain.headers["etag"] != packed.headers["etag"], refusal
    star = httpx.get(api_server.url + "/big.wasm", headers={"Accept-Encoding": "br, *"})
    assert star.headers["content-encoding"] == "gzip"


def test_a_gzipped_copy_revalidates_with_its_own_etag(api_server: Server) -> None:
    first = httpx.get(api_server.url + "/big.wasm", headers={"Accept-Encoding": "gzip"})
    condition = {"Accept-Encoding": "gzip", "If-None-Match": first.headers["etag"]}
    again = httpx.get(api_server.url + "/big.wasm", headers=condition)
    assert again.status_code == 304 and again.headers["vary"] == "Accept-Encoding"
    head = httpx.head(api_server.url + "/big.wasm", headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and head.headers["content-encoding"] == "gzip" and head.content == b""


def test_a_gzipped_copy_older_than_its_file_is_not_sent(api_server: Server) -> None:
    response = httpx.get(api_server.url + "/stale.js", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers and "vary" not in response.headers
    assert response.text == "console.log('new');\n"
    files_without_copies = httpx.get(api_server.url + "/main.js", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in files_without_copies.headers and "vary" not in files_without_copies.headers
