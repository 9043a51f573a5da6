"""Every JSON endpoint of the jobs API, and every error, against a real ``stepstone serve``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import Server, get, post, wait_status


def runs_total(server: Server) -> int:
    return int(get(server, "/runs").json()["total"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["error"]  # type: ignore[no-any-return]


def test_jobs_lists_every_registered_job(api_server: Server) -> None:
    response = get(api_server, "/jobs")
    assert response.status_code == 200
    jobs = {j["name"]: j for j in response.json()["jobs"]}
    assert {"echo", "steps", "gate", "flaky", "chatty", "tokens"} <= set(jobs)
    assert jobs["echo"] == {"name": "echo", "version": "1", "streaming": False}
    assert jobs["tokens"]["streaming"] is True


def test_trigger_creates_a_run_and_the_run_completes(api_server: Server) -> None:
    response = post(api_server, "/trigger", json={"jobName": "echo", "input": {"x": [1, "é"]}, "labels": {"env": "t"}})
    assert response.status_code == 201
    body = response.json()
    assert body["created"] is True and body["runId"] == body["run"]["id"]
    assert body["run"]["jobName"] == "echo" and body["run"]["status"] == "pending"
    assert body["run"]["input"] == {"x": [1, "é"]} and body["run"]["labels"] == {"env": "t"}
    run = wait_status(api_server, body["runId"], {"completed"})
    assert run["output"] == {"got": {"x": [1, "é"]}}


def test_trigger_with_a_used_idempotency_key_returns_the_same_run_with_200(api_server: Server) -> None:
    first = post(api_server, "/trigger", json={"jobName": "echo", "idempotencyKey": "idem-1", "input": 1})
    again = post(api_server, "/trigger", json={"jobName": "echo", "idempotencyKey": "idem-1", "input": 2})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False
    assert again.json()["runId"] == first.json()["runId"]
    assert again.json()["run"]["input"] == 1


def test_trigger_without_input_passes_null(api_server: Server) -> None:
    response = post(api_server, "/trigger", json={"jobName": "echo"})
    assert response.status_code == 201
    assert wait_status(api_server, response.json()["runId"], {"completed"})["output"] == {"got": None}


@pytest.mark.parametrize(
    ("content", "code", "status"),
    [
        (b"{not json", "bad_request", 400),
        (b"", "bad_request", 400),
        (b"[1, 2]", "bad_request", 400),
        (b'{"input": 1}', "bad_request", 400),
        (b'{"jobName": ""}', "bad_request", 400),
        (b'{"jobName": 7}', "bad_request", 400),
        (b'{"jobName": "echo", "job_name": "x"}', "bad_request", 400),
        (b'{"jobName": "echo", "labels": {"a": 1}}', "bad_request", 400),
        (b'{"jobName": "echo", "labels": ["a"]}', "bad_request", 400),
        (b'{"jobName": "echo", "idempotencyKey": 5}', "bad_request", 400),
        (b'{"jobName": "echo", "concurrencyKey": ""}', "bad_request", 400),
        (b'{"jobName": "echo", "input": NaN}', "bad_request", 400),
        (b'{"jobName": "echo", "input": "\xff"}', "bad_request", 400),
        (b'{"jobName": "no-such-job"}', "job_not_found", 404),
        (b'{"jobName": "steps", "input": {"steps": "many"}}', "invalid_input", 422),
        (b'{"jobName": "steps", "input": {"bogus": 1}}', "invalid_input", 422),
        (b'{"jobName": "steps", "input": [1]}', "invalid_input", 422),
        # nested deeper than any parser on the way takes (today's 500: a RecursionError)
        (b'{"jobName": "echo", "input": ' + b"[" * 2000 + b"]" * 2000 + b"}", "bad_request", 400),
        (b'{"jobName": "echo", "input": ' + b"[" * 100 + b"]" * 100 + b"}", "bad_request", 400),
    ],
)
def test_trigger_rejects_bad_requests_and_stores_nothing(
    api_server: Server, content: bytes, code: str, status: int
) -> None:
    before = runs_total(api_server)
    response = post(api_server, "/trigger", content=content, headers={"content-type": "application/json"})
    error = assert_error(response, status, code)
    assert runs_total(api_server) == before
    assert str(api_server.db.parent) not in error["message"]


@pytest.mark.parametrize(
    ("field", "content"),
    [
        ("idempotencyKey", b'{"jobName": "echo", "idempotencyKey": "\\ud800"}'),
        ("concurrencyKey", b'{"jobName": "echo", "concurrencyKey": "a\\udc00"}'),
        ("labels", b'{"jobName": "echo", "labels": {"team": "\\ud800"}}'),
        ("labels", b'{"jobName": "echo", "labels": {"\\udfff": "x"}}'),
        ("jobName", b'{"jobName": "\\ud800"}'),
        ("input", b'{"jobName": "echo", "input": {"deep": [{"k": "\\ud800"}]}}'),
    ],
)
def test_a_lone_surrogate_is_a_422_naming_its_field(api_server: Server, field: str, content: bytes) -> None:
    # A valid JSON escape, but not a character: no UTF-8 text (and no store) can hold it (today's 500).
    before = runs_total(api_server)
    response = post(api_server, "/trigger", content=content, headers={"content-type": "application/json"})
    assert f"'{field}'" in assert_error(response, 422, "invalid_input")["message"]
    assert runs_total(api_server) == before


def test_a_body_nested_just_within_the_limit_is_accepted(api_server: Server) -> None:
    depth = 99  # the body object is level 1: input may nest 99 levels
    content = b'{"jobName": "echo", "input": ' + b"[" * depth + b"]" * depth + b"}"
    response = post(api_server, "/trigger", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    assert wait_status(api_server, response.json()["runId"], {"completed"})["input"] is not None


def test_trigger_body_over_max_body_is_413_by_content_length(api_server: Server) -> None:
    before = runs_total(api_server)
    payload = b'{"jobName": "echo", "input": "' + b"x" * 5000 + b'"}'
    response = post(api_server, "/trigger", content=payload, headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    assert runs_total(api_server) == before


def test_trigger_body_over_max_body_is_413_when_streamed_without_length(api_server: Server) -> None:
    before = runs_total(api_server)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"jobName": "echo", "input": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    response = post(api_server, "/trigger", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    assert runs_total(api_server) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},  # what a cross-site page may send without a preflight
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
        {"content-type": "application/jsonp"},
    ],
)
def test_trigger_needs_application_json_so_a_cross_site_page_must_preflight(
    api_server: Server, headers: dict[str, str]
) -> None:
    before = runs_total(api_server)
    response = post(api_server, "/trigger", content=b'{"jobName": "echo"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")  # was 201: a run created by a simple request
    assert runs_total(api_server) == before


def test_trigger_takes_application_json_with_parameters(api_server: Server) -> None:
    response = post(api_server, "/trigger", content=b'{"jobName": "echo"}',
                    headers={"content-type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 201, response.text


def test_runs_lists_filters_and_pages(api_server: Server) -> None:
    ids = [post(api_server, "/trigger", json={"jobName": "echo", "input": i, "labels": {"batch": "page", "n": str(i)}}
                ).json()["runId"] for i in range(5)]
    for run_id in ids:
        wait_status(api_server, run_id, {"completed"})
    page = get(api_server, "/runs", params={"label.batch": "page", "limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [r["id"] for r in page["runs"]] == list(reversed(ids))[1:3]  # newest first
    one = get(api_server, "/runs", params={"label.batch": "page", "label.n": "3"}).json()
    assert [r["id"] for r in one["runs"]] == [ids[3]]
    by_job = get(api_server, "/runs", params={"jobName": "echo", "status": "completed,failed", "limit": 500}).json()
    assert set(ids) <= {r["id"] for r in by_job["runs"]}
    assert all(r["jobName"] == "echo" and r["status"] in ("completed", "failed") for r in by_job["runs"])
    empty = get(api_server, "/runs", params={"jobName": "nothing-here"}).json()
    version = empty.pop("version")  # where the run-change feed stood just before the page was read
    assert isinstance(version, int) and version >= len(ids)
    assert empty == {"runs": [], "total": 0, "limit": 50, "offset": 0}


def test_runs_limit_is_capped_at_500(api_server: Server) -> None:
    assert get(api_server, "/runs", params={"limit": 100000}).json()["limit"] == 500


@pytest.mark.parametrize(
    "params",
    [{"status": "done"}, {"status": "completed,"}, {"limit": "ten"}, {"limit": "-1"}, {"offset": "-5"},
     {"offset": "1.5"}],
)
def test_runs_rejects_bad_parameters(api_server: Server, params: dict[str, str]) -> None:
    assert_error(get(api_server, "/runs", params=params), 400, "bad_request")


def test_run_and_steps(api_server: Server) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "echo", "input": "s"}).json()["runId"]
    run = wait_status(api_server, run_id, {"completed"})
    assert run["id"] == run_id and run["attempt"] == 1 and run["lastSeq"] >= 6
    steps = get(api_server, "/steps", params={"runId": run_id}).json()["steps"]
    assert [(s["name"], s["index"], s["status"], s["output"]) for s in steps] == [
        ("first", 0, "completed", {"got": "s"}), ("second", 1, "completed", 2)]
    assert steps[0]["runId"] == run_id


@pytest.mark.parametrize("path", ["/run", "/steps"])
def test_run_and_steps_errors(api_server: Server, path: str) -> None:
    assert_error(get(api_server, path), 400, "bad_request")
    assert_error(get(api_server, path, params={"runId": ""}), 400, "bad_request")
    assert_error(get(api_server, path, params={"runId": "nope"}), 404, "run_not_found")


def test_retry_resumes_a_failed_run_and_refuses_other_states(api_server: Server) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "flaky"}).json()["runId"]
    failed = wait_status(api_server, run_id, {"failed"})
    assert "first attempt" in failed["error"]
    retried = post(api_server, "/retry", params={"runId": run_id})
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert retried.json()["attempt"] == 2
    done = wait_status(api_server, run_id, {"completed"})
    assert done["output"] == 2
    assert_error(post(api_server, "/retry", params={"runId": run_id}), 409, "invalid_run_state")
    assert wait_status(api_server, run_id, {"completed"})["attempt"] == 2  # unchanged by the refusal
    assert_error(post(api_server, "/retry", params={"runId": "nope"}), 404, "run_not_found")
    assert_error(post(api_server, "/retry"), 400, "bad_request")


def test_cancel_stops_a_running_run_and_refuses_finished_ones(api_server: Server, tmp_path: Path) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "gate", "input": {"until": str(tmp_path / "x")}}
                  ).json()["runId"]
    wait_status(api_server, run_id, {"running"})
    assert_error(post(api_server, "/retry", params={"runId": run_id}), 409, "invalid_run_state")
    cancelled = post(api_server, "/cancel", params={"runId": run_id})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_error(post(api_server, "/cancel", params={"runId": run_id}), 409, "invalid_run_state")
    assert_error(post(api_server, "/cancel", params={"runId": "nope"}), 404, "run_not_found")
    assert_error(post(api_server, "/cancel"), 400, "bad_request")
    assert post(api_server, "/retry", params={"runId": run_id}).json()["status"] == "pending"
    (tmp_path / "x").touch()
    assert wait_status(api_server, run_id, {"completed"})["output"] == "opened"


def test_delete_removes_the_run(api_server: Server) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "echo"}).json()["runId"]
    wait_status(api_server, run_id, {"completed"})
    response = httpx.delete(api_server.api + "/run", params={"runId": run_id})
    assert response.status_code == 200 and response.json() == {"deleted": True, "runId": run_id}
    assert_error(get(api_server, "/run", params={"runId": run_id}), 404, "run_not_found")
    assert_error(get(api_server, "/steps", params={"runId": run_id}), 404, "run_not_found")
    assert_error(httpx.delete(api_server.api + "/run", params={"runId": run_id}), 404, "run_not_found")
    assert_error(httpx.delete(api_server.api + "/run"), 400, "bad_request")


def test_openapi_document_describes_every_endpoint(api_server: Server) -> None:
    doc = get(api_server, "/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "/api"}]
    assert set(doc["paths"]) == {"/jobs", "/trigger", "/runs", "/run", "/steps", "/subscribe", "/runs/subscribe",
                                 "/retry", "/cancel", "/event", "/schedules", "/schedules/pause",
                                 "/schedules/resume", "/openapi.json"}
    assert set(doc["paths"]["/run"]) == {"get", "delete"}
    assert {"Run", "Event", "Step", "RunChange", "Error"} <= set(doc["components"]["schemas"])


def test_unknown_endpoint_and_wrong_method_are_json_errors(api_server: Server) -> None:
    assert_error(get(api_server, "/nope"), 404, "not_found")
    assert_error(get(api_server, "/trigger"), 405, "method_not_allowed")
    assert_error(httpx.put(api_server.api + "/run", params={"runId": "x"}), 405, "method_not_allowed")


def test_cors_allows_only_the_configured_origin(api_server: Server) -> None:
    preflight = httpx.options(api_server.api + "/trigger", headers={
        "Origin": "http://allowed.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://allowed.test"
    simple = get(api_server, "/jobs", headers={"Origin": "http://allowed.test"})
    assert simple.headers["access-control-allow-origin"] == "http://allowed.test"
    other = get(api_server, "/jobs", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers
    refused = httpx.options(api_server.api + "/trigger", headers={
        "Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400


def test_api_cors_leaves_the_streams_protocol_its_own_preflight(api_server: Server) -> None:
    url = api_server.api.rsplit("/api", 1)[0] + "/v1/stream/cors-check"
    preflight = httpx.options(url, headers={
        "Origin": "http://allowed.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "producer-id,producer-epoch,producer-seq,stream-closed"})
    assert preflight.status_code == 204, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "producer-id" in allowed and "stream-closed" in allowed


def test_no_cors_headers_by_default(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory()
    response = get(server, "/jobs", headers={"Origin": "http://allowed.test"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
