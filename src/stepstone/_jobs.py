"""Job definitions and input/output validation. Stdlib only.

A validator is any of: ``None``; an object with ``model_validate`` (pydantic models, without
pydantic being required); a dataclass type (the payload is a JSON object of its fields, and simple
field types are checked); or a callable that returns the value to use (``None`` keeps the value as
is) and raises to reject.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._cron import Cron, CronError
from ._retry import Backoff, check_retries
from ._util import unencodable

if TYPE_CHECKING:
    from ._step import Step

__all__ = ["Job", "JobFunction", "Validator", "define_job", "job", "to_jsonable", "validate"]

JobFunction = Callable[["Step", Any], Awaitable[Any]] | Callable[["Step", Any], AsyncIterator[Any]]
Validator = Any
F = TypeVar("F", bound=Callable[..., Any])

_SIMPLE: dict[Any, type | tuple[type, ...]] = {
    str: str,
    int: int,
    float: (int, float),
    bool: bool,
    list: list,
    dict: dict,
}


@dataclass(frozen=True)
class Job:
    """A named, versioned job definition. Create with :func:`job` or :func:`define_job`."""

    name: str
    run: JobFunction
    version: str = "1"
    input: Validator = None
    output: Validator = None
    retention: float | None = None
    #: Run-level retries: a failed run is re-queued ``retries`` more times, each from its first
    #: unfinished step, after ``backoff`` (see :func:`retry_delay`); then it stays ``failed``.
    retries: int = 0
    backoff: Backoff = 1.0
    #: A cron expression: the engine keeps a schedule named after the job that triggers it.
    schedule: str | None = None
    timezone: str = "UTC"

    @property
    def streaming(self) -> bool:
        """True when ``run`` is an async generator: each yielded value becomes a ``stream`` event."""
        return inspect.isasyncgenfunction(self.run)

    def __call__(self, step: Step, payload: Any) -> Any:
        return self.run(step, payload)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or unencodable(name) is not None:
        raise ValueError(f"a job name must be a non-empty string of valid Unicode text, not {name!r}")


def define_job(
    name: str,
    run: JobFunction,
    *,
    version: str = "1",
    input: Validator = None,
    output: Validator = None,
    retention: float | None = None,
    retries: int = 0,
    backoff: Backoff = 1.0,
    schedule: str | None = None,
    timezone: str = "UTC",
) -> Job:
    """Define a job from a function ``async def run(step, payload)`` (or an async generator).

    >>> async def hello(step, payload):
    ...     return {"hello": payload["name"]}
    >>> greet = define_job("greet", hello, version="2")
    """
    _check_name(name)
    if not (inspect.iscoroutinefunction(run) or inspect.isasyncgenfunction(run)):
        raise TypeError(f"job {name!r}: run must be an async function or async generator, not {run!r}")
    if unencodable(str(version)) is not None:
        raise ValueError(f"job {name!r}: the version must be valid Unicode text, not {version!r}")
    check_retries(f"job {name!r}", retries, backoff)
    if schedule is not None:
        try:
            Cron.parse(schedule, timezone)
        except CronError as exc:
            raise ValueError(f"job {name!r}: {exc}") from exc
    return Job(
        name=name,
        run=run,
        version=str(version),
        input=input,
        output=output,
        retention=retention,
        retries=retries,
        backoff=backoff,
        schedule=schedule,
        timezone=timezone,
    )


def job(
    name: str,
    *,
    version: str = "1",
    input: Validator = None,
    output: Validator = None,
    retention: float | None = None,
    retries: int = 0,
    backoff: Backoff = 1.0,
    schedule: str | None = None,
    timezone: str = "UTC",
) -> Callable[[JobFunction], Job]:
    """Decorator form of :func:`define_job`::

    @stepstone.job("sync-users", version="1")
    async def sync_users(step, payload): ...
    """
    _check_name(name)

    def wrap(fn: JobFunction) -> Job:
        return define_job(
            name,
            fn,
            version=version,
            input=input,
            output=output,
            retention=retention,
            retries=retries,
            backoff=backoff,
            schedule=schedule,
            timezone=timezone,
        )

    return wrap


def _check_field(cls: type, name: str, hint: Any, value: Any) -> None:
    origin = typing.get_origin(hint) or hint
    if origin is typing.Union or str(origin) == "types.UnionType":
        return
    expected = _SIMPLE.get(origin)
    if expected is None:
        return
    if origin is not bool and isinstance(value, bool):
        raise TypeError(f"{cls.__name__}.{name} must be {origin.__name__}, got bool")
    if not isinstance(value, expected):
        raise TypeError(f"{cls.__name__}.{name} must be {origin.__name__}, got {type(value).__name__}")


def _validate_dataclass(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(value).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise TypeError(f"unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: skip type checks, keep field checks
        hints = {}
    for key, val in value.items():
        if key in hints:
            _check_field(cls, key, hints[key], val)
    return cls(**value)


def validate(validator: Validator, value: Any) -> Any:
    """Apply a validator; return the value the job receives. Raises whatever the validator raises."""
    if validator is None:
        return value
    if isinstance(validator, type) and isinstance(value, validator):  # already validated
        return value
    model_validate = getattr(validator, "model_validate", None)
    if model_validate is not None:
        return model_validate(value)
    if isinstance(validator, type) and dataclasses.is_dataclass(validator):
        return _validate_dataclass(validator, value)
    if callable(validator):
        result = validator(value)
        return value if result is None else result
    raise TypeError(f"not a validator: {validator!r} (use a callable, a dataclass or a model class)")


def to_jsonable(value: Any) -> Any:
    """Turn a validated object back into plain JSON data (pydantic models, dataclasses)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
