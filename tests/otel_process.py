"""A real process for tests/test_otel.py: triggers (inside a span) or executes the ``traced`` job on
a SQLite file with OpenTelemetry, exporting each finished span as a JSON line to a file.

    python otel_process.py DB SPANS trigger          # prints the run id
    python otel_process.py DB SPANS work SIDE        # executes until no run is unfinished
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import stepstone
import stepstone.otel


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as fh:
            for span in spans:
                ctx, parent = span.get_span_context(), span.parent
                fh.write(json.dumps({
                    "name": span.name, "trace": f"{ctx.trace_id:032x}", "span": f"{ctx.span_id:016x}",
                    "parent": f"{parent.span_id:016x}" if parent else None, "pid": os.getpid(),
                    "events": [e.name for e in span.events], "attributes": dict(span.attributes or {}),
                }) + "\n")  # fmt: skip
                fh.flush()
        return SpanExportResult.SUCCESS


def make_job(side: str) -> stepstone.Job:
    async def traced(step: stepstone.Step, payload: Any) -> str:
        await step.run("first", lambda: "one")

        async def slow() -> str:
            with open(side, "a") as fh:
                fh.write(f"second {os.getpid()}\n")
            await asyncio.sleep(float(payload["pause"]))
            return "two"

        await step.run("second", slow)
        return "done"

    return stepstone.define_job("traced", traced)


async def main(db: str, spans: str, mode: str, side: str = "") -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(spans)))
    engine = stepstone.create_engine(
        f"sqlite:///{db}", tracer=stepstone.otel.tracer(provider), polling_interval=0.1,
        heartbeat_interval=0.2, stale_threshold=60.0, worker=mode == "work",
    )  # fmt: skip
    engine.register(make_job(side))
    async with engine:
        if mode == "trigger":
            with provider.get_tracer("app").start_as_current_span("request"):
                run = await engine.trigger("traced", {"pause": 30})
            print(run.id, flush=True)
            return
        print("ready", flush=True)
        while (await engine.get_runs(status=["pending", "running", "suspended"], limit=1)).total:
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
