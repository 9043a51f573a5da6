"""Worker mode's protocol in CPython (no browser): a page-side ``RpcSource`` drives an engine
through an ``RpcServer`` over a loopback that passes JSON text one event-loop turn later, as
``postMessage`` does. The whole hooks suite (tests/hooks, written for an Engine and a Client) runs
unchanged on it; values and errors come back as the same models and stepstone exceptions."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import stepstone
from stepstone import _errors
from stepstone.browser._rpc import RpcServer, RpcSource, decode_error, encode_error
from stepstone.hooks import Source
from tests.hooks import test_step_views, test_use_job, test_use_job_run, test_use_runs
from tests.hooks.conftest import make_engine
from tests.hooks.jobs import approval, double, fan_out

pytestmark = pytest.mark.timeout(60)


class Loopback:
    """A page and a worker in one process: each side's text reaches the other a loop turn later."""

    def __init__(self, engine: Any, info: dict[str, Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.sent: list[dict[str, Any]] = []
        self.source = RpcSource(self._to_worker, name="the loopback worker")
        self.server = RpcServer(engine, lambda client, text: loop.call_soon(self.source.receive, text), info)

    def _to_worker(self, text: str) -> None:
        self.sent.append(json.loads(text))
        asyncio.get_running_loop().call_soon(self.server.handle, "page", text)


@pytest.fixture
async def engine() -> AsyncIterator[stepstone.Engine]:
    engine = make_engine()
    for job in (approval, fan_out, double):
        engine.register(job)
    async with engine:
        yield engine


@pytest.fixture
async def wire(engine: stepstone.Engine) -> AsyncIterator[Loopback]:
    wire = Loopback(engine, {"owner": engine.owner})
    await wire.source.connect(timeout=5)
    yield wire
    await wire.server.aclose()


def _hook_tests() -> Iterator[Any]:
    for module in (test_use_job, test_use_job_run, test_use_runs, test_step_views):
        for name, fn in sorted(vars(module).items()):
            if name.startswith("test_") and "source" in inspect.signature(fn).parameters:
                yield pytest.param(fn, id=f"{module.__name__.rsplit('.', 1)[-1]}::{name}")


@pytest.mark.parametrize("hook_test", list(_hook_tests()))
async def test_the_hooks_suite_runs_unchanged_on_the_worker_protocol(
    hook_test: Callable[..., Any], wire: Loopback, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    available = {"source": wire.source, "gate": gate, "tmp_path": tmp_path}
    try:
        await hook_test(**{name: available[name] for name in inspect.signature(hook_test).parameters})
    finally:
        gate.touch()  # no run is left waiting for a gate


async def test_values_come_back_as_the_engine_gives_them(engine: stepstone.Engine, wire: Loopback) -> None:
    source = wire.source
    assert wire.source.info["owner"] == engine.owner and wire.source.info["protocol"] == 1
    assert await source.describe() == wire.source.info == wire.server.info
    assert isinstance(source, Source), "the hooks' Source protocol"
    made = await source.trigger("steps", {"steps": 2}, labels={"team": "a"}, idempotency_key="k1")
    assert isinstance(made, stepstone.TriggerResult) and made.created
    again = await source.trigger("steps", {"steps": 2}, idempotency_key="k1")
    assert again.id == made.id and not again.created
    done = await source.wait(made.id, timeout=10)
    assert done == await engine.get_run(made.id), "every field, the lease ones included"
    page = await source.get_runs(job_name="steps", status=["completed"], labels={"team": "a"})
    direct = await engine.get_runs(job_name="steps", status=["completed"], labels={"team": "a"})
    assert list(page) == list(direct) and (page.total, page.version) == (direct.total, direct.version)
    assert await source.get_steps(made.id) == await engine.get_steps(made.id)
    assert [e async for e in source.subscribe(made.id)] == [e async for e in engine.subscribe(made.id)]
    assert await source.get_run("nope") is None


async def test_child_runs_events_and_run_changes_cross_the_wire(engine: stepstone.Engine, wire: Loopback) -> None:
    source = wire.source
    version = (await source.get_runs(limit=0)).version
    parent = await source.trigger("fan-out", 3)
    assert (await source.wait(parent.id, timeout=10)).output == [0, 2, 4]
    children = await source.get_runs(parent_id=parent.id)
    assert children.total == 3 and {c.parent_id for c in children} == {parent.id}
    waiting = await source.trigger("approval", {})
    while (await source.get_run(waiting.id)).status != "suspended":  # type: ignore[union-attr]
        await asyncio.sleep(0.01)
    await source.send_event(waiting.id, "approval", {"by": "ann"})
    assert (await source.wait(waiting.id, timeout=10)).output == {"approved": True, "data": {"by": "ann"}}
    changes: list[stepstone.RunChange] = []
    async for change in source.subscribe_runs(from_version=version):
        changes.append(change)
        if change.run_id == waiting.id and change.run is not None and change.run.status == "completed":
            break
    assert {c.run_id for c in changes} >= {parent.id, waiting.id, *(c.id for c in children)}
    assert all(isinstance(c.run, stepstone.Run) for c in changes)
    await source.delete_run(parent.id)
    gone = [c async for c in _take(source.subscribe_runs(from_version=changes[-1].version), 1)]
    assert gone[0].run_id == parent.id and gone[0].run is None


async def _take(stream: AsyncIterator[Any], n: int) -> AsyncIterator[Any]:
    async for item in stream:
        yield item
        n -= 1
        if n == 0:
            return


async def test_errors_are_raised_as_the_same_stepstone_exceptions(engine: stepstone.Engine, wire: Loopback) -> None:
    source = wire.source
    cases: list[tuple[Any, type[BaseException]]] = [
        (source.get_steps("nope"), stepstone.RunNotFound),
        (source.trigger("needs-name", {"x": 1}), stepstone.InvalidInput),
        (source.trigger("no-such-job"), stepstone.JobNotFound),
        (source.cancel("nope"), stepstone.RunNotFound),
        (source.get_runs(status="done"), ValueError),  # type: ignore[arg-type]
        (source.send_event("nope", "x"), stepstone.RunNotFound),
        (source.trigger("steps", {"bad": {1, 2}}), stepstone.InvalidInput),  # not JSON: refused on the page
    ]
    for call, expected in cases:
        with pytest.raises(expected) as info:
            await call
        assert type(info.value) is expected, info.value
    run = await source.trigger("steps", {"steps": 1})
    await source.wait(run.id, timeout=10)
    with pytest.raises(stepstone.InvalidRunState, match="only failed or cancelled runs can be retried"):
        await source.retry(run.id)
    parked = await source.trigger("approval", {})
    with pytest.raises(stepstone.WaitTimeout) as timeout:
        await source.wait(parked.id, timeout=0.05)
    assert isinstance(timeout.value, TimeoutError), "still a TimeoutError, as the engine's is"
    with pytest.raises(stepstone.RunNotFound):
        async for _ in source.subscribe("nope"):
            pass


_ARGS: dict[str, tuple[Any, ...]] = {
    "ChildRunFailed": ("child failed", "c1", "ValueError: x"),
    "StepFailed": ("step failed", "s1", "boom"),
    "HTTPError": (418, "teapot", "short and stout"),
    "ServerError": ("oops", 502, "bad_gateway"),
    "StreamClosedError": ("closed", "0_10"),
    "ProducerSeqGap": ("gap", 3, 5),
    "ProducerFenced": ("fenced", 7),
    "StreamHTTPError": ("teapot", 418),
}


def _samples() -> list[BaseException]:
    return [getattr(_errors, name)(*_ARGS.get(name, (f"a {name}",))) for name in _errors.__all__]


@pytest.mark.parametrize("exc", _samples(), ids=lambda e: type(e).__name__)
def test_every_stepstone_error_round_trips(exc: BaseException) -> None:
    back = decode_error(json.loads(json.dumps(encode_error(exc))))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert {k: v for k, v in vars(back).items()} == {k: v for k, v in vars(exc).items()}
    assert getattr(back, "code", None) == getattr(exc, "code", None)


def test_a_subclass_comes_back_as_its_stepstone_base_and_others_by_name() -> None:
    class MyStoreError(stepstone.StoreError):
        code = "mine"

    assert type(decode_error(encode_error(MyStoreError("disk full")))) is stepstone.StoreError
    assert type(decode_error(encode_error(KeyError("k")))) is KeyError
    odd = decode_error(encode_error(type("Weird", (Exception,), {})("strange")))
    assert type(odd) is RuntimeError and str(odd) == "Weird: strange"


async def test_a_stream_closed_early_stops_on_the_engine_side(wire: Loopback) -> None:
    run = await wire.source.trigger("steps", {"steps": 2})
    async for event in wire.source.subscribe(run.id):
        assert event.seq == 0
        break
    for _ in range(5):
        await asyncio.sleep(0)
    assert {"k": "close", "id": wire.sent[-1]["id"]} == wire.sent[-1]
    assert not wire.server.clients(), "the engine side stopped the stream"


async def test_a_lost_worker_fails_every_call_and_stream(wire: Loopback) -> None:
    parked = await wire.source.trigger("approval", {})
    waiting = asyncio.ensure_future(wire.source.wait(parked.id))
    stream = wire.source.subscribe(parked.id)
    first = await stream.__anext__()
    assert first.seq == 0
    await asyncio.sleep(0.05)
    wire.source.fail(stepstone.ServerUnavailable("the worker went away"))
    with pytest.raises(stepstone.ServerUnavailable, match="went away"):
        await waiting
    with pytest.raises(stepstone.ServerUnavailable):
        async for _ in stream:
            pass
    with pytest.raises(stepstone.ServerUnavailable):
        await wire.source.get_run(parked.id)


async def test_a_stopped_server_says_so(engine: stepstone.Engine, wire: Loopback) -> None:
    await wire.server.aclose()
    with pytest.raises(stepstone.EngineNotStarted, match="stopped"):
        await wire.source.get_runs()
