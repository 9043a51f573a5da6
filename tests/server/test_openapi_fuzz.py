"""The served OpenAPI document is exact: schemathesis generates requests from it (valid ones and
invalid ones) against a real ``stepstone serve`` and checks every answer against it. No 5xx, no
undocumented status, content type or header, no response that breaks its schema (the SSE
endpoints' events included), and no request the document calls invalid accepted.

Bounded: a fixed number of examples per operation, derandomized (the same requests every run), an
SSE stream read for a second, and a time limit on the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Server, wait_status

EXAMPLES = 25  # per operation and generation mode: a few hundred requests in all
STREAM_READ = 1.0  # s; a valid SSE request is read this long, so those get half the examples
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # what the document calls invalid is refused
    positive_data_acceptance,  # what it calls valid is not refused for its form (2xx, or 404: no such run/job)
]
COUNTS: dict[str, int] = {"requests": 0, "5xx": 0}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("fuzz") / "jobs.db", args=["--keepalive", "0.2"])
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Server) -> Any:
    schema = schemathesis.openapi.from_url(fuzzed.api + "/openapi.json")
    schema.config.update(base_url=fuzzed.api)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES, deterministic=True,
        database="none",
    )  # fmt: skip
    return schema


def call(case: Any) -> Any:
    streaming = case.path.endswith("subscribe")
    COUNTS["requests"] += 1
    # an SSE stream: what comes in STREAM_READ s (also the bound on its first bytes: room for a busy machine)
    response = case.call(timeout=STREAM_READ if streaming else 10.0)
    if response.status_code >= 500:
        COUNTS["5xx"] += 1
    return response


def check(case: Any, failures: list[str]) -> None:
    response = call(case)
    try:
        case.validate_response(response, checks=CHECKS)
    except (AssertionError, BaseExceptionGroup) as exc:  # keep going: report every failure at the end
        failures.append(f"{case.method} {case.formatted_path} {case.query or ''} {case.headers or ''} -> "
                        f"{response.status_code}: {str(exc)[:600]}")


@pytest.mark.timeout(150)
def test_every_answer_matches_the_openapi_document(api_schema: Any) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # every operation but the document itself (schemathesis leaves out the URL it loaded)
    assert sorted(op.label for op in operations) == [
        "DELETE /run", "DELETE /schedules", "GET /jobs", "GET /run", "GET /runs", "GET /runs/subscribe",
        "GET /schedules", "GET /steps", "GET /subscribe", "POST /cancel", "POST /event", "POST /retry",
        "POST /schedules", "POST /schedules/pause", "POST /schedules/resume", "POST /trigger",
    ]  # fmt: skip
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            streamed = mode is GenerationMode.POSITIVE and operation.path.endswith("subscribe")

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES // 2 if streamed else EXAMPLES, deadline=None, derandomize=True,
                database=None, print_blob=False, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )  # fmt: skip
            def examples(case: Any) -> None:
                check(case, failures)

            try:
                examples()
            except Unsatisfiable:  # nothing to make invalid (GET /jobs takes no parameters)
                assert mode is GenerationMode.NEGATIVE and not operation.query and not operation.body
    print(f"schemathesis: {COUNTS['requests']} requests, {COUNTS['5xx']} answered 5xx, {len(failures)} failures")
    assert COUNTS["5xx"] == 0 and not failures, "\n".join(failures[:40])


def test_answers_about_real_runs_match_the_document(fuzzed: Server, api_schema: Any, tmp_path: Any) -> None:
    # Generated ids rarely name a run: walk real runs through every endpoint, success answers and
    # SSE events included, and hold each answer to the document too.
    def checked(method: str, path: str, status: int, **parts: Any) -> Any:
        if "body" in parts:
            parts["media_type"] = "application/json"
        case = api_schema[path][method].Case(**parts)
        response = call(case)
        assert response.status_code == status, response.text
        case.validate_response(response, checks=CHECKS)
        return response

    assert checked("GET", "/jobs", 200).json()["jobs"]
    body = {"jobName": "steps", "input": {"steps": 2, "delay": 0}, "idempotencyKey": "k1", "labels": {"a": "b"}}
    run_id = checked("POST", "/trigger", 201, body=body).json()["runId"]
    assert checked("POST", "/trigger", 200, body=body).json()["created"] is False
    wait_status(fuzzed, run_id, {"completed"})
    checked("GET", "/run", 200, query={"runId": run_id})
    assert len(checked("GET", "/steps", 200, query={"runId": run_id}).json()["steps"]) == 2
    checked("GET", "/runs", 200, query={"jobName": "steps", "status": "completed,failed", "limit": 1})
    events = checked("GET", "/subscribe", 200, query={"runId": run_id}).text
    assert "event: run:complete" in events
    assert "event: run:change" in checked("GET", "/runs/subscribe", 200, query={"from": 0}).text
    checked("POST", "/retry", 409, query={"runId": run_id})
    checked("POST", "/cancel", 409, query={"runId": run_id})
    flaky = checked("POST", "/trigger", 201, body={"jobName": "flaky"}).json()["runId"]
    wait_status(fuzzed, flaky, {"failed"})
    checked("POST", "/retry", 200, query={"runId": flaky})
    gated = checked("POST", "/trigger", 201, body={"jobName": "gate", "input": {"until": str(tmp_path / "x")}})
    checked("POST", "/cancel", 200, query={"runId": gated.json()["runId"]})
    checked("DELETE", "/run", 200, query={"runId": run_id})
    checked("GET", "/run", 404, query={"runId": run_id})
    checked("POST", "/trigger", 422, body={"jobName": "steps", "input": {"steps": "many"}})
