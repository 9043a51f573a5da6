"""The authorize hook guards every API endpoint, the SSE ones included (401/403 as JSON).

The server runs with ``--token``: no Authorization header → 401 (the hook raises), a wrong token
→ 403 (the hook returns False), the right one → through.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import Server
from .test_api import assert_error

ENDPOINTS = [
    ("GET", "/jobs", {}),
    ("POST", "/trigger", {"json": {"jobName": "echo"}}),
    ("GET", "/runs", {}),
    ("GET", "/run", {"params": {"runId": "x"}}),
    ("GET", "/steps", {"params": {"runId": "x"}}),
    ("GET", "/subscribe", {"params": {"runId": "x"}}),
    ("GET", "/runs/subscribe", {}),
    ("POST", "/retry", {"params": {"runId": "x"}}),
    ("POST", "/cancel", {"params": {"runId": "x"}}),
    ("DELETE", "/run", {"params": {"runId": "x"}}),
    ("GET", "/openapi.json", {}),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Server:
    from .conftest import free_port

    server = Server(tmp_path_factory.mktemp("auth") / "jobs.db", free_port(), ["--token", "s3cret"])
    server.start()
    yield server  # type: ignore[misc]
    server.kill()


@pytest.mark.parametrize(("method", "path", "kwargs"), ENDPOINTS)
def test_every_endpoint_needs_credentials(secured: Server, method: str, path: str, kwargs: dict) -> None:
    before = httpx.get(secured.api + "/runs", headers=secured.auth).json()["total"]
    missing = httpx.request(method, secured.api + path, timeout=5, **kwargs)
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.request(method, secured.api + path, headers={"Authorization": "Bearer nope"}, timeout=5, **kwargs)
    assert_error(wrong, 403, "forbidden")
    assert httpx.get(secured.api + "/runs", headers=secured.auth).json()["total"] == before


@pytest.mark.parametrize(("method", "path", "kwargs"), [e for e in ENDPOINTS if "subscribe" not in e[1]])
def test_the_right_token_gets_through(secured: Server, method: str, path: str, kwargs: dict) -> None:
    response = httpx.request(method, secured.api + path, headers=secured.auth, timeout=5, **kwargs)
    assert response.status_code in (200, 201, 404), response.text


def test_sse_with_the_right_token_streams(secured: Server) -> None:
    run_id = httpx.post(secured.api + "/trigger", json={"jobName": "echo"}, headers=secured.auth).json()["runId"]
    with httpx.stream("GET", secured.api + "/subscribe", params={"runId": run_id}, headers=secured.auth,
                      timeout=10) as response:
        assert response.status_code == 200
        body = response.read()
    assert b"event: run:complete" in body


def test_unknown_paths_and_the_site_need_no_token(secured: Server) -> None:
    assert_error(httpx.get(secured.api + "/nope", headers={"Authorization": "Bearer nope"}), 404, "not_found")
    assert httpx.get(secured.url + "/").status_code == 200  # the landing page / site is public
