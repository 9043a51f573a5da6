"""The client's EventSource path, on CPython: ``MockEventSourceTransport`` plays the browser's
EventSource (it hears only the event types it listens for, reconnects by itself with
``Last-Event-ID`` after a drop, and closes for good on any answer but a 200 stream), so the logic the
page runs is tested here: when it is chosen, resuming with no gap and no duplicate, a refused
reconnect (503, 404) reopened and mapped as on the fetch path, the give-up budget, and the fall-back
to the streaming GET when an event type is unknown to the EventSource."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stepstone
from stepstone._http import MockEventSourceTransport
from stepstone.client import Client, MockStream, Request, Response

RUN = {"id": "r1", "jobName": "steps", "status": "running", "lastSeq": 1}


def frame(seq: int, type: str, run_id: str = "r1") -> str:
    event = {"runId": run_id, "seq": seq, "type": type, "data": {}, "at": 0.0}
    return f"id: {seq}\nevent: {type}\ndata: {json.dumps(event)}\n\n"


def change(version: int, run_id: str = "r1", status: str = "running") -> str:
    body = {"version": version, "runId": run_id, "run": {**RUN, "id": run_id, "status": status}}
    return f"id: {version}\nevent: run:change\ndata: {json.dumps(body)}\n\n"


def error(status: int, code: str, message: str = "nope") -> Response:
    return Response(status, {"content-type": "application/json"},
                    json.dumps({"error": {"code": code, "message": message}}).encode())  # fmt: skip


def is_stream(request: Request) -> bool:
    return "/subscribe" in request.url


def client_for(transport: MockEventSourceTransport, **options: Any) -> Client:
    return Client("http://test/api", transport=transport, max_backoff=0.01, **options)


async def test_the_event_source_carries_streams_only_when_no_headers_must_be_sent() -> None:
    def handler(request: Request) -> MockStream:
        seen.append(request)
        return MockStream(chunks=[frame(0, "run:start"), frame(1, "run:complete")])

    seen: list[Request] = []
    transport = MockEventSourceTransport(handler)
    plain = client_for(transport)
    assert plain.uses_event_source()
    assert [e.seq async for e in plain.subscribe("r1")] == [0, 1]
    assert len(transport.event_sources) == 1

    bearer = client_for(transport, headers={"Authorization": "Bearer t"})
    assert not bearer.uses_event_source()
    assert [e.seq async for e in bearer.subscribe("r1")] == [0, 1]
    assert len(transport.event_sources) == 1, "a token cannot ride an EventSource"
    assert seen[-1].headers["authorization"] == "Bearer t"

    assert not client_for(transport, event_source=False).uses_event_source()
    assert not Client("http://test/api", transport=stepstone.client.MockTransport(handler)).uses_event_source()


async def test_a_dropped_event_source_resumes_by_itself_with_last_event_id() -> None:
    """The first connection breaks mid-frame after seq 1; the browser reconnects on its own with
    Last-Event-ID: 1, and the server replays seq 1 (a duplicate to drop) before going on."""

    def handler(request: Request) -> MockStream | Response:
        if not is_stream(request):
            raise AssertionError(f"the client should not need {request.url}")
        seen.append(request)
        if len(seen) == 1:
            return MockStream(chunks=[frame(0, "run:start"), frame(1, "log:write"), "id: 2\nevent: log:wr"])
        return MockStream(chunks=[frame(1, "log:write"), frame(2, "log:write"), frame(3, "run:complete")])

    seen: list[Request] = []
    transport = MockEventSourceTransport(handler)
    events = [e async for e in client_for(transport).subscribe("r1")]
    assert [e.seq for e in events] == [0, 1, 2, 3] and events[-1].is_terminal
    assert len(transport.event_sources) == 1, "the EventSource reconnected by itself"
    assert "last-event-id" not in seen[0].headers and seen[1].headers["last-event-id"] == "1"
    assert seen[0].url == seen[1].url == "http://test/api/subscribe?runId=r1&from=0"
    assert transport.event_sources[0].closed


async def test_a_refused_reconnect_is_reopened_from_the_next_seq() -> None:
    """A restarting server answers the EventSource's reconnect with 503: the browser gives up on it,
    the client asks whether the run goes on and opens a new one from the next seq."""

    def handler(request: Request) -> MockStream | Response:
        if "/run?" in request.url:
            return Response(200, {}, json.dumps(RUN).encode())
        seen.append(request)
        if len(seen) == 1:
            return MockStream(chunks=[frame(0, "run:start"), frame(1, "log:write")])
        if len(seen) == 2:
            return error(503, "shutting_down", "stopping")
        return MockStream(chunks=[frame(2, "log:write"), frame(3, "run:complete")])

    seen: list[Request] = []
    transport = MockEventSourceTransport(handler)
    assert [e.seq async for e in client_for(transport).subscribe("r1")] == [0, 1, 2, 3]
    assert len(transport.event_sources) == 2
    assert seen[2].url.endswith("from=2") and "last-event-id" not in seen[2].headers
    assert any("/run?runId=r1" in r.url for r in transport.requests)


@pytest.mark.parametrize(
    ("answer", "exc", "text"),
    [
        (error(404, "run_not_found", "no run 'r1'"), stepstone.RunNotFound, "no run 'r1'"),
        (error(401, "unauthorized", "log in"), stepstone.Unauthorized, "not authorized (401): log in"),
        (Response(404, {}, b"<html>nothing here</html>"), stepstone.ServerError, "is the api_url right?"),
    ],
)
async def test_an_event_source_refused_at_once_raises_what_the_fetch_path_raises(
    answer: Response, exc: type[Exception], text: str
) -> None:
    transport = MockEventSourceTransport(lambda request: answer)
    with pytest.raises(exc) as info:
        async for _ in client_for(transport).subscribe("r1"):
            pass
    assert text in str(info.value)
    assert transport.event_sources == []


async def test_503_then_up_retries_within_the_budget() -> None:
    def handler(request: Request) -> MockStream | Response:
        calls.append(request.url)
        if len(calls) < 3:
            return error(503, "unavailable", "starting")
        return MockStream(chunks=[frame(0, "run:start"), frame(1, "run:fail")])

    calls: list[str] = []
    transport = MockEventSourceTransport(handler)
    assert [e.seq async for e in client_for(transport, reconnect_timeout=5).subscribe("r1")] == [0, 1]
    assert len(calls) == 3


async def test_an_event_source_lost_longer_than_reconnect_timeout_gives_up_clearly() -> None:
    def handler(request: Request) -> MockStream:
        calls.append(request)
        if len(calls) == 1:
            return MockStream(chunks=[frame(0, "run:start")])
        raise stepstone.ServerUnavailable("cannot reach the stepstone server at http://test/api: refused")

    calls: list[Request] = []
    transport = MockEventSourceTransport(handler, reconnect_delay=0.02)
    client = client_for(transport, reconnect_timeout=0.3)
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(stepstone.ServerUnavailable, match=r"did not come back within 0\.3 s"):
        async for event in client.subscribe("r1"):
            seen.append(event.seq)
    assert seen == [0]
    assert 0.3 <= loop.time() - started < 3
    assert all(source.closed for source in transport.event_sources)


async def test_an_event_type_the_event_source_does_not_hear_falls_back_to_fetch() -> None:
    """A newer server writes a type this client does not listen for: the EventSource never sees it,
    so seq 1 is missing; the client switches to the streaming GET, which sees every event."""

    def handler(request: Request) -> MockStream:
        return MockStream(chunks=[frame(0, "run:start"), frame(1, "step:brand-new"), frame(2, "run:complete")])

    transport = MockEventSourceTransport(handler)
    events = [(e.seq, e.type) async for e in client_for(transport).subscribe("r1")]
    assert events == [(0, "run:start"), (1, "step:brand-new"), (2, "run:complete")]
    assert len(transport.event_sources) == 1


async def test_a_silent_event_source_is_reopened_after_idle_timeout() -> None:
    async def quiet() -> AsyncIterator[str]:
        yield frame(0, "run:start")
        await asyncio.sleep(30)

    def handler(request: Request) -> MockStream:
        calls.append(request.url)
        if len(calls) == 1:
            return MockStream(chunks=quiet())
        return MockStream(chunks=[frame(1, "run:complete")])

    calls: list[str] = []
    transport = MockEventSourceTransport(handler)
    events = [e.seq async for e in client_for(transport, idle_timeout=0.2).subscribe("r1")]
    assert events == [0, 1] and calls[1].endswith("from=1") and len(transport.event_sources) == 2


async def test_subscribe_runs_reads_the_feed_position_first_and_resumes_natively() -> None:
    def handler(request: Request) -> MockStream | Response:
        seen.append(request)
        if "/runs?" in request.url:
            return Response(200, {}, json.dumps({"runs": [], "total": 0, "version": 41}).encode())
        if len([r for r in seen if is_stream(r)]) == 1:
            return MockStream(chunks=[change(42), change(43)])
        return MockStream(chunks=[change(43), change(44, status="completed")])

    seen: list[Request] = []
    transport = MockEventSourceTransport(handler)
    changes = []
    async for item in client_for(transport).subscribe_runs(job_name="steps"):
        changes.append(item.version)
        if len(changes) == 3:
            break
    assert changes == [42, 43, 44]
    assert seen[0].url == "http://test/api/runs?jobName=steps&limit=0&offset=0"
    streams = [r for r in seen if is_stream(r)]
    assert streams[0].url == "http://test/api/runs/subscribe?from=41&jobName=steps"
    assert streams[1].headers["last-event-id"] == "43" and len(transport.event_sources) == 1


async def test_subscribe_runs_refused_with_401_raises() -> None:
    def handler(request: Request) -> Response:
        return error(401, "unauthorized", "log in")

    with pytest.raises(stepstone.Unauthorized):
        async for _ in client_for(MockEventSourceTransport(handler)).subscribe_runs():
            pass


async def test_wait_follows_over_the_event_source() -> None:
    def handler(request: Request) -> MockStream | Response:
        if "/run?" in request.url:
            done = sum(1 for r in transport.requests if is_stream(r)) > 0
            return Response(200, {}, json.dumps({**RUN, "status": "completed" if done else "running"}).encode())
        return MockStream(chunks=[frame(2, "log:write"), frame(3, "run:complete")])

    transport = MockEventSourceTransport(handler)
    run = await client_for(transport).wait("r1", timeout=5)
    assert run.status == "completed" and len(transport.event_sources) == 1
    assert transport.event_sources[0].closed
