"""The client core against MockTransport: error mapping, SSE parsing, resuming, backoff limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stepstone
from stepstone.client import Client, MockStream, MockTransport, Request, Response


def error(status: int, code: str | None, message: str = "nope") -> Response:
    body = {"error": {"code": code, "message": message}} if code else {"detail": message}
    return Response(status, {"content-type": "application/json"}, json.dumps(body).encode())


def frame(seq: int, type: str, data: dict[str, Any] | None = None, run_id: str = "r1") -> str:
    event = {"runId": run_id, "seq": seq, "type": type, "data": data or {}, "at": 0.0}
    return f"id: {seq}\nevent: {type}\ndata: {json.dumps(event)}\n\n"


RUN = {"id": "r1", "jobName": "steps", "status": "running", "lastSeq": 1}


@pytest.mark.parametrize(
    ("answer", "exc", "text"),
    [
        (error(404, "job_not_found", "no job named 'x'"), stepstone.JobNotFound, "no job named 'x'"),
        (error(422, "invalid_input", "input rejected"), stepstone.InvalidInput, "input rejected"),
        (error(409, "invalid_run_state", "is completed"), stepstone.InvalidRunState, "is completed"),
        (error(401, "unauthorized", "send a token"), stepstone.Unauthorized, "not authorized (401): send a token"),
        (error(403, "forbidden", "refused"), stepstone.Unauthorized, "not authorized (403)"),
        (error(413, "payload_too_large", "too big"), stepstone.InvalidInput, "too big"),
        (error(503, "shutting_down", "bye"), stepstone.ServerUnavailable, "unavailable (503)"),
        # a stopping or starting server, whatever its code: retry (engine_not_started was final)
        (error(503, "engine_not_started", "stopping"), stepstone.ServerUnavailable, "unavailable (503)"),
        (error(503, "unavailable", "not ready"), stepstone.ServerUnavailable, "unavailable (503)"),
        (error(503, "store_error", "disk"), stepstone.ServerUnavailable, "unavailable (503)"),
        (error(404, None), stepstone.ServerError, "is the api_url right?"),
        (error(500, "internal_error", "see its log"), stepstone.ServerError, "HTTP 500"),
        (Response(502, {}, b"<html>bad gateway</html>"), stepstone.ServerUnavailable, "bad gateway"),
    ],
)
async def test_http_errors_become_named_exceptions(answer: Response, exc: type[Exception], text: str) -> None:
    client = Client("http://test/api", transport=MockTransport(lambda request: answer))
    with pytest.raises(exc) as info:
        await client.trigger("x", {})
    assert text in str(info.value)
    assert isinstance(info.value, stepstone.StepstoneError)


async def test_get_run_of_unknown_run_is_none_like_the_engine() -> None:
    client = Client("http://test/api", transport=MockTransport(lambda r: error(404, "run_not_found")))
    assert await client.get_run("zzz") is None


async def test_requests_carry_headers_params_and_json_body() -> None:
    def handler(request: Request) -> Response:
        seen.append(request)
        run = {**RUN, "status": "pending"}
        return Response(201, {}, json.dumps({"runId": "r1", "created": True, "run": run}).encode())

    seen: list[Request] = []
    client = Client("http://test/api/", headers={"Authorization": "Bearer t"}, transport=MockTransport(handler))
    result = await client.trigger("steps", {"a": 1}, idempotency_key="k", labels={"team": "x"})
    assert result.id == "r1" and result.created and result.status == "pending"
    request = seen[0]
    assert (request.method, request.url) == ("POST", "http://test/api/trigger")
    assert request.headers["authorization"] == "Bearer t"
    assert request.json() == {"jobName": "steps", "input": {"a": 1}, "idempotencyKey": "k", "labels": {"team": "x"}}


async def test_get_runs_sends_statuses_and_labels_and_reads_the_total() -> None:
    def handler(request: Request) -> Response:
        seen.append(request.url)
        return Response(200, {}, json.dumps({"runs": [RUN], "total": 7, "limit": 1, "offset": 2}).encode())

    seen: list[str] = []
    client = Client("http://test/api", transport=MockTransport(handler))
    page = await client.get_runs("steps", ("pending", "running"), {"team": "x"}, limit=1, offset=2)
    assert page.total == 7 and [r.id for r in page] == ["r1"] and (page.limit, page.offset) == (1, 2)
    assert seen == ["http://test/api/runs?jobName=steps&limit=1&offset=2&status=pending%2Crunning&label.team=x"]
    with pytest.raises(ValueError, match="unknown status"):
        await client.get_runs(status="done")  # type: ignore[arg-type]


async def test_subscribe_resumes_with_last_event_id_without_gap_or_duplicate() -> None:
    """The first connection dies mid-frame after seq 1; the second replays seq 1 (a duplicate the
    client must drop) and goes on to the terminal event."""
    def handler(request: Request) -> Response | MockStream:
        if "/run?" in request.url:  # the stream ended early: the client asks whether more can come
            return Response(200, {}, json.dumps(RUN).encode())
        headers.append(dict(request.headers))
        if len(headers) == 1:
            return MockStream(chunks=[frame(0, "run:start"), frame(1, "log:write"), "id: 2\nevent: log:wr"])
        return MockStream(chunks=[frame(1, "log:write"), frame(2, "log:write"), frame(3, "run:complete")])

    headers: list[dict[str, str]] = []
    client = Client("http://test/api", transport=MockTransport(handler), max_backoff=0.01)
    events = [e async for e in client.subscribe("r1")]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert "last-event-id" not in headers[0]
    assert headers[1]["last-event-id"] == "1"
    assert events[-1].is_terminal


async def test_subscribe_reconnects_from_the_first_missing_seq_after_a_gap() -> None:
    def handler(request: Request) -> MockStream:
        urls.append(request.url)
        if len(urls) == 1:
            return MockStream(chunks=[frame(0, "run:start"), frame(2, "log:write")])
        return MockStream(chunks=[frame(1, "log:write"), frame(2, "log:write"), frame(3, "run:fail")])

    urls: list[str] = []
    client = Client("http://test/api", transport=MockTransport(handler), max_backoff=0.01)
    assert [e.seq async for e in client.subscribe("r1")] == [0, 1, 2, 3]
    assert urls[1].endswith("from=1")


async def test_subscribe_gives_up_after_reconnect_timeout_with_a_clear_error() -> None:
    def handler(request: Request) -> Response:
        raise stepstone.ServerUnavailable("cannot reach the stepstone server at http://test/api: refused")

    transport = MockTransport(handler)
    client = Client("http://test/api", transport=transport, reconnect_timeout=0.3, max_backoff=0.05)
    with pytest.raises(stepstone.ServerUnavailable, match="refused"):
        async for _ in client.subscribe("r1"):
            pass
    assert 3 <= len(transport.requests) < 40  # it retried, with backoff, then stopped


async def test_subscribe_ends_when_the_stream_ends_and_the_run_is_finished() -> None:
    def handler(request: Request) -> Response | MockStream:
        if "/run?" in request.url:
            return Response(200, {}, json.dumps({**RUN, "status": "completed", "lastSeq": 3}).encode())
        return MockStream(chunks=[])

    client = Client("http://test/api", transport=MockTransport(handler))
    assert [e async for e in client.subscribe("r1", from_seq=4)] == []


async def test_silent_stream_counts_as_a_drop() -> None:
    async def silent() -> AsyncIterator[str]:
        yield frame(0, "run:start")
        await asyncio.sleep(30)
        yield ""  # pragma: no cover - never reached

    def handler(request: Request) -> MockStream:
        calls.append(request.url)
        if len(calls) == 1:
            return MockStream(chunks=silent())
        return MockStream(chunks=[frame(1, "run:complete")])

    calls: list[str] = []
    client = Client("http://test/api", transport=MockTransport(handler), idle_timeout=0.2, max_backoff=0.01)
    assert [e.seq async for e in client.subscribe("r1")] == [0, 1]
    assert len(calls) == 2


async def test_subscribe_to_an_unknown_run_raises_run_not_found() -> None:
    client = Client("http://test/api", transport=MockTransport(lambda r: error(404, "run_not_found", "no run")))
    with pytest.raises(stepstone.RunNotFound):
        async for _ in client.subscribe("nope"):
            pass


async def test_subscribe_runs_resumes_from_the_last_version() -> None:
    def change(version: int) -> str:
        body = {"version": version, "runId": "r1", "run": {**RUN, "version": version}}
        return f"id: {version}\nevent: run:change\ndata: {json.dumps(body)}\n\n"

    def handler(request: Request) -> MockStream:
        headers.append(dict(request.headers))
        if len(headers) == 1:
            return MockStream(chunks=[": keep-alive\n\n", change(5), change(6)])
        return MockStream(chunks=[change(6), change(7)])

    headers: list[dict[str, str]] = []
    client = Client("http://test/api", transport=MockTransport(handler), max_backoff=0.01)
    seen: list[int] = []
    async for item in client.subscribe_runs():
        seen.append(item.version)
        if item.version == 7:
            break
    assert seen == [5, 6, 7]
    assert "last-event-id" not in headers[0] and headers[1]["last-event-id"] == "6"


async def test_subscribe_and_wait_ride_out_a_server_that_answers_503_while_it_restarts() -> None:
    # The server stops mid-run (its stream ends, then every request gets a 503 with an
    # engine_not_started code, as a stopping server used to answer), then comes back.
    calls = {"run": 0, "subscribe": 0}

    def handler(request: Request) -> Response | MockStream:
        down = 1 <= calls["subscribe"] <= 3
        if "/subscribe" in request.url:
            calls["subscribe"] += 1
            if calls["subscribe"] == 1:
                return MockStream(chunks=[frame(0, "run:trigger"), frame(1, "run:start")])
            if down:
                return error(503, "engine_not_started", "the engine is not started")
            return MockStream(chunks=[frame(2, "step:complete"), frame(3, "run:complete")])
        calls["run"] += 1
        if down and calls["run"] > 1:
            return error(503, "engine_not_started", "the engine is not started")
        done = calls["subscribe"] > 3
        run = {**RUN, "status": "completed" if done else "running", "lastSeq": 3 if done else -1}
        return Response(200, {}, json.dumps(run).encode())

    client = Client("http://test/api", transport=MockTransport(handler), reconnect_timeout=30, max_backoff=0.01)
    events = [e async for e in client.subscribe("r1")]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    calls.update(run=0, subscribe=0)
    assert (await client.wait("r1", timeout=30)).status == "completed"
