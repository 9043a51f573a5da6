"""The stream server beyond the conformance suite: durability across a SIGKILL, the run-log stream,
``create_streams_app`` options (authorize, body limit, standalone lifespan), JSON errors, CORS,
and freeing a live read's resources when its client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

import stepstone
from stepstone.server import HTTPError
from stepstone.server.streams import create_streams_app
from stepstone.streams import DurableStream, IdempotentProducer
from tests.streams.helpers import StreamServer
from tests.support.serve import serve_app

_names = itertools.count()


def _uvicorn(app: Any) -> contextlib.AbstractAsyncContextManager[str]:
    """A real uvicorn on 127.0.0.1 in this event loop; yields the stream root URL."""
    return serve_app(app, lifespan="on", log_level="warning")


async def test_streams_and_producer_state_survive_a_sigkill(tmp_path: Path) -> None:
    srv = StreamServer(tmp_path / "durable.db").start()
    try:
        url = srv.stream_url("orders")
        async with await DurableStream.create(url, content_type="application/json") as stream:
            producer = IdempotentProducer(stream, "ingest", linger=0)
            for i in range(50):
                producer.append(i)
            await producer.flush()
            last_seq = producer.next_seq - 1
            await DurableStream.create(
                srv.stream_url("fork"), content_type="application/json", transport=stream.transport
            )
            async with httpx.AsyncClient() as http:
                put = await http.put(srv.stream_url("branch"), headers={"Stream-Forked-From": "/v1/stream/orders"})
                assert put.status_code == 201
            srv.kill()
            srv.start()
            assert (await stream.read_all()).json() == list(range(50))
            async with httpx.AsyncClient() as http:
                retry = await http.post(
                    url,
                    content=b"[999]",
                    headers={
                        "content-type": "application/json",
                        "producer-id": "ingest",
                        "producer-epoch": "0",
                        "producer-seq": str(last_seq),
                    },
                )
                assert retry.status_code == 204  # the retried batch is recognised after the restart
                assert (await http.get(srv.stream_url("branch"))).json() == list(range(50))
            await stream.close()
            srv.kill()
            srv.start()
            meta = await stream.head()
            assert meta.closed
            assert (await stream.read_all()).json() == list(range(50))
    finally:
        srv.kill()


async def _raw_posts(port: int, posts: list[tuple[str, bytes, dict[str, str]]]) -> list[tuple[int, str]]:
    """Send every POST on its own connection before reading any answer (so the server finds them
    all ready at once); returns (status, Stream-Next-Offset) per POST."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in posts]
    for (_, writer), (path, body, headers) in zip(conns, posts, strict=True):
        head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "content-length": str(len(body))}.items())
        writer.write(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}\r\n".encode() + body)
    out = []
    for reader, writer in conns:
        lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        out.append((int(lines[0].split()[1]), fields.get("stream-next-offset", "")))
        writer.close()
    return out


async def test_concurrent_appends_are_each_acknowledged_durably_and_refusals_stay_alone(tmp_path: Path) -> None:
    # Appends arriving together share SQLite transactions (group commit): each acknowledged append
    # must survive a SIGKILL at its acknowledged offset, and a refused append in the same
    # transaction must neither be stored nor spoil its neighbours.
    srv = StreamServer(tmp_path / "group.db").start()
    json_type = {"content-type": "application/json"}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for name in ("g0", "g1", "g2"):
                assert (await http.put(srv.stream_url(name), headers=json_type)).status_code == 201
        appends = [(f"g{i % 3}", i) for i in range(60)]
        posts = [(f"/v1/stream/{name}", f"[{i}]".encode(), json_type) for name, i in appends]
        refused = [
            ("/v1/stream/g0", b"x", {"content-type": "text/plain"}),
            ("/v1/stream/missing", b"[1]", json_type),
            ("/v1/stream/g1", b"[not json", json_type),
            ("/v1/stream/g2", b"[-1]", {**json_type, "producer-id": "p", "producer-epoch": "0", "producer-seq": "5"}),
        ]
        answers = await _raw_posts(srv.port, posts[:30] + refused + posts[30:])
        acked = answers[:30] + answers[34:]
        assert [status for status, _ in acked] == [204] * len(appends)
        assert [status for status, _ in answers[30:34]] == [409, 404, 400, 409]
        srv.kill()
        srv.start()
        async with httpx.AsyncClient(timeout=10) as http:
            for name in ("g0", "g1", "g2"):
                mine = sorted((off, i) for (n, i), (_, off) in zip(appends, acked, strict=True) if n == name)
                assert len({offset for offset, _ in mine}) == 20  # each append got its own offset
                assert (await http.get(srv.stream_url(name) + "?offset=-1")).json() == [i for _, i in mine]
    finally:
        srv.kill()


async def test_a_run_log_long_poll_wakes_on_new_events(tmp_path: Path) -> None:
    engine = stepstone.create_engine("memory:", polling_interval=0.05)
    engine.register(stepstone.define_job("slow", _slow_job))
    app = create_streams_app(engine, long_poll_timeout=5)
    async with _uvicorn(app) as root, httpx.AsyncClient() as http:
        run = await engine.trigger("slow", {"n": 3})
        url = f"{root}/runs/{run.id}"
        offset = "-1"
        types: list[str] = []
        while "run:complete" not in types:
            res = await http.get(url, params={"offset": offset, "live": "long-poll"}, timeout=10)
            assert res.status_code in (200, 204)
            if res.status_code == 200:
                types += [e["type"] for e in res.json()]
                assert res.headers.get("stream-cursor") or res.headers.get("stream-closed") == "true"
            offset = res.headers["stream-next-offset"]
        assert types.count("log:write") == 3
        done = await http.get(url, params={"offset": offset, "live": "long-poll"})
        assert done.status_code == 204 and done.headers["stream-closed"] == "true"
        missing = await http.get(f"{root}/runs/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "stream_not_found"
        for method in ("PUT", "POST", "DELETE"):
            refused = await http.request(method, url, content=b"[1]", headers={"content-type": "application/json"})
            assert refused.status_code == 405 and refused.json()["error"]["code"] == "read_only_stream"


async def _slow_job(step: stepstone.Step, payload: Any) -> None:
    for i in range(payload["n"]):
        await asyncio.sleep(0.1)
        step.log.info("tick", i=i)


async def test_authorize_guards_every_stream_request() -> None:
    engine = stepstone.create_engine("memory:", worker=False)

    def authorize(request: Any) -> bool:
        token = request.headers.get("authorization")
        if token is None:
            raise HTTPError(401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        return bool(token == "Bearer ok")

    async with _uvicorn(create_streams_app(engine, authorize=authorize)) as root, httpx.AsyncClient() as http:
        anonymous = await http.put(f"{root}/s", headers={"content-type": "text/plain"})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.json()["error"]["code"] == "unauthorized"
        wrong = await http.get(f"{root}/s", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 403
        good = await http.put(f"{root}/s", headers={"content-type": "text/plain", "authorization": "Bearer ok"})
        assert good.status_code == 201
        assert (await http.options(f"{root}/s")).status_code == 204  # preflights carry no credentials


async def test_bodies_over_max_body_are_refused_with_413_and_nothing_stored() -> None:
    engine = stepstone.create_engine("memory:", worker=False)
    async with _uvicorn(create_streams_app(engine, max_body=1000)) as root, httpx.AsyncClient() as http:
        assert (await http.put(f"{root}/b", headers={"content-type": "text/plain"})).status_code == 201
        big = await http.post(f"{root}/b", content=b"x" * 1001, headers={"content-type": "text/plain"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        assert big.headers["x-content-type-options"] == "nosniff"
        assert (await http.get(f"{root}/b")).content == b""


async def test_errors_are_json_with_protocol_headers_and_cors_allows_the_protocol() -> None:
    engine = stepstone.create_engine("memory:", worker=False)
    async with _uvicorn(create_streams_app(engine)) as root, httpx.AsyncClient() as http:
        await http.put(f"{root}/e", headers={"content-type": "text/plain"})
        bad = await http.get(f"{root}/e", params={"offset": "nope"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        assert bad.headers["cross-origin-resource-policy"] == "cross-origin"
        await http.post(f"{root}/e", content=b"", headers={"stream-closed": "TRUE"})  # case-insensitive
        closed = await http.post(f"{root}/e", content=b"x", headers={"content-type": "text/plain"})
        assert closed.status_code == 409 and closed.headers["stream-closed"] == "true"
        assert closed.json()["error"]["code"] == "stream_closed"
        preflight = await http.options(
            f"{root}/e",
            headers={"origin": "http://example.test", "access-control-request-method": "POST"},
        )
        allowed = preflight.headers["access-control-allow-headers"].lower()
        for header in ("if-none-match", "producer-id", "stream-seq", "stream-closed", "stream-forked-from"):
            assert header in allowed
        assert "stream-next-offset" in preflight.headers["access-control-expose-headers"].lower()
        assert (await http.request("PATCH", f"{root}/e")).status_code == 405


async def test_a_departed_live_reader_frees_its_wait_at_once() -> None:
    store = stepstone.MemoryStore()
    engine = stepstone.create_engine(store, worker=False)
    async with _uvicorn(create_streams_app(engine, long_poll_timeout=30)) as root, httpx.AsyncClient() as http:
        await http.put(f"{root}/w", headers={"content-type": "text/plain"})
        for live in ("sse", "long-poll"):

            async def read(live: str = live) -> None:
                async with http.stream("GET", f"{root}/w", params={"offset": "now", "live": live}) as res:
                    async for _ in res.aiter_bytes():
                        pass

            task = asyncio.ensure_future(read())
            for _ in range(100):
                if store._hub._waiters:
                    break
                await asyncio.sleep(0.02)
            assert store._hub._waiters, "the live read never started waiting"
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for _ in range(100):
                if not store._hub._waiters:
                    break
                await asyncio.sleep(0.02)
            assert not store._hub._waiters, f"a {live} read kept waiting after its client left"


@pytest.mark.parametrize("store_url", ["memory:", "sqlite"])
async def test_a_standalone_app_starts_and_stops_its_engine(tmp_path: Path, store_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'alone.db'}" if store_url == "sqlite" else store_url
    engine = stepstone.create_engine(url, worker=False)
    async with _uvicorn(create_streams_app(engine)) as root:
        assert engine._started
        async with await DurableStream.create(f"{root}/x", content_type="text/plain", data="hi") as stream:
            assert (await stream.read()).text() == "hi"
    assert not engine._started


async def test_bad_edges_are_clear_4xx_that_leak_no_path_and_store_nothing(tmp_path: Path) -> None:
    engine = stepstone.create_engine(f"sqlite:///{tmp_path / 'edges.db'}", worker=False)
    json_type = {"content-type": "application/json"}
    async with _uvicorn(create_streams_app(engine)) as root, httpx.AsyncClient() as http:
        assert (await http.put(f"{root}/j", headers=json_type)).status_code == 201
        # Nested past the JSON parser's recursion limit (today: 503 naming the database file).
        # A good append committed in the same tick must not go down with it.
        deep, good = await asyncio.gather(
            http.post(f"{root}/j", content=b"[" * 2000 + b"]" * 2000, headers=json_type),
            http.post(f"{root}/j", content=b'{"ok": 1}', headers=json_type),
        )
        assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_request", deep.text
        assert str(tmp_path) not in deep.text
        assert good.status_code == 204, good.text
        assert (await http.get(f"{root}/j", params={"offset": "-1"})).json() == [{"ok": 1}]
        nested_ok = await http.post(f"{root}/j", content=b"[" * 300 + b"]" * 300, headers=json_type)
        assert nested_ok.status_code == 204, nested_ok.text
        # A TTL too large for any clock (today: 500, an OverflowError in the store)
        for ttl in ("1" + "0" * 23, "1e23", str(2**63)):
            refused = await http.put(f"{root}/t", headers={"content-type": "text/plain", "stream-ttl": ttl})
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request", ttl
        assert (await http.head(f"{root}/t")).status_code == 404
        # An unknown live mode (today: a plain catch-up read, 200)
        bogus = await http.get(f"{root}/j", params={"offset": "-1", "live": "bogus"})
        assert bogus.status_code == 400 and bogus.json()["error"]["code"] == "invalid_request"


async def test_a_failing_store_answers_503_with_a_generic_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = stepstone.create_engine(f"sqlite:///{tmp_path / 'failing.db'}", worker=False)
    async with _uvicorn(create_streams_app(engine)) as root, httpx.AsyncClient() as http:
        assert (await http.put(f"{root}/f", headers={"content-type": "text/plain"})).status_code == 201

        async def disk_full(*args: Any) -> Any:
            raise stepstone.StoreError(f"sqlite append to {str(tmp_path / 'failing.db')!r} failed: disk I/O error")

        monkeypatch.setattr(engine.store, "stream_append", disk_full)
        with caplog.at_level("ERROR", logger="stepstone.server.streams"):
            failed = await http.post(f"{root}/f", content=b"x", headers={"content-type": "text/plain"})
        assert failed.status_code == 503 and failed.headers["retry-after"] == "1"
        assert failed.json()["error"]["code"] == "store_error"
        assert str(tmp_path) not in failed.text and "disk I/O" not in failed.text
        assert "disk I/O error" in caplog.text  # the detail is logged for the operator
