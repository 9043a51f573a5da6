"""The tracing seam: the engine tells an optional :class:`Tracer` about run attempts, steps and what
happens to them; :mod:`stepstone.otel` implements it with OpenTelemetry. Stdlib only.

Trace context travels with the run: at trigger the tracer is asked for the W3C context of the
caller (``traceparent``, ``tracestate``), which is stored in the run's ``run:trigger`` event, so
every later attempt — hours later, in another process — continues the same trace. A server
receiving a ``traceparent`` header sets :data:`incoming_trace` around the trigger.

The context variables :data:`current_run` and :data:`current_step` say which run and step the
running code belongs to (what log records are tagged with).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["AttemptTrace", "Tracer", "current_run", "current_step", "incoming_trace", "step_scope"]

#: The W3C trace context (``{"traceparent": …}``) of the request that triggers a run, when a server
#: received one; it wins over the tracer's current context.
incoming_trace: ContextVar[Mapping[str, str] | None] = ContextVar("stepstone_incoming_trace", default=None)
#: ``(run id, job name)`` of the run whose job is executing in this context.
current_run: ContextVar[tuple[str, str] | None] = ContextVar("stepstone_current_run", default=None)
#: The name of the step whose body is running in this context.
current_step: ContextVar[str | None] = ContextVar("stepstone_current_step", default=None)


class AttemptTrace(Protocol):
    """One execution of one run (a span, for OpenTelemetry)."""

    def active(self) -> contextlib.AbstractContextManager[None]:
        """Around the job: what the job does (steps, its own spans, child runs it starts) nests under it."""

    def step(self, name: str, attempt: int) -> contextlib.AbstractContextManager[None]:
        """Around one step's body (the body runs inside it: its own spans nest under it)."""

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """Something happened to the run or its current step: ``retry``, ``suspend``, ``resume``."""

    def end(self, outcome: str, error: str | None = None) -> None:
        """The execution ended: ``completed``, ``failed``, ``cancelled``, ``suspended`` or ``lost``."""


class Tracer(Protocol):
    def trigger_context(self) -> dict[str, str]:
        """The trace context to store with a run being triggered now (empty: none)."""

    def attempt(self, run_id: str, job: str, version: str, attempt: int, context: Mapping[str, Any]) -> AttemptTrace:
        """Start tracing an execution; ``context`` is what :meth:`trigger_context` gave at trigger."""


@contextlib.contextmanager
def step_scope(name: str) -> Iterator[None]:
    token = current_step.set(name)
    try:
        yield
    finally:
        current_step.reset(token)
