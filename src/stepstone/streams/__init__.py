"""Durable Streams client: ``DurableStream`` (create, append, read from an offset, tail live, close,
delete, head) and ``IdempotentProducer`` (fire-and-forget, batched, pipelined, exactly-once).

    from stepstone.streams import DurableStream, IdempotentProducer

    stream = await DurableStream.create("http://127.0.0.1:8000/v1/stream/events",
                                        content_type="application/json")
    producer = IdempotentProducer(stream, "ingest-1", auto_claim=True)
    producer.append({"type": "click"})
    await producer.close()
    async for event in stream.messages("-1"):
        print(event)

Speaks the Durable Streams protocol to any server (stepstone's ``/v1/stream``, the reference Node
server, …). The same code runs on CPython (httpx) and in Pyodide (fetch); only the transport
differs: both go through stepstone's one HTTP seam, the same transports the jobs client uses.
Importing this package imports neither httpx nor anything from the browser.
"""

from .._errors import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerClosed,
    ProducerFenced,
    ProducerSeqGap,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamHTTPError,
    StreamNotFound,
    StreamSeqConflict,
    TransportError,
)
from .._http import Response, StreamResponse, Transport, default_transport
from ._producer import IdempotentProducer
from ._stream import Chunk, DurableStream, StreamMeta

#: The streaming answer of a transport (the same protocol as ``stepstone.client.StreamResponse``).
StreamingResponse = StreamResponse

__all__ = [
    "Chunk",
    "ContentTypeMismatch",
    "DurableStream",
    "IdempotentProducer",
    "InvalidStreamRequest",
    "ProducerClosed",
    "ProducerFenced",
    "ProducerSeqGap",
    "Response",
    "StaleEpochError",
    "StreamClosedError",
    "StreamConflict",
    "StreamError",
    "StreamGone",
    "StreamHTTPError",
    "StreamMeta",
    "StreamNotFound",
    "StreamSeqConflict",
    "StreamingResponse",
    "Transport",
    "TransportError",
    "default_transport",
]
