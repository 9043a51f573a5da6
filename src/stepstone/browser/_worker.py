"""Worker mode, the JavaScript side: start a dedicated Web Worker from a page and drive its engine
(:class:`WorkerSource`), and inside the worker answer the page (:func:`serve`). Pyodide only.

The worker runs ``/stepstone-worker.mjs`` (``web/stepstone-worker.mjs``): it loads this site's
Pyodide and the stepstone wheel, then runs the page's worker script, which registers jobs on an
engine and calls ``await serve(engine)``. Page and worker exchange the JSON text of
:mod:`stepstone.browser._rpc` with ``postMessage``; the bootstrap queues the page's messages until
the script listens and answers for it when it could not start.

A store that only one tab may hold at a time (``opfs://``: a ``FileSystemSyncAccessHandle`` locks
its file) names a ``relay_channel``: the worker that holds the store executes every run, and the
workers of the other tabs of the origin forward their page's messages to it over that
``BroadcastChannel`` (see :class:`_Relay`). When the tab that holds the store closes, the next
waiting worker takes it, starts its engine and resumes the runs; the pages it served see
``ServerUnavailable`` for the calls in flight and their hooks reconnect, as they do to a restarted
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import js
from pyodide.ffi import create_proxy

from .._errors import EngineNotStarted, ServerUnavailable, StepstoneError, StoreError
from ._locks import WebLock, held_lock_names, request_lock
from ._rpc import PROTOCOL, RpcServer, RpcSource, encode_error
from ._values import is_nil, js_value, py_value

__all__ = ["WorkerSource", "in_worker", "serve", "start_worker", "worker_params"]

log = logging.getLogger("stepstone")

#: Where the bootstrap lives in the built site (``web/stepstone-worker.mjs``).
BOOTSTRAP = "/stepstone-worker.mjs"


def in_worker() -> bool:
    """True inside a Web Worker (no ``document``)."""
    return is_nil(getattr(js, "document", None)) and not is_nil(getattr(js, "WorkerGlobalScope", None))


# -- the page ----------------------------------------------------------------------------------
class WorkerSource(RpcSource):
    """An engine running in a dedicated Web Worker, with the engine's method names: pass it to
    ``use_job``, ``use_job_run``, ``use_runs``, ``use_run_actions`` as you would an Engine.
    Made by :func:`start_worker`; ``terminate()`` stops the worker."""

    def __init__(self, worker: Any, name: str, scope: str = "worker") -> None:
        super().__init__(self._post_text, name=name)
        self.scope = scope  # hooks store run ids per scope: a worker's never mix with a Client's
        self.worker = worker
        self._message = create_proxy(self._on_message)
        self._error = create_proxy(self._on_error)
        worker.addEventListener("message", self._message)
        worker.addEventListener("error", self._error)
        self.terminated = False

    def _post_text(self, text: str) -> None:
        self.worker.postMessage(text)

    def _on_message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, str):
            self.receive(data)

    def _on_error(self, event: Any) -> None:
        message = str(getattr(event, "message", "") or "it could not be loaded (see the browser console)")
        if not self.info:  # still booting: nothing will answer
            self.fail(EngineNotStarted(f"{self.name} failed to start: {message}"))
        else:
            log.error("stepstone: %s reported an error: %s", self.name, message)

    def terminate(self) -> None:
        """Stop the worker now (its runs resume in another tab, or when this page opens again)."""
        if self.terminated:
            return
        self.terminated = True
        self.fail(EngineNotStarted(f"{self.name} was terminated"))
        self.worker.removeEventListener("message", self._message)
        self.worker.removeEventListener("error", self._error)
        self.worker.terminate()
        self._message.destroy()
        self._error.destroy()

    async def aclose(self) -> None:
        self.terminate()


async def start_worker(
    script: str | None = None,
    *,
    worker: Any = None,
    params: Mapping[str, str] | None = None,
    modules: tuple[str, ...] = (),
    bootstrap: str = BOOTSTRAP,
    timeout: float | None = 120.0,
) -> WorkerSource:
    """Start a dedicated worker running ``script`` (a URL of this site, e.g. ``"/my_jobs.py"``) and
    wait until its engine answers; returns the :class:`WorkerSource` that drives it.

    ``params`` reach the script as :func:`worker_params`; ``modules`` are Python files fetched into
    the worker first, so the script can import them. ``worker=`` adopts a ``Worker`` the page
    started itself (``new Worker("/stepstone-worker.mjs?script=/my_jobs.py", {type: "module"})``
    in a ``<script type="module">``, so the worker boots while the page's Python does). Raises what
    kept the engine from starting (``StoreError``, ``EngineNotStarted``, …).
    """
    if worker is None:
        if not script:
            raise ValueError("start_worker() needs the URL of the worker's Python script, or a started worker=")
        query = [("script", script), *(("module", m) for m in modules), *(params or {}).items()]
        url = f"{bootstrap}?{urlencode(query)}"
        worker = js.Worker.new(url, js_value({"type": "module", "name": f"stepstone {script}"}))
    source = WorkerSource(
        worker,
        f"the stepstone worker ({script or 'started by the page'})",
        scope=f"worker:{script}" if script else "worker",
    )
    try:
        await source.connect(timeout)
    except BaseException:
        source.terminate()
        raise
    return source


# -- the worker --------------------------------------------------------------------------------
def worker_params() -> dict[str, str]:
    """The ``params`` the page passed to :func:`start_worker` (the worker URL's query), inside a worker."""
    bridge: Any = getattr(js, "stepstone", None)
    if is_nil(bridge):
        return {}
    found = py_value(bridge.params) or {}
    return {str(k): str(v) for k, v in found.items() if k not in ("script", "module")}


def _bridge() -> Any:
    bridge = getattr(js, "stepstone", None)
    if is_nil(bridge):
        raise EngineNotStarted(
            "serve() runs inside the stepstone worker bootstrap (/stepstone-worker.mjs), which loads your "
            "script; start it from the page with stepstone.browser.worker.start_worker(script)"
        )
    return bridge


_keep: list[Any] = []  # proxies JS holds for the life of the worker


def _listen(bridge: Any, handler: Callable[[str], None]) -> None:
    proxy = create_proxy(lambda data: handler(str(data)))
    _keep.append(proxy)
    bridge.listen(proxy)


def _engine_info(engine: Any, tab: str, role: str) -> dict[str, Any]:
    store = engine.store
    jobs = sorted({job.name for job in engine.jobs()}) if callable(getattr(engine, "jobs", None)) else []
    return {
        "protocol": PROTOCOL,
        "role": role,
        "tab": tab,
        "owner": getattr(engine, "owner", None),
        "store": getattr(store, "url", None) or type(store).__name__,
        "jobs": jobs,
    }


async def serve(engine: Any, *, tab: str | None = None) -> RpcServer | None:
    """Inside the worker: start ``engine`` and answer the page that started this worker.

    Call it last in the worker script (``await serve(engine)``). It returns once the page is
    answered; the worker then lives as long as its page. With a store only one tab may hold
    (``opfs://``) held by another tab, this worker forwards its page's calls to that tab's worker
    and takes the store over (starting ``engine``) once that tab closes; it then returns None.
    """
    bridge = _bridge()
    tab = tab or worker_params().get("tab") or uuid.uuid4().hex[:8]
    try:
        await engine.init()
    except StoreError as exc:
        channel = getattr(engine.store, "relay_channel", None)
        if getattr(exc, "code", None) != "store_busy" or not channel:
            raise
        relay = _Relay(engine, bridge, tab, channel)
        await relay.start()
        return None
    server = _serve_page(engine, bridge, tab)
    channel = getattr(engine.store, "relay_channel", None)
    if channel:
        _Leader(server, tab, channel).start()
    return server


def _serve_page(engine: Any, bridge: Any, tab: str) -> RpcServer:
    def post(client: str, text: str) -> None:
        if client == "page":
            bridge.post(text)
        else:  # a follower tab: _Leader posts it on the channel
            _Leader.post_to(client, text)

    server = RpcServer(engine, post, _engine_info(engine, tab, "engine"))
    _listen(bridge, lambda text: server.handle("page", text))
    return server


class _Channel:
    """A BroadcastChannel with a Python handler of JSON messages."""

    def __init__(self, name: str, handler: Callable[[dict[str, Any]], None]) -> None:
        self.channel = js.BroadcastChannel.new(name)
        self._proxy = create_proxy(self._on_message)
        self._handler = handler
        self.channel.onmessage = self._proxy

    def _on_message(self, event: Any) -> None:
        try:
            message = json.loads(str(event.data))
        except (TypeError, ValueError):
            return
        if isinstance(message, dict):
            self._handler(message)

    def post(self, message: Mapping[str, Any]) -> None:
        self.channel.postMessage(json.dumps(message, separators=(",", ":")))

    def close(self) -> None:
        self.channel.onmessage = None
        self.channel.close()
        self._proxy.destroy()


def _tab_lock(channel: str, tab: str) -> str:
    return f"{channel}:tab:{tab}"


class _Leader:
    """The worker that holds the store: answers the workers of other tabs on the channel, and
    stops the streams of tabs that closed (their tab lock is free)."""

    current: _Leader | None = None

    def __init__(self, server: RpcServer, tab: str, channel: str) -> None:
        self.server = server
        self.tab = tab
        self.name = channel
        self.channel = _Channel(channel, self._on_message)
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        _Leader.current = self
        self.channel.post({"k": "leader", "tab": self.tab})
        self._reaper = asyncio.ensure_future(self._reap())

    @classmethod
    def post_to(cls, client: str, text: str) -> None:
        leader = cls.current
        if leader is not None and client.startswith("tab:"):
            leader.channel.post({"k": "reply", "to": client[4:], "m": text})

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("k")
        if kind == "who":
            self.channel.post({"k": "leader", "tab": self.tab})
        elif kind == "forward" and message.get("to") == self.tab and isinstance(message.get("m"), str):
            self.server.handle(f"tab:{message.get('from')}", message["m"])

    async def _reap(self) -> None:
        prefix = _tab_lock(self.name, "")
        while True:
            await asyncio.sleep(2.0)
            remote = {c for c in self.server.clients() if c.startswith("tab:")}
            if not remote:
                continue
            try:
                alive = {name[len(prefix) :] for name in await held_lock_names(prefix)}
            except Exception:  # no Web Locks: streams of closed tabs end with the leader
                return
            for client in remote:
                if client[4:] not in alive:
                    self.server.drop_client(client)


class _Relay:
    """A worker whose store another tab holds: forwards its page's messages to that tab's worker,
    waits for the store, then starts its own engine and answers the page itself."""

    def __init__(self, engine: Any, bridge: Any, tab: str, channel: str) -> None:
        self.engine = engine
        self.bridge = bridge
        self.tab = tab
        self.name = channel
        self.leader: str | None = None
        self.buffered: list[str] = []
        self.calls: set[Any] = set()
        self.streams: set[Any] = set()
        self.server: RpcServer | None = None
        self.channel = _Channel(channel, self._on_channel)
        self._lock: WebLock | None = None
        self._task: asyncio.Task[None] | None = None
        self._ask: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._lock = await request_lock(_tab_lock(self.name, self.tab), if_available=True)
        _listen(self.bridge, self._from_page)
        self._ask = asyncio.ensure_future(self._ask_for_leader())
        self._task = asyncio.ensure_future(self._take_over())

    async def _ask_for_leader(self) -> None:
        delay = 0.05
        while self.leader is None and self.server is None:
            self.channel.post({"k": "who"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _info(self) -> dict[str, Any]:
        return {**_engine_info(self.engine, self.tab, "relay"), "leader": self.leader}

    def _to_page(self, message: Mapping[str, Any]) -> None:
        self.bridge.post(json.dumps(message, separators=(",", ":")))

    def _from_page(self, text: str) -> None:
        if self.server is not None:
            self.server.handle("page", text)
            return
        try:
            message = json.loads(text)
        except ValueError:
            return
        kind = message.get("k")
        if kind == "hello":
            self._to_page({"k": "ready", "info": self._info()})
            return
        if kind == "call":
            self.calls.add(message.get("id"))
        elif kind == "iter":
            self.streams.add(message.get("id"))
        elif kind == "close":
            self.streams.discard(message.get("id"))
        if self.leader is None:
            self.buffered.append(text)
        else:
            self.channel.post({"k": "forward", "to": self.leader, "from": self.tab, "m": text})

    def _on_channel(self, message: dict[str, Any]) -> None:
        if self.server is not None:
            return
        kind = message.get("k")
        if kind == "leader" and isinstance(message.get("tab"), str) and message["tab"] != self.tab:
            if self.leader is not None and self.leader != message["tab"]:
                self._abandon(f"the tab that executed runs on {self.name} went away")
            self.leader = message["tab"]
            buffered, self.buffered = self.buffered, []
            for text in buffered:
                self.channel.post({"k": "forward", "to": self.leader, "from": self.tab, "m": text})
        elif kind == "reply" and message.get("to") == self.tab and isinstance(message.get("m"), str):
            text = message["m"]
            with contextlib.suppress(ValueError, AttributeError):
                reply = json.loads(text)
                if reply.get("k") in ("ok", "err"):
                    self.calls.discard(reply.get("id"))
                if reply.get("k") in ("end", "err"):
                    self.streams.discard(reply.get("id"))
            self.bridge.post(text)

    def _abandon(self, why: str) -> None:
        """Calls and streams in flight went to a worker that is gone: tell the page (its hooks retry)."""
        error = encode_error(ServerUnavailable(f"{why}; reconnecting"))
        for call_id in sorted(self.calls, key=str):
            self._to_page({"k": "err", "id": call_id, "e": error})
        for stream_id in sorted(self.streams, key=str):
            self._to_page({"k": "err", "id": stream_id, "e": error})
        self.calls.clear()
        self.streams.clear()

    async def _take_over(self) -> None:
        try:
            await self.engine.store.init(wait=True)  # until the tab that holds it lets go
            await self.engine.init()
        except StepstoneError as exc:
            log.error("stepstone: this tab could not take over %s: %s", self.name, exc)
            return
        server = RpcServer(self.engine, self._post_from_server, _engine_info(self.engine, self.tab, "engine"))
        self.server = server
        self.channel.close()
        if self._ask is not None:
            self._ask.cancel()
        self._abandon(f"this tab executes the runs of {self.name} now")
        buffered, self.buffered = self.buffered, []
        for text in buffered:
            server.handle("page", text)
        _Leader(server, self.tab, self.name).start()
        if self._lock is not None:
            self._lock.release()

    def _post_from_server(self, client: str, text: str) -> None:
        if client == "page":
            self.bridge.post(text)
        else:
            _Leader.post_to(client, text)
