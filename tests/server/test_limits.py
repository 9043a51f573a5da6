"""Size limits of a real ``stepstone serve``: ``--max-body`` on every endpoint (the Durable Streams
too), a declared oversized ``Content-Length`` refused before any of the body is read, and a cap
on the request head (431) that holds for every endpoint."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Server

MAX_BODY = 200_000


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    site = tmp_path_factory.mktemp("site")
    (site / "index.html").write_text("<p>hi</p>")
    server = Server(tmp_path_factory.mktemp("db") / "jobs.db", args=["--max-body", str(MAX_BODY), "--site", str(site)])
    server.start()
    yield server
    server.kill()


def raw_exchange(server: Server, head: bytes, body_part: bytes = b"") -> bytes:
    """Send a request head (and the first bytes of its body), then read the answer without
    sending anything more: a server that waited for the rest of the body would time out here."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body_part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return str(response.json()["error"]["code"])


def test_max_body_caps_stream_appends_and_creates(small: Server) -> None:
    octets = {"content-type": "application/octet-stream"}
    assert httpx.put(small.stream_url("capped"), headers=octets).status_code == 201
    over = httpx.post(small.stream_url("capped"), content=b"x" * (MAX_BODY + 1), headers=octets)
    assert over.status_code == 413 and error_code(over) == "body_too_large"  # was accepted (cap: 64 MiB)
    at = httpx.post(small.stream_url("capped"), content=b"x" * MAX_BODY, headers=octets)
    assert at.status_code == 204
    assert len(httpx.get(small.stream_url("capped"), params={"offset": "-1"}).content) == MAX_BODY
    created = httpx.put(small.stream_url("born-big"), content=b"x" * (MAX_BODY + 1), headers=octets)
    assert created.status_code == 413
    assert httpx.head(small.stream_url("born-big")).status_code == 404


@pytest.mark.parametrize("path", ["/api/trigger", "/api/event", "/api/schedules"])
def test_every_endpoint_that_reads_a_body_refuses_one_over_the_cap(small: Server, path: str) -> None:
    pad = "x" * MAX_BODY
    over = httpx.post(f"{small.url}{path}", json={"runId": "r", "name": "n", "data": pad})
    assert over.status_code == 413 and error_code(over) == "payload_too_large", over.text


def test_subscription_bodies_over_the_cap_are_413_and_too_deep_400(small: Server) -> None:
    pad = "x" * MAX_BODY
    response = httpx.put(
        small.stream_url("__ds/subscriptions/big"),
        json={"type": "pull-wake", "streams": ["capped"], "wake_stream": "w", "description": pad},
    )
    assert response.status_code == 413, response.text
    deep = httpx.put(
        small.stream_url("__ds/subscriptions/deep"),
        content=b"[" * 2000 + b"]" * 2000,
        headers={"content-type": "application/json"},
    )
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "INVALID_REQUEST", deep.text  # was a 500


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/stream/capped HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n",
        b"POST /api/trigger HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n",
    ],
)
def test_a_declared_huge_body_is_refused_before_it_is_sent(small: Server, head: bytes) -> None:
    httpx.put(small.stream_url("capped"), headers={"content-type": "application/octet-stream"})
    answer = raw_exchange(small, head + b"Content-Length: 10000000000\r\n\r\n", b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/runs"), ("POST", "/api/trigger"), ("GET", "/v1/stream/capped"), ("GET", "/"), ("GET", "/nowhere")],
)
def test_request_heads_over_64_kib_are_431_on_every_endpoint(small: Server, method: str, path: str) -> None:
    big = httpx.request(method, small.url + path, headers={"x-pad": "a" * (1 << 20)}, timeout=30)
    assert big.status_code == 431 and error_code(big) == "request_header_fields_too_large"  # a 1 MiB header was fine
    fine = httpx.request(method, small.url + path, headers={"x-pad": "a" * 60_000}, timeout=30)
    assert fine.status_code != 431 and "Invalid HTTP request" not in fine.text, fine.text


def test_a_head_trickling_in_is_cut_off_at_the_cap(small: Server) -> None:
    # Never a whole head: the server must stop buffering once the cap is passed, not wait for it.
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as sock:
        sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: t\r\nX-Pad: ")
        answer = b""
        try:
            for _ in range(200):  # up to 1.6 MB, 8 KiB at a time
                sock.sendall(b"a" * 8192)
        except OSError:  # the server closed the connection after answering
            pass
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_long_url_counts_towards_the_head(small: Server) -> None:
    answer = raw_exchange(small, b"GET /api/runs?jobName=" + b"j" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
