"""The two SSE endpoints: framing, headers, resume by ``from`` and ``Last-Event-ID``, keep-alives,
the end of a run's stream, and errors before any stream starts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from stepstone._sse import SSEParser

from .conftest import Server, get, post, sse, wait_status
from .test_api import assert_error


def finished_run(server: Server, steps: int = 3) -> str:
    run_id: str = post(server, "/trigger", json={"jobName": "steps", "input": {"steps": steps, "delay": 0}}
                       ).json()["runId"]
    wait_status(server, run_id, {"completed"})
    return run_id


async def collect(server: Server, params: dict[str, object], headers: dict[str, str] | None = None) -> list[dict]:
    async with httpx.AsyncClient() as client:
        out = []
        async for message in sse(client, server.api + "/subscribe", params, headers):
            event = json.loads(message.data)
            assert message.id == str(event["seq"]) and message.event == event["type"]
            out.append(event)
        return out


async def test_subscribe_replays_a_finished_run_and_ends_after_the_terminal_event(api_server: Server) -> None:
    run_id = finished_run(api_server)
    events = await collect(api_server, {"runId": run_id})
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "run:trigger" and events[-1]["type"] == "run:complete"
    assert events[-1]["seq"] == get(api_server, "/run", params={"runId": run_id}).json()["lastSeq"]
    assert {e["runId"] for e in events} == {run_id}
    assert [e["data"]["name"] for e in events if e["type"] == "step:complete"] == ["step-1", "step-2", "step-3"]


async def test_subscribe_sends_sse_headers(api_server: Server) -> None:
    run_id = finished_run(api_server, 1)
    async with httpx.AsyncClient() as client, client.stream(
        "GET", api_server.api + "/subscribe", params={"runId": run_id}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = await response.aread()
    assert raw.startswith(b"id: 0\nevent: run:trigger\ndata: {")


async def test_subscribe_from_and_last_event_id(api_server: Server) -> None:
    run_id = finished_run(api_server)
    full = await collect(api_server, {"runId": run_id})
    from_5 = await collect(api_server, {"runId": run_id, "from": 5})
    assert from_5 == full[5:]
    # Last-Event-ID: n resumes at n + 1 and wins over ?from=
    resumed = await collect(api_server, {"runId": run_id, "from": 1}, {"Last-Event-ID": "7"})
    assert resumed == full[8:]
    past_end = await collect(api_server, {"runId": run_id, "from": 10_000})
    assert past_end == []


async def test_subscribe_tails_a_live_run_with_no_gap_or_duplicate(api_server: Server) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "steps", "input": {"steps": 6, "delay": 0.05}}
                  ).json()["runId"]
    live = await collect(api_server, {"runId": run_id})
    assert [e["seq"] for e in live] == list(range(len(live)))
    assert live[-1]["type"] == "run:complete"
    assert live == await collect(api_server, {"runId": run_id})


async def test_subscribe_streams_a_streaming_jobs_values(api_server: Server) -> None:
    run_id = post(api_server, "/trigger", json={"jobName": "tokens"}).json()["runId"]
    events = await collect(api_server, {"runId": run_id})
    assert [e["data"]["value"] for e in events if e["type"] == "stream"] == ["alpha", "beta", "gamma"]


async def test_subscribe_sends_keepalive_comments_while_idle(api_server: Server, tmp_path: Path) -> None:
    gate = tmp_path / "open"
    run_id = post(api_server, "/trigger", json={"jobName": "gate", "input": {"until": str(gate)}}).json()["runId"]
    raw = b""
    async with httpx.AsyncClient() as client, client.stream(
        "GET", api_server.api + "/subscribe", params={"runId": run_id}
    ) as response:
        started = time.monotonic()
        async for chunk in response.aiter_bytes():
            raw += chunk
            if raw.count(b": keep-alive\n\n") >= 2:
                break
            assert time.monotonic() - started < 5, raw
    gate.touch()
    assert SSEParser().feed(b": keep-alive\n\n") == []
    wait_status(api_server, run_id, {"completed"})


async def test_subscribe_errors_come_before_any_stream(api_server: Server) -> None:
    assert_error(get(api_server, "/subscribe"), 400, "bad_request")
    assert_error(get(api_server, "/subscribe", params={"runId": "nope"}), 404, "run_not_found")
    run_id = finished_run(api_server, 1)
    assert_error(get(api_server, "/subscribe", params={"runId": run_id, "from": "x"}), 400, "bad_request")
    assert_error(get(api_server, "/subscribe", params={"runId": run_id, "from": "-1"}), 400, "bad_request")
    assert_error(get(api_server, "/subscribe", params={"runId": run_id}, headers={"Last-Event-ID": "abc"}),
                 400, "bad_request")
    assert_error(get(api_server, "/runs/subscribe", headers={"Last-Event-ID": "1.5"}), 400, "bad_request")
    assert_error(get(api_server, "/runs/subscribe", params={"from": "soon"}), 400, "bad_request")
    # as the OpenAPI document types them: an empty value is not an integer, and a bad ?from= is
    # refused even when Last-Event-ID wins over it; more than 18 digits is out of range
    for params, headers in (
        ({"runId": run_id, "from": ""}, {}),
        ({"runId": run_id}, {"Last-Event-ID": ""}),
        ({"runId": run_id, "from": "-5"}, {"Last-Event-ID": "3"}),
        ({"runId": run_id, "from": "--5"}, {}),  # was a 500
        ({"runId": run_id, "from": "1" * 19}, {}),
    ):
        assert_error(get(api_server, "/subscribe", params=params, headers=headers), 400, "bad_request")
    assert_error(get(api_server, "/runs/subscribe", params={"from": "x"}, headers={"Last-Event-ID": "1"}),
                 400, "bad_request")
    assert_error(get(api_server, "/runs", params={"limit": ""}), 400, "bad_request")
    assert_error(get(api_server, "/runs", params={"status": "running, failed"}), 400, "bad_request")


async def _changes(server: Server, params: dict[str, object], headers: dict[str, str] | None, count: int,
                   first: list[str | None] | None = None, run_id: str | None = None) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    async with httpx.AsyncClient() as client:
        parser_ids: list[str | None] = []
        async with client.stream("GET", server.api + "/runs/subscribe", params=params, headers=headers,
                                 timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            parser = SSEParser()
            async for chunk in response.aiter_bytes():
                for message in parser.feed(chunk):
                    assert message.event == "run:change"
                    change = json.loads(message.data)
                    if run_id is None or change["runId"] == run_id:
                        out.append((message.id or "", change))
                parser_ids.append(parser.last_event_id)
                if len(out) >= count:
                    break
        if first is not None:
            first.extend(parser_ids[:1])
    return out


async def test_runs_subscribe_streams_changes_and_resumes(api_server: Server) -> None:
    first_id: list[str | None] = []
    task = asyncio.create_task(_changes(api_server, {"jobName": "echo"}, None, 3, first_id))
    await asyncio.sleep(0.3)  # connected: only changes from now on
    run_id = post(api_server, "/trigger", json={"jobName": "echo"}).json()["runId"]
    post(api_server, "/trigger", json={"jobName": "steps", "input": {"steps": 1, "delay": 0}})  # filtered out
    changes = await asyncio.wait_for(task, 10)
    assert first_id and first_id[0] is not None  # the id-only frame: the feed position on connect
    assert int(first_id[0]) < int(changes[0][0])
    assert all(c["run"]["jobName"] == "echo" and c["runId"] == run_id for _, c in changes)
    versions = [int(i) for i, _ in changes]
    assert versions == sorted(versions) and [c["version"] for _, c in changes] == versions
    assert changes[-1][1]["run"]["status"] in ("running", "completed")
    wait_status(api_server, run_id, {"completed"})

    # resume: Last-Event-ID wins over ?from=, both mean "changes after this version"
    after_first = await _changes(api_server, {"jobName": "echo", "from": 0}, {"Last-Event-ID": str(versions[0])}, 1)
    assert int(after_first[0][0]) > versions[0]
    from_query = await _changes(api_server, {"jobName": "echo", "from": versions[0]}, None, 1)
    assert from_query[0][0] == after_first[0][0]


async def test_runs_subscribe_reports_deletions(api_server: Server) -> None:
    run_id = finished_run(api_server, 1)
    task = asyncio.create_task(_changes(api_server, {}, None, 1, run_id=run_id))
    await asyncio.sleep(0.3)
    assert httpx.delete(api_server.api + "/run", params={"runId": run_id}).status_code == 200
    [(_, change)] = await asyncio.wait_for(task, 10)
    assert change["runId"] == run_id and change["run"] is None
