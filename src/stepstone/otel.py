"""OpenTelemetry tracing for stepstone (``pip install stepstone[otel]``; imported only when used).

    import stepstone, stepstone.otel

    engine = stepstone.create_engine("sqlite:///jobs.db", tracer=stepstone.otel.tracer())

Every run attempt is a span (``run <job>``), every step execution a span under it (``step <name>``,
the body runs inside it, so your own spans and instrumented calls nest there); retries,
suspensions and resumes are span events. The trace context of whoever triggered the run — the
caller's current span, or the ``traceparent`` header of ``POST /api/trigger`` — is stored with the
run, so an attempt resumed hours later in another process continues the same trace. Child runs
(``step.invoke``) continue their parent's trace.

It uses the application's TracerProvider (the one you pass, else the global one you configured)
and never installs one. With ``log_records=True`` (the default) every ``logging`` record made
while a job runs carries ``stepstone_run_id``, ``stepstone_job`` and ``stepstone_step``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__
from ._tracing import current_run, current_step

__all__ = ["OtelTracer", "tag_log_records", "tracer"]

_W3C = TraceContextTextMapPropagator()
_KEYS = ("traceparent", "tracestate")


def _attr(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) else str(value)


class _Attempt:
    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span

    def active(self) -> contextlib.AbstractContextManager[Any]:
        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    @contextlib.contextmanager
    def step(self, name: str, attempt: int) -> Iterator[None]:
        attributes: dict[str, str | int] = {"stepstone.step": name, "stepstone.step_attempt": attempt}
        with self._tracer.start_as_current_span(f"step {name}", attributes=attributes):
            yield

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        self.span.add_event(name, {f"stepstone.{k}": _attr(v) for k, v in attributes.items() if v is not None})

    def end(self, outcome: str, error: str | None = None) -> None:
        self.span.set_attribute("stepstone.outcome", outcome)
        if outcome == "failed":
            self.span.set_status(Status(StatusCode.ERROR, error or "failed"))
        self.span.end()


class OtelTracer:
    """The :class:`stepstone._tracing.Tracer` on OpenTelemetry; make it with :func:`tracer`."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("stepstone", __version__, tracer_provider=tracer_provider)

    def trigger_context(self) -> dict[str, str]:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        return {k: v for k, v in carrier.items() if k in _KEYS}

    def attempt(self, run_id: str, job: str, version: str, attempt: int, context: Mapping[str, Any]) -> _Attempt:
        parent = _W3C.extract({k: str(context[k]) for k in _KEYS if context.get(k)})
        span = self._tracer.start_span(
            f"run {job}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "stepstone.run_id": run_id,
                "stepstone.job": job,
                "stepstone.job_version": version,
                "stepstone.attempt": attempt,
            },
        )
        return _Attempt(self._tracer, span)


def tracer(tracer_provider: TracerProvider | None = None, *, log_records: bool = True) -> OtelTracer:
    """A tracer for ``create_engine(..., tracer=…)`` on ``tracer_provider`` (default: the global
    provider your application configured; without one, OpenTelemetry's no-op)."""
    if log_records:
        tag_log_records()
    return OtelTracer(tracer_provider)


_tagging = False


def tag_log_records() -> None:
    """Make every ``logging`` record carry ``stepstone_run_id``, ``stepstone_job`` and
    ``stepstone_step`` (None outside a job), by wrapping the log record factory. Idempotent."""
    global _tagging
    if _tagging:
        return
    _tagging = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        run = current_run.get()
        record.stepstone_run_id = run[0] if run else None
        record.stepstone_job = run[1] if run else None
        record.stepstone_step = current_step.get()
        return record

    logging.setLogRecordFactory(factory)
