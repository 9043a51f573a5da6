"""Worker mode's protocol: an engine's methods as JSON messages, in pure Python.

A page drives an engine that runs elsewhere (a dedicated Web Worker, or another tab's worker)
through :class:`RpcSource`, which has the engine's method names (``trigger``, ``get_run``,
``get_runs``, ``get_steps``, ``subscribe``, ``subscribe_runs``, ``cancel``, ``retry``,
``delete_run``, ``send_event``, ``wait``), so the hooks take it where they take an Engine. The
other side is :class:`RpcServer`, which calls a real Engine. Both only exchange JSON *text*: how the
text travels (``postMessage``, a ``BroadcastChannel``, a loopback in a CPython test) is the caller's
business, which is why this module is stdlib-only and testable anywhere.

Messages (``k`` is the kind):

    page -> engine   {"k": "hello"}
                     {"k": "call", "id": 7, "m": "get_run", "a": [...], "kw": {...}}
                     {"k": "iter", "id": 8, "m": "subscribe", "a": [...], "kw": {...}}
                     {"k": "close", "id": 8}                     stop a stream early
    engine -> page   {"k": "ready", "info": {...}}   or   {"k": "boot-error", "e": ERROR}
                     {"k": "ok", "id": 7, "v": VALUE}   or   {"k": "err", "id": 7, "e": ERROR}
                     {"k": "items", "id": 8, "v": [VALUE, ...]}  then  {"k": "end", "id": 8}

Values are the models' JSON (``Run.to_json`` plus the lease fields, ``Event.to_json``, ...);
errors carry the exception's class name, message and attributes, and come back as the same
stepstone exception (``RunNotFound``, ``InvalidInput``, ``WaitTimeout``, ...).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from .. import _errors
from .._errors import EngineNotStarted, InvalidInput, StepstoneError
from .._models import Event, Run, RunChange, RunList, RunStatus, StepRecord, TriggerResult

__all__ = [
    "CALLS",
    "PROTOCOL",
    "STREAMS",
    "RpcServer",
    "RpcSource",
    "decode_error",
    "decode_value",
    "encode_error",
    "encode_value",
]

log = logging.getLogger("stepstone")

#: Bumped when a message changes shape; a page and a worker of different protocols refuse each other.
PROTOCOL = 1


# -- values ------------------------------------------------------------------------------------
def _run_json(run: Run) -> dict[str, Any]:
    # the wire shape, plus the lease fields to_json leaves out (a page may want to know who runs it)
    return {**run.to_json(), "owner": run.owner, "epoch": run.epoch, "leaseExpiresAt": run.lease_expires_at}


def _run(data: Mapping[str, Any]) -> Run:
    run = Run.from_json(data)
    return dataclasses.replace(
        run, owner=data.get("owner"), epoch=int(data.get("epoch") or 0), lease_expires_at=data.get("leaseExpiresAt")
    )


def _step(data: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=data["runId"],
        name=data["name"],
        index=int(data["index"]),
        status=data["status"],
        output=data.get("output"),
        error=data.get("error"),
        started_at=data.get("startedAt", 0.0),
        completed_at=data.get("completedAt", 0.0),
        attempt=int(data.get("attempt", 1)),
        run_attempt=int(data.get("runAttempt", 1)),
        retry_at=data.get("retryAt"),
    )


def encode_value(kind: str, value: Any) -> Any:
    """``value`` (a result of kind ``kind``) as plain JSON data."""
    if value is None:
        return None
    if kind == "run":
        return _run_json(value)
    if kind == "trigger":
        return {**_run_json(value), "created": bool(value.created)}
    if kind == "runs":
        return {
            "runs": [_run_json(r) for r in value],
            "total": value.total,
            "limit": value.limit,
            "offset": value.offset,
            "version": value.version,
        }
    if kind == "steps":
        return [s.to_json() for s in value]
    if kind == "event":
        return value.to_json()
    if kind == "change":
        return value.to_json()
    return value  # "json": already plain data


def decode_value(kind: str, data: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if data is None:
        return None
    if kind == "run":
        return _run(data)
    if kind == "trigger":
        run = _run(data)
        values = {f.name: getattr(run, f.name) for f in dataclasses.fields(run)}
        return TriggerResult(**values, created=bool(data.get("created", True)))
    if kind == "runs":
        return RunList(
            [_run(r) for r in data["runs"]],
            total=data["total"],
            limit=data["limit"],
            offset=data["offset"],
            version=data["version"],
        )
    if kind == "steps":
        return [_step(s) for s in data]
    if kind == "event":
        return Event.from_json(data)
    if kind == "change":
        return RunChange(int(data["version"]), data["runId"], _run(data["run"]) if data.get("run") else None)
    return data


#: The engine's one-shot methods a page may call, and the kind of value each returns.
CALLS: dict[str, str] = {
    "trigger": "trigger",
    "get_run": "run",
    "get_runs": "runs",
    "get_steps": "steps",
    "retry": "run",
    "cancel": "run",
    "delete_run": "json",
    "send_event": "json",
    "wait": "run",
    "describe": "json",
}
#: The engine's streaming methods, and the kind of value each item is.
STREAMS: dict[str, str] = {"subscribe": "event", "subscribe_runs": "change"}


# -- errors ------------------------------------------------------------------------------------
_STEPSTONE_ERRORS = {name: getattr(_errors, name) for name in _errors.__all__}


def _plain(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as ``{"type", "message", "attrs"}``: stepstone errors by their class (the
    nearest one stepstone defines, for a subclass of the user's), builtins by name."""
    name = type(exc).__name__
    if isinstance(exc, StepstoneError):
        name = next(c.__name__ for c in type(exc).__mro__ if _STEPSTONE_ERRORS.get(c.__name__) is c)
    attrs = {k: v for k, v in vars(exc).items() if not k.startswith("_") and _plain(v)}
    return {"type": name, "message": str(exc), "attrs": attrs}


def decode_error(data: Mapping[str, Any]) -> BaseException:
    """The exception :func:`encode_error` described: the same stepstone class with the same
    message and attributes, the same builtin exception, or a RuntimeError naming the type."""
    name = str(data.get("type") or "Error")
    message = str(data.get("message") or "")
    cls = _STEPSTONE_ERRORS.get(name)
    if cls is None:
        found = getattr(builtins, name, None)
        if isinstance(found, type) and issubclass(found, Exception) and found.__module__ == "builtins":
            cls = found
    if cls is None:
        return RuntimeError(f"{name}: {message}" if message else name)
    exc: BaseException
    try:
        exc = cls.__new__(cls, message)
    except TypeError:
        exc = cls.__new__(cls)
    exc.args = (message,)
    attrs = data.get("attrs")
    if isinstance(attrs, Mapping):
        exc.__dict__.update(attrs)
    return exc


def _dumps(message: Mapping[str, Any]) -> str:
    # ASCII JSON: a lone surrogate travels as an escape and is refused by the engine, not the wire
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


# -- the engine side ---------------------------------------------------------------------------
class RpcServer:
    """Answers messages by calling ``target`` (an Engine). ``post(client, text)`` sends a reply to
    the client a message came from; ``info`` is what a ``hello`` is answered with (and what
    ``describe()`` returns)."""

    def __init__(self, target: Any, post: Callable[[str, str], None], info: Mapping[str, Any] | None = None) -> None:
        self.target = target
        self.post = post
        self.info: dict[str, Any] = {"protocol": PROTOCOL, **(info or {})}
        self._streams: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def _send(self, client: str, message: Mapping[str, Any]) -> None:
        try:
            self.post(client, _dumps(message))
        except Exception:  # the client went away: nobody to tell
            log.debug("stepstone: could not answer %s", client, exc_info=True)

    def handle(self, client: str, text: str) -> None:
        """One message from ``client``; replies go out through ``post`` as they are ready."""
        try:
            message = json.loads(text)
            kind = message["k"]
        except (TypeError, ValueError, KeyError):
            log.warning("stepstone: ignored a malformed worker-mode message from %s", client)
            return
        if self.closed:
            if "id" in message:
                error = EngineNotStarted("the stepstone worker has stopped")
                self._send(client, {"k": "err", "id": message["id"], "e": encode_error(error)})
            return
        if kind == "hello":
            self._send(client, {"k": "ready", "info": self.info})
        elif kind == "call":
            self._spawn(self._call(client, message))
        elif kind == "iter":
            key = (client, int(message["id"]))
            stream = self._spawn(self._iterate(client, message))
            self._streams[key] = stream
            stream.add_done_callback(lambda _t: self._forget_stream(key, stream))
        elif kind == "close":
            closing = self._streams.pop((client, int(message.get("id", -1))), None)
            if closing is not None:
                closing.cancel()

    def _forget_stream(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        if self._streams.get(key) is task:
            del self._streams[key]

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _method(self, message: Mapping[str, Any], table: Mapping[str, str]) -> tuple[Callable[..., Any], str]:
        name = str(message.get("m"))
        if name not in table:
            raise AttributeError(f"the stepstone worker has no method {name!r}")
        if name == "describe":
            return self._describe, "json"
        return getattr(self.target, name), table[name]

    async def _describe(self) -> dict[str, Any]:
        return dict(self.info)

    async def _call(self, client: str, message: Mapping[str, Any]) -> None:
        call_id = message.get("id")
        try:
            method, kind = self._method(message, CALLS)
            result = await method(*message.get("a", ()), **message.get("kw", {}))
            reply = {"k": "ok", "id": call_id, "v": encode_value(kind, result)}
        except asyncio.CancelledError:
            reply = {"k": "err", "id": call_id, "e": encode_error(EngineNotStarted("the stepstone worker stopped"))}
            self._send(client, reply)
            raise
        except Exception as exc:
            reply = {"k": "err", "id": call_id, "e": encode_error(exc)}
        self._send(client, reply)

    async def _iterate(self, client: str, message: Mapping[str, Any]) -> None:
        stream_id = message.get("id")
        loop = asyncio.get_running_loop()
        buffered: list[Any] = []

        def flush() -> None:
            if buffered:
                self._send(client, {"k": "items", "id": stream_id, "v": list(buffered)})
                buffered.clear()

        agen: Any = None
        try:
            method, kind = self._method(message, STREAMS)
            agen = method(*message.get("a", ()), **message.get("kw", {}))
            async for item in agen:
                # items yielded without a pause in between (a batch read from the store) go in
                # one message: the flush runs once this task next waits
                if not buffered:
                    loop.call_soon(flush)
                buffered.append(encode_value(kind, item))
            flush()
            self._send(client, {"k": "end", "id": stream_id})
        except asyncio.CancelledError:
            raise  # closed by the client (or the server is stopping): it expects nothing more
        except Exception as exc:
            flush()
            self._send(client, {"k": "err", "id": stream_id, "e": encode_error(exc)})
        finally:
            if agen is not None:
                with contextlib.suppress(Exception):
                    await agen.aclose()

    def drop_client(self, client: str) -> int:
        """Stop every stream of ``client`` (it went away); returns how many."""
        keys = [key for key in self._streams if key[0] == client]
        for key in keys:
            self._streams.pop(key).cancel()
        return len(keys)

    def clients(self) -> set[str]:
        """Clients with a stream open now."""
        return {client for client, _ in self._streams}

    async def aclose(self) -> None:
        """Stop answering; cancel every call and stream in flight."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the page side -----------------------------------------------------------------------------
def _job_ref(job: Any) -> tuple[str, str | None]:
    """A job's name, and the version it pins: a name (none), a ``Job`` (its version) or a
    ``JobHandle`` (its job's version)."""
    if isinstance(job, str):
        return job, None
    definition = getattr(job, "job", job)
    name = getattr(definition, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"expected a job name, a Job or a JobHandle, not {job!r}")
    version = getattr(definition, "version", None)
    return name, version if isinstance(version, str) else None


class RpcSource:
    """An engine somewhere else, with the engine's method names. ``post(text)`` sends a message
    to it; whoever receives its answers calls :meth:`receive` with them. :meth:`fail` ends every
    call in flight (the other side is gone)."""

    def __init__(self, post: Callable[[str], None], *, name: str = "worker") -> None:
        self._post = post
        self.name = name
        self.info: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._streams: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- plumbing ----------------------------------------------------------------------------------
    def _send(self, message: Mapping[str, Any]) -> None:
        if self._failure is not None:
            raise _copy(self._failure)
        self._post(_dumps(message))

    def receive(self, text: str) -> None:
        """One message from the engine's side."""
        try:
            message = json.loads(text)
            kind = message["k"]
        except (TypeError, ValueError, KeyError):
            log.warning("stepstone: ignored a malformed message from %s", self.name)
            return
        if kind in ("ready", "boot-error"):
            fut = self._hello
            if fut is not None and not fut.done():
                if kind == "ready":
                    fut.set_result(dict(message.get("info") or {}))
                else:
                    fut.set_exception(decode_error(message.get("e") or {}))
            return
        ident = message.get("id")
        entry = self._calls.pop(ident, None) if kind in ("ok", "err") else None
        if entry is not None:
            fut, result_kind = entry
            if fut.done():
                return
            if kind == "err":
                fut.set_exception(decode_error(message.get("e") or {}))
                return
            try:
                fut.set_result(decode_value(result_kind, message.get("v")))
            except Exception as exc:  # a value this side cannot read
                fut.set_exception(exc)
            return
        queue = self._streams.get(ident)
        if queue is not None and kind in ("items", "end", "err"):  # else: a stream closed meanwhile
            queue.put_nowait((kind, message.get("v") if kind == "items" else message.get("e")))

    def fail(self, exc: BaseException, *, final: bool = True) -> None:
        """End every call and stream in flight with ``exc``; with ``final`` every later call
        raises it too."""
        if final:
            self._failure = exc
        calls, self._calls = self._calls, {}
        for fut, _ in calls.values():
            if not fut.done():
                fut.set_exception(_copy(exc))
        for queue in self._streams.values():
            queue.put_nowait(("fail", exc))
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(_copy(exc))

    async def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Say hello and wait until the engine answers (ready, or why it could not start)."""
        if self._hello is None or (self._hello.done() and self._hello.exception() is not None):
            self._hello = asyncio.get_running_loop().create_future()
            self._send({"k": "hello"})
        try:
            async with asyncio.timeout(timeout):
                self.info = dict(await asyncio.shield(self._hello))
        except TimeoutError:
            raise EngineNotStarted(f"{self.name} did not answer within {timeout:g} s") from None
        if self.info.get("protocol") != PROTOCOL:
            raise EngineNotStarted(
                f"{self.name} speaks worker-mode protocol {self.info.get('protocol')!r}, this page {PROTOCOL}: "
                "reload the page (its stepstone and the worker's differ)"
            )
        return self.info

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            text = _dumps({"k": "call", "id": call_id, "m": method, "a": list(args), "kw": kwargs})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the arguments of {method}() cannot be sent to {self.name} as JSON: {exc}") from exc
        self._calls[call_id] = (fut, CALLS[method])
        try:
            if self._failure is not None:
                raise _copy(self._failure)
            self._post(text)
            return await fut
        finally:
            self._calls.pop(call_id, None)

    async def _iterate(self, method: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        stream_id = next(self._ids)
        kind = STREAMS[method]
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._streams[stream_id] = queue
        ended = False
        try:
            self._send({"k": "iter", "id": stream_id, "m": method, "a": list(args), "kw": kwargs})
            while True:
                what, value = await queue.get()
                if what == "items":
                    for item in value:
                        yield decode_value(kind, item)
                elif what == "end":
                    ended = True
                    return
                elif what == "err":
                    ended = True
                    raise decode_error(value or {})
                else:  # "fail": the other side went away
                    ended = True
                    raise _copy(value)
        finally:
            self._streams.pop(stream_id, None)
            if not ended and self._failure is None:
                with contextlib.suppress(Exception):  # the worker is gone: nothing to close
                    self._post(_dumps({"k": "close", "id": stream_id}))

    # -- the engine's methods ------------------------------------------------------------------
    async def trigger(
        self,
        job: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> TriggerResult:
        name, pinned = _job_ref(job)
        try:
            json.dumps(input, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"input for job {name!r} is not JSON-serialisable: {exc}") from exc
        result: TriggerResult = await self._call(
            "trigger",
            name,
            input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=None if labels is None else dict(labels),
            version=version if version is not None else pinned,
        )
        return result

    async def get_run(self, run_id: str) -> Run | None:
        run: Run | None = await self._call("get_run", run_id)
        return run

    async def get_runs(
        self,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
    ) -> RunList:
        statuses = None if status is None else status if isinstance(status, str) else list(status)
        runs: RunList = await self._call(
            "get_runs",
            job_name,
            statuses,
            None if labels is None else dict(labels),
            limit,
            offset,
            parent_id=parent_id,
        )
        return runs

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        steps: list[StepRecord] = await self._call("get_steps", run_id)
        return steps

    async def retry(self, run_id: str) -> Run:
        run: Run = await self._call("retry", run_id)
        return run

    async def cancel(self, run_id: str) -> Run:
        run: Run = await self._call("cancel", run_id)
        return run

    async def delete_run(self, run_id: str) -> None:
        await self._call("delete_run", run_id)

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None:
        try:
            json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the data of event {name!r} cannot be stored as JSON: {exc}") from exc
        await self._call("send_event", run_id, name, data)

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        run: Run = await self._call("wait", run_id, timeout)
        return run

    async def describe(self) -> dict[str, Any]:
        """What the other side says about itself now: its jobs, owner, store, role."""
        info: dict[str, Any] = await self._call("describe")
        self.info = dict(info)
        return info

    def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncIterator[Event]:
        """Every event of the run from ``from_seq`` on, then live ones, ending after the terminal one."""
        return self._iterate("subscribe", run_id, from_seq)

    def subscribe_runs(self, from_version: int | None = None, job_name: str | None = None) -> AsyncIterator[RunChange]:
        """Run-level changes across all runs, forever (see ``Engine.subscribe_runs``)."""
        return self._iterate("subscribe_runs", from_version, job_name)


def _copy(exc: BaseException) -> BaseException:
    """A fresh exception like ``exc`` (one object raised in several tasks would share a traceback)."""
    if isinstance(exc, Exception):
        return decode_error(encode_error(exc))
    return exc
