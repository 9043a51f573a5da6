"""Bad input gets a named exception with a clear message, and the store is left unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import stepstone
from stepstone import Engine


@dataclasses.dataclass
class Order:
    order_id: str
    amount: int


class FakeModel:
    """Anything with model_validate works, so pydantic does without being required."""

    def __init__(self, value: int) -> None:
        self.value = value

    @classmethod
    def model_validate(cls, data: Any) -> FakeModel:
        if not isinstance(data, dict) or not isinstance(data.get("value"), int):
            raise ValueError("value must be an int")
        return cls(data["value"])

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"value": self.value}


def positive(payload: Any) -> Any:
    if not isinstance(payload, int) or payload <= 0:
        raise ValueError("must be a positive int")
    return payload


async def snapshot(engine: Engine) -> list[Any]:
    runs = await engine.get_runs(limit=1000)
    return [(r.id, r.status, r.last_seq, r.attempt) for r in runs]


@pytest.fixture
async def ready(engine: Engine) -> Engine:
    async def echo(step: stepstone.Step, payload: Any) -> Any:
        return {"type": type(payload).__name__}

    async def model_job(step: stepstone.Step, payload: FakeModel) -> Any:
        return FakeModel(payload.value * 2)

    engine.register(stepstone.define_job("order", echo, input=Order))
    engine.register(stepstone.define_job("positive", echo, input=positive))
    engine.register(stepstone.define_job("model", model_job, input=FakeModel, output=FakeModel))
    await engine.init()
    done = await engine.trigger("positive", 5)
    await engine.wait(done.id, timeout=5)
    return engine


async def test_validators_pass_typed_values(ready: Engine) -> None:
    run = await ready.trigger("order", {"order_id": "o1", "amount": 3})
    assert (await ready.wait(run.id, timeout=5)).output == {"type": "Order"}
    run = await ready.trigger("model", {"value": 21})
    assert (await ready.wait(run.id, timeout=5)).output == {"value": 42}


@pytest.mark.parametrize(
    ("job", "payload", "error", "message"),
    [
        ("nope", {}, stepstone.JobNotFound, "no job named 'nope' is registered"),
        ("order", {"order_id": "o1"}, stepstone.InvalidInput, "input rejected by job 'order'"),
        ("order", {"order_id": "o1", "amount": "3"}, stepstone.InvalidInput, "Order.amount must be int"),
        ("order", {"order_id": "o1", "amount": 3, "x": 1}, stepstone.InvalidInput, "unknown field"),
        ("order", [1], stepstone.InvalidInput, "expected a JSON object"),
        ("positive", -1, stepstone.InvalidInput, "must be a positive int"),
        ("model", {"value": "x"}, stepstone.InvalidInput, "value must be an int"),
        ("positive", {1, 2}, stepstone.InvalidInput, "not JSON-serialisable"),
        ("positive", float("nan"), stepstone.InvalidInput, "not JSON-serialisable"),
    ],
)
async def test_bad_trigger_input(ready: Engine, job: str, payload: Any, error: type[Exception], message: str) -> None:
    before = await snapshot(ready)
    with pytest.raises(error, match=message):
        await ready.trigger(job, payload)
    assert await snapshot(ready) == before


async def test_bad_keys_and_labels(ready: Engine) -> None:
    before = await snapshot(ready)
    with pytest.raises(stepstone.InvalidInput, match="labels"):
        await ready.trigger("positive", 1, labels={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(stepstone.InvalidInput, match="idempotency_key"):
        await ready.trigger("positive", 1, idempotency_key="")
    assert await snapshot(ready) == before


async def test_retry_of_a_completed_run(ready: Engine) -> None:
    run = (await ready.get_runs(status="completed"))[0]
    before = await snapshot(ready)
    with pytest.raises(stepstone.InvalidRunState, match="only failed or cancelled runs can be retried"):
        await ready.retry(run.id)
    with pytest.raises(stepstone.InvalidRunState, match="already completed"):
        await ready.cancel(run.id)
    assert await snapshot(ready) == before


async def test_unknown_run_ids(ready: Engine) -> None:
    before = await snapshot(ready)
    for call in (ready.cancel, ready.retry, ready.delete_run, ready.get_steps):
        with pytest.raises(stepstone.RunNotFound, match="no run with id 'missing'"):
            await call("missing")
    with pytest.raises(stepstone.RunNotFound):
        await ready.wait("missing", timeout=1)
    with pytest.raises(stepstone.RunNotFound):
        [e async for e in ready.subscribe("missing")]
    assert await ready.get_run("missing") is None
    assert await snapshot(ready) == before


async def test_duplicate_job_registration(ready: Engine) -> None:
    async def other(step: stepstone.Step, payload: Any) -> None:
        return None

    with pytest.raises(stepstone.DuplicateJob):
        ready.register(stepstone.define_job("order", other))
    with pytest.raises(TypeError, match="register"):
        ready.register(other)  # type: ignore[arg-type]
