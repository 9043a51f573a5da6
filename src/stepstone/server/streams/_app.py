"""The Durable Streams protocol server: every path under its mount is a stream.

    from starlette.routing import Mount
    from stepstone.server.streams import create_streams_app

    routes = [Mount("/v1/stream", app=create_streams_app(engine, long_poll_timeout=30))]

PUT creates (or forks), POST appends (JSON or bytes, idempotent producers, ``Stream-Seq``) and
closes, HEAD describes, DELETE deletes, GET reads (catch-up with ETag/304, long-poll, SSE).
Streams live in the engine's store (memory or SQLite), so they survive a restart with SQLite.
``runs/<run_id>`` serves a run's event log as a read-only JSON stream; ``__ds/`` holds the
reserved subscription APIs. ``docs/streams.md`` has every request and response.

Server-only (needs the ``server`` extra); never imported by ``stepstone/__init__.py``.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

from ..._engine import Engine
from ..._errors import (
    HTTPError,
    InvalidStreamRequest,
    ProducerFenced,
    ProducerSeqGap,
    StepstoneError,
    StoreError,
    StreamClosedError,
    StreamError,
    StreamGone,
    StreamNotFound,
)
from ..._stream_models import (
    AppendRequest,
    NewStream,
    Offset,
    ProducerRef,
    ReadResult,
    StreamInfo,
    format_offset,
    is_json_type,
    parse_expires_at,
    parse_offset,
)
from ...stores._contract import StreamStore
from ._asgi import PREFLIGHT_HEADERS, Headers, Receive, Request, Scope, Send, send_error, send_response
from ._read import ReadOptions, serve_read
from ._runs import RunLogSource

__all__ = ["StreamsApp", "create_streams_app", "streams_mount"]

log = logging.getLogger("stepstone.server.streams")

_TTL_RE = re.compile(r"^(0|[1-9]\d*)$")
_INT_RE = re.compile(r"^\d+$")
_CONTENT_TYPE_RE = re.compile(r"^[\w.+-]+/[\w.+-]+")
_MAX_SAFE_INT = 2**53 - 1
_SWEEP_EVERY = 10.0

#: A JSON body with at most this many brackets cannot nest deeply enough to trouble a parser.
_SAFE_BRACKETS = 512


def json_too_deep(body: bytes) -> bool:
    """Whether JSON text nests too deeply for Python's parser (its recursion limit: several hundred
    levels). Counting brackets answers most bodies at C speed; a body with more brackets is parsed
    here, 64 frames deeper than this call, so whatever passes also parses in the store, whose
    parser may sit a few frames deeper than this one."""
    if body.count(b"[") + body.count(b"{") <= _SAFE_BRACKETS:
        return False
    return _fails_to_parse(body, 64)


def _fails_to_parse(body: bytes, headroom: int) -> bool:
    if headroom > 0:
        return _fails_to_parse(body, headroom - 1)
    try:
        json.loads(body)
    except RecursionError:
        return True
    except ValueError:  # not JSON at all: the store refuses it with the parser's own message
        return False
    return False


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "true"


def _not_found_or_gone(info: StreamInfo | None, path: str) -> StreamInfo:
    if info is None:
        raise StreamNotFound(f"no stream at {path!r}")
    if info.deleted:
        raise StreamGone(f"the stream at {path!r} was deleted; forks still read its data")
    return info


class _StoredSource:
    """A stored stream as a :class:`~._read.Source`."""

    def __init__(self, store: StreamStore, info: StreamInfo) -> None:
        self.store = store
        self.info = info
        self.path = info.path
        self.content_type = info.content_type
        self.is_json = info.is_json

    async def state(self) -> tuple[Offset, bool]:
        return self.info.tail, self.info.closed

    async def read(self, after: Offset, max_bytes: int) -> ReadResult:
        return await self.store.stream_read(self.info.id, after, max_bytes)

    async def wait(self, after: Offset, timeout: float) -> None:
        await self.store.stream_wait(self.info.id, after, timeout)


class StreamsApp:
    """The ASGI app :func:`create_streams_app` returns."""

    def __init__(
        self,
        engine: Engine,
        *,
        long_poll_timeout: float,
        sse_max_age: float,
        page_bytes: int,
        max_body: int,
        run_logs: str | None,
        subscriptions: bool,
        authorize: Any,
    ) -> None:
        store = engine.store
        if not isinstance(store, StreamStore):
            raise TypeError(f"{type(store).__name__} does not store Durable Streams; use a memory or sqlite store")
        self.engine = engine
        self.store: StreamStore = store
        self.reads = ReadOptions(long_poll_timeout, page_bytes, sse_max_age)
        self.max_body = max_body
        self.run_logs = run_logs.strip("/") + "/" if run_logs else None
        self.authorize = authorize
        self._last_sweep = 0.0
        self._started_engine = False
        self._handlers = {
            "GET": self._get,
            "HEAD": self._head,
            "PUT": self._put,
            "POST": self._post,
            "DELETE": self._delete,
        }
        self.subscriptions: Any = None
        if subscriptions:
            from ._subs import MAX_BODY as MAX_SUBSCRIPTION_BODY
            from ._subs import Subscriptions

            self.subscriptions = Subscriptions(store, min(max_body, MAX_SUBSCRIPTION_BODY))

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        full: str = scope["path"]
        root: str = scope.get("root_path", "")
        path = full[len(root) :] if root and full.startswith(root) else full
        request = Request(scope, receive, path.lstrip("/"))
        try:
            await self._dispatch(request, send)
        except (StreamError, ProducerFenced) as exc:
            await self._send_stream_error(request, send, exc)
        except ConnectionResetError:
            return
        except StoreError as exc:  # the store failed (disk full, locked, …): not the client's fault
            # the detail (a file path, an SQL error) is for the log, not for the client
            log.error("stepstone streams: %s %s: %s", request.method, full, exc)
            message = "the store failed to handle this request; try again later"
            await send_error(send, 503, exc.code, message, [(b"retry-after", b"1")])
        except StepstoneError as exc:
            await send_error(send, getattr(exc, "status", 400), exc.code, str(exc))
        except Exception:
            log.exception("stepstone streams: %s %s failed", request.method, full)
            await send_error(send, 500, "internal_error", "the server failed to handle this request")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not getattr(self.engine, "_started", False):
                    await self.engine.init()
                    self._started_engine = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.subscriptions is not None:
                    await self.subscriptions.shutdown()
                if self._started_engine:
                    await self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _dispatch(self, request: Request, send: Send) -> None:
        if request.method == "OPTIONS":
            await send_response(send, 204, list(PREFLIGHT_HEADERS))
            return
        if not self.engine.started:  # starting or stopping: say "retry", as the jobs API does
            message = "the server is not ready or is shutting down; try again shortly"
            await send_error(send, 503, "unavailable", message, [(b"retry-after", b"1")])
            return
        if self.authorize is not None and not await self._authorized(request, send):
            return
        path = request.path
        if path == "__ds" or path.startswith("__ds/"):
            if self.subscriptions is None:
                raise StreamNotFound("the reserved __ds/ APIs are not enabled on this server")
            await self.subscriptions.handle(request, send, path[5:])
            return
        if not path:
            raise StreamNotFound("give a stream path after the stream root")
        if self.run_logs is not None and path.startswith(self.run_logs):
            await self._run_log(request, send, path)
            return
        handler = self._handlers.get(request.method)
        if handler is None:
            await send_error(
                send,
                405,
                "method_not_allowed",
                f"{request.method} is not a stream operation",
                [(b"allow", b"GET, HEAD, PUT, POST, DELETE, OPTIONS")],
            )
            return
        await handler(request, send)

    async def _authorized(self, request: Request, send: Send) -> bool:
        from starlette.requests import Request as StarletteRequest


        try:
            verdict = self.authorize(StarletteRequest(request.scope, request.receive))
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except HTTPError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await send_error(send, exc.status, exc.code, exc.message, headers)
            return False
        if not verdict:
            await send_error(send, 403, "forbidden", "not allowed")
            return False
        return True

    async def _send_stream_error(self, request: Request, send: Send, exc: StreamError | ProducerFenced) -> None:
        headers: Headers = []
        if isinstance(exc, StreamClosedError):
            headers = [(b"stream-closed", b"true"), (b"stream-next-offset", exc.tail.encode())]
        elif isinstance(exc, ProducerFenced):
            headers = [(b"producer-epoch", str(exc.current_epoch).encode())]
        elif isinstance(exc, ProducerSeqGap):
            headers = [
                (b"producer-expected-seq", str(exc.expected).encode()),
                (b"producer-received-seq", str(exc.received).encode()),
            ]
        if request.method == "HEAD":
            await send_response(send, exc.status, headers)
            return
        await send_error(send, exc.status, exc.code, str(exc), headers)

    # -- reads ---------------------------------------------------------------------------------
    async def _info(self, path: str) -> StreamInfo:
        return _not_found_or_gone(await self.store.stream_get(path, time.time()), path)

    async def _get(self, request: Request, send: Send) -> None:
        info = await self._info(request.path)
        if info.ttl is not None:
            await self.store.stream_touch(info.id, time.time())
        await serve_read(request, send, _StoredSource(self.store, info), self.reads)

    async def _head(self, request: Request, send: Send) -> None:
        info = await self._info(request.path)
        headers: Headers = [
            (b"content-type", info.content_type.encode()),
            (b"stream-next-offset", info.next_offset.encode()),
            (b"cache-control", b"no-store"),
        ]
        if info.closed:
            headers.append((b"stream-closed", b"true"))
        if info.ttl is not None:
            headers.append((b"stream-ttl", str(info.ttl).encode()))
        if info.expires_at is not None:
            headers.append((b"stream-expires-at", info.expires_at.encode()))
        await send_response(send, 200, headers)

    # -- writes --------------------------------------------------------------------------------
    async def _body(self, request: Request) -> bytes:
        body = await request.body(self.max_body)
        if body is None:
            raise _TooLarge(f"the body is larger than this server accepts ({self.max_body} bytes)")
        if body and is_json_type(request.header("content-type")) and json_too_deep(body):
            # refused here, before the store: its JSON parser would hit the recursion limit, and a
            # failed write can take down the other appends committed with it
            raise InvalidStreamRequest("the JSON body is nested too deeply")
        return body

    def _fork_source(self, request: Request, value: str) -> str:
        """``Stream-Forked-From`` names the source by URL or path; make it a path in this store."""
        path = urlsplit(value).path if "://" in value else value
        if request.root and path.startswith(request.root + "/"):
            path = path[len(request.root) :]
        return path.lstrip("/")

    async def _put(self, request: Request, send: Send) -> None:
        new = await self._parse_create(request)
        now = time.time()
        if now - self._last_sweep >= _SWEEP_EVERY:
            self._last_sweep = now
            await self.store.stream_sweep(now)
        result = await self.store.stream_create(new, now)
        info = result.info
        headers: Headers = [
            (b"content-type", info.content_type.encode()),
            (b"stream-next-offset", info.next_offset.encode()),
        ]
        if result.created:
            headers.append((b"location", f"{request.base_url()}/{quote(info.path)}".encode()))
        if info.closed:
            headers.append((b"stream-closed", b"true"))
        await send_response(send, 201 if result.created else 200, headers)
        if result.created and new.body and self.subscriptions is not None:
            self.subscriptions.on_append(info.path)

    async def _parse_create(self, request: Request) -> NewStream:
        raw_type = (request.header("content-type") or "").strip()
        content_type = raw_type if _CONTENT_TYPE_RE.match(raw_type) else None
        ttl_text = request.header("stream-ttl") or None
        expires_at = request.header("stream-expires-at") or None
        if ttl_text is not None and expires_at is not None:
            raise InvalidStreamRequest("give Stream-TTL or Stream-Expires-At, not both")
        ttl = None
        if ttl_text is not None:
            if not _TTL_RE.match(ttl_text) or int(ttl_text) > _MAX_SAFE_INT:
                raise InvalidStreamRequest(f"Stream-TTL must be whole seconds (0 to 2^53-1), not {ttl_text!r}")
            ttl = int(ttl_text)
        if expires_at is not None and parse_expires_at(expires_at) is None:
            raise InvalidStreamRequest(f"Stream-Expires-At must be an RFC 3339 timestamp, not {expires_at!r}")
        fork_header = request.header("stream-forked-from")
        fork_from = self._fork_source(request, fork_header) if fork_header else None
        offset_text = request.header("stream-fork-offset")
        fork_offset = None
        if offset_text:
            fork_offset = parse_offset(offset_text)
            if fork_offset is None:
                raise InvalidStreamRequest(f"Stream-Fork-Offset {offset_text!r} is not an offset")
        sub_text = request.header("stream-fork-sub-offset")
        sub_offset = 0
        if sub_text is not None:
            if fork_from is None:
                raise InvalidStreamRequest("Stream-Fork-Sub-Offset needs Stream-Forked-From")
            if not _TTL_RE.match(sub_text.strip()) or int(sub_text) > _MAX_SAFE_INT:
                raise InvalidStreamRequest(
                    f"Stream-Fork-Sub-Offset must be an integer from 0 to 2^53-1, not {sub_text!r}"
                )
            sub_offset = int(sub_text)
            if sub_offset > 0 and fork_offset is None:
                raise InvalidStreamRequest("Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
        if fork_from is not None and fork_from == request.path:
            raise InvalidStreamRequest("a stream cannot fork itself")
        return NewStream(
            path=request.path,
            content_type=content_type,
            ttl=ttl,
            expires_at=expires_at,
            closed=_is_true(request.header("stream-closed")),
            body=await self._body(request),
            fork_from=fork_from,
            fork_offset=fork_offset,
            fork_sub_offset=sub_offset,
        )

    def _producer(self, request: Request) -> ProducerRef | None:
        pid = request.header("producer-id")
        epoch = request.header("producer-epoch")
        seq = request.header("producer-seq")
        if pid is None and epoch is None and seq is None:
            return None
        if pid is None or epoch is None or seq is None:
            raise InvalidStreamRequest("Producer-Id, Producer-Epoch and Producer-Seq go together")
        if not pid:
            raise InvalidStreamRequest("Producer-Id must not be empty")
        for name, value in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
            if not _INT_RE.match(value) or int(value) > _MAX_SAFE_INT:
                raise InvalidStreamRequest(f"{name} must be an integer from 0 to 2^53-1, not {value!r}")
        return ProducerRef(pid, int(epoch), int(seq))

    async def _post(self, request: Request, send: Send) -> None:
        producer = self._producer(request)
        close = _is_true(request.header("stream-closed"))
        body = await self._body(request)
        if not body and not close:
            raise InvalidStreamRequest("an append needs a body (or Stream-Closed: true to close the stream)")
        content_type = request.header("content-type")
        if body and not content_type:
            raise InvalidStreamRequest("an append with a body needs a Content-Type")
        req = AppendRequest(body, content_type, request.header("stream-seq"), producer, close)
        result = await self.store.stream_append(request.path, req, time.time())
        headers: Headers = [(b"stream-next-offset", format_offset(result.tail).encode())]
        if result.closed:
            headers.append((b"stream-closed", b"true"))
        if producer is not None:
            headers.append((b"producer-epoch", str(result.producer_epoch).encode()))
            headers.append((b"producer-seq", str(result.producer_seq).encode()))
        status = 200 if (producer is not None and result.appended) else 204
        await send_response(send, status, headers)
        if result.appended and self.subscriptions is not None:
            self.subscriptions.on_append(request.path)

    async def _delete(self, request: Request, send: Send) -> None:
        await self.store.stream_delete(request.path, time.time())
        await send_response(send, 204, [])
        if self.subscriptions is not None:
            self.subscriptions.on_delete(request.path)

    # -- run logs --------------------------------------------------------------------------------
    async def _run_log(self, request: Request, send: Send, path: str) -> None:
        assert self.run_logs is not None
        run_id = path[len(self.run_logs) :]
        if not run_id or "/" in run_id:
            raise StreamNotFound(f"no run log at {path!r}; use {self.run_logs}<run id>")
        source = RunLogSource(self.engine.store, run_id, path)
        if request.method == "GET":
            await serve_read(request, send, source, self.reads)
        elif request.method == "HEAD":
            tail, closed = await source.state()
            headers: Headers = [
                (b"content-type", b"application/json"),
                (b"stream-next-offset", format_offset(tail).encode()),
                (b"cache-control", b"no-store"),
            ]
            if closed:
                headers.append((b"stream-closed", b"true"))
            await send_response(send, 200, headers)
        else:
            await send_error(
                send,
                405,
                "read_only_stream",
                "a run's event log is read-only; the engine writes it",
                [(b"allow", b"GET, HEAD, OPTIONS")],
            )


class _TooLarge(StreamError):
    code = "body_too_large"
    status = 413


def create_streams_app(
    engine: Engine,
    *,
    long_poll_timeout: float = 30.0,
    sse_max_age: float = 60.0,
    page_bytes: int = 1 << 20,
    max_body: int = 64 << 20,
    run_logs: str | None = "runs/",
    subscriptions: bool = True,
    authorize: Any = None,
) -> StreamsApp:
    """The Durable Streams protocol for ``engine``'s store, as an ASGI app to mount (conventionally
    at ``/v1/stream``); every path under the mount is a stream.

    ``long_poll_timeout``: seconds a long-poll waits for data before answering 204 (also the SSE
    keep-alive interval). ``sse_max_age``: seconds after which an SSE response ends so caches can
    collapse requests (clients reconnect from the last offset). ``page_bytes``: the most data one
    catch-up response carries (clients page with ``Stream-Next-Offset``). ``max_body``: the largest
    append accepted (413 beyond). ``run_logs``: the prefix under which ``<prefix><run_id>`` serves
    a run's event log read-only (None disables). ``subscriptions``: serve the reserved ``__ds/``
    subscription APIs (webhooks need the ``cryptography`` package). ``authorize(request)`` guards
    every request as in :func:`stepstone.server.create_app`.

    Mounted in another app, the host's lifespan must start the engine; served alone, this app's
    lifespan starts it (and stops what it started).
    """
    for name, value in (("long_poll_timeout", long_poll_timeout), ("sse_max_age", sse_max_age)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, not {value!r}")
    if page_bytes < 1 or max_body < 0:
        raise ValueError("page_bytes must be >= 1 and max_body >= 0")
    return StreamsApp(
        engine,
        long_poll_timeout=long_poll_timeout,
        sse_max_age=sse_max_age,
        page_bytes=page_bytes,
        max_body=max_body,
        run_logs=run_logs,
        subscriptions=subscriptions,
        authorize=authorize,
    )


def streams_mount(engine: Engine, path: str = "/v1/stream", **options: Any) -> Any:
    """A Starlette ``Mount`` serving :func:`create_streams_app` at ``path``, or None when the
    engine's store keeps no streams (e.g. a store without the StreamStore methods)."""
    if not isinstance(engine.store, StreamStore):
        return None
    from starlette.routing import Mount

    return Mount(path, app=create_streams_app(engine, **options), name="durable-streams")
