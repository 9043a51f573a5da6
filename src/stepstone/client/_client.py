"""``Client``: the stepstone HTTP API with the Engine's method names, over any transport.

    client = Client("http://127.0.0.1:8000/api", headers={"authorization": "Bearer s3cret"})
    run = await client.trigger("sync-users", {"org_id": "o1"})
    async for event in client.subscribe(run.id):      # resumes after drops, ends after the last event
        print(event.seq, event.type, event.data)

One implementation of the logic: URLs, JSON, error mapping, SSE parsing (:mod:`stepstone._sse`),
reconnects with ``Last-Event-ID``. The I/O is a :class:`~stepstone.client.Transport`, picked by
platform when none is given (fetch and EventSource in Pyodide, httpx in CPython). Stdlib + asyncio
only; must never import httpx, js or pyodide at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from .._errors import RunNotFound, ServerUnavailable, WaitTimeout
from .._http import EventSourceTransport, Response, Transport, default_transport
from .._models import EVENT_TYPES, Event, Run, RunChange, RunList, RunStatus, StepRecord, TriggerResult, page_filter
from .._sse import SSEMessage
from ._connection import Backoff, Connection, FetchConnection, Gap, NativeConnection
from ._schedules import ClientSchedules
from ._wire import (
    JobInfo,
    error_from_response,
    event_from_message,
    run_change_from_json,
    run_from_json,
    run_list_from_json,
    step_from_json,
    trigger_result_from_json,
)

__all__ = ["Client"]

log = logging.getLogger("stepstone.client")


class Client:
    """Talks to a stepstone server; same method names and return types as :class:`~stepstone.Engine`.

    ``api_url`` is the API's base (``http://host:8000/api``; in a page, ``/api`` works). ``headers``
    go with every request (auth). Options, in seconds: ``timeout`` per request; ``reconnect_timeout``,
    how long a live stream keeps trying to reach a server that is gone before raising
    :class:`~stepstone.ServerUnavailable`; ``idle_timeout``, how long a stream may stay silent (the
    server sends keep-alives) before it is treated as dropped; ``max_backoff``, the longest pause
    between reconnects. ``event_source=False`` keeps live streams on the streaming GET even where the
    browser's ``EventSource`` could carry them (see :meth:`uses_event_source`).
    """

    def __init__(
        self,
        api_url: str,
        headers: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        *,
        timeout: float = 30.0,
        reconnect_timeout: float = 15.0,
        idle_timeout: float = 60.0,
        max_backoff: float = 2.0,
        event_source: bool = True,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self.transport: Transport = transport if transport is not None else default_transport()
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.idle_timeout = idle_timeout
        self.max_backoff = max_backoff
        self.event_source = event_source
        self.schedules = ClientSchedules(self)
        """Cron schedules on the server, with ``engine.schedules``'s method names."""

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport's connections."""
        await self.transport.aclose()

    # -- plumbing ------------------------------------------------------------------------------
    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        query = [(k, v) for k, v in (params or {}).items() if v is not None]
        flat: list[tuple[str, Any]] = []
        for key, value in query:
            if isinstance(value, list | tuple):
                flat.extend((key, item) for item in value)
            else:
                flat.append((key, value))
        return f"{self.api_url}/{path}" + (f"?{urlencode(flat)}" if flat else "")

    async def _call(self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        url = self.url(path, params)
        headers = {"accept": "application/json", **self.headers}
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
            headers["content-type"] = "application/json"
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.transport.request(method, url, headers, content, self.timeout)
        except TimeoutError:
            raise ServerUnavailable(f"{method} {url}: no answer within {self.timeout} s") from None
        if response.status >= 400:
            raise error_from_response(response.status, response.body, method, url)
        if response.status == 204 or not response.body:
            return None
        try:
            return response.json()
        except ValueError:
            raise ServerUnavailable(f"{method} {url}: the answer is not JSON; is the api_url right?") from None

    # -- the API -------------------------------------------------------------------------------
    async def trigger(
        self,
        job_name: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> TriggerResult:
        """Create a run (``POST /trigger``) of the job's newest version (or ``version``);
        ``created=False`` when the idempotency key matched."""
        name = getattr(job_name, "name", job_name)
        body: dict[str, Any] = {"jobName": name, "input": input}
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if concurrency_key is not None:
            body["concurrencyKey"] = concurrency_key
        if labels is not None:
            body["labels"] = dict(labels)
        if version is not None:
            body["version"] = version
        data = await self._call("POST", "trigger", body=body)
        result = trigger_result_from_json(data)
        if result is None:  # the server sent only the id: fetch the run
            run = await self.get_run(str(data["runId"]))
            if run is None:
                raise RunNotFound(f"run {data['runId']!r} vanished right after it was triggered")
            result = trigger_result_from_json({"run": run.to_json(), "created": data.get("created", True)})
            assert result is not None
        return result

    async def get_run(self, run_id: str) -> Run | None:
        """The run, or None when there is no run with that id."""
        try:
            data = await self._call("GET", "run", {"runId": run_id})
        except RunNotFound:
            return None
        return run_from_json(data)

    async def _existing(self, run_id: str) -> Run:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
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
        """A page of runs, newest first; ``.total`` counts every match; ``parent_id``: the child
        runs of that run."""
        statuses = page_filter(status, limit, offset)
        params: dict[str, Any] = {"jobName": job_name, "limit": limit, "offset": offset, "parentId": parent_id}
        if statuses:
            params["status"] = ",".join(statuses)
        for key, value in (labels or {}).items():
            params[f"label.{key}"] = value
        data = await self._call("GET", "runs", params)
        return run_list_from_json(data, limit, offset)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        data = await self._call("GET", "steps", {"runId": run_id})
        items = data.get("steps", []) if isinstance(data, Mapping) else data
        return [step_from_json(item) for item in items]

    async def retry(self, run_id: str) -> Run:
        """Put a failed or cancelled run back to pending; it resumes from its first unfinished step."""
        return run_from_json(await self._call("POST", "retry", {"runId": run_id}))

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run: a pending one at once; in a running or suspended one ``RunCancelled`` is
        raised inside the job (which may clean up), then it ends ``cancelled``."""
        return run_from_json(await self._call("POST", "cancel", {"runId": run_id}))

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None:
        """Send event ``name`` with ``data`` to a run (``POST /event``): its next
        ``step.wait_for_event(name)`` takes it. RunNotFound, InvalidRunState (finished), InvalidInput."""
        await self._call("POST", "event", body={"runId": run_id, "name": name, "data": data})

    async def delete_run(self, run_id: str) -> None:
        """Delete a run with its steps and events."""
        await self._call("DELETE", "run", {"runId": run_id})

    async def jobs(self) -> list[JobInfo]:
        """The jobs the server can run (``GET /jobs``)."""
        data = await self._call("GET", "jobs")
        items = data.get("jobs", []) if isinstance(data, Mapping) else data
        return [JobInfo(item) for item in items]

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is completed, failed or cancelled; raises WaitTimeout after ``timeout``.

        Rides out a server that restarts meanwhile, as :meth:`subscribe` does: ServerUnavailable
        only once the server stayed out of reach for ``reconnect_timeout`` seconds."""
        backoff = self._backoff()
        try:
            async with asyncio.timeout(timeout):
                run = await self._existing_retrying(run_id, backoff)
                while not run.is_terminal:
                    async with contextlib.aclosing(self.subscribe(run_id, from_seq=run.last_seq + 1)) as events:
                        async for event in events:
                            if event.is_terminal:
                                break
                    run = await self._existing_retrying(run_id, backoff)
                return run
        except TimeoutError:
            raise WaitTimeout(f"run {run_id!r} is still not finished after {timeout} s") from None

    async def _existing_retrying(self, run_id: str, backoff: Backoff) -> Run:
        while True:
            try:
                run = await self._existing(run_id)
            except ServerUnavailable as exc:
                await backoff.wait(exc)
                continue
            backoff.progressed()
            return run

    # -- live streams --------------------------------------------------------------------------
    def uses_event_source(self) -> bool:
        """Whether live streams go through the platform's native SSE client (the browser's
        ``EventSource``): when the transport has one, ``event_source`` is on and there are no
        ``headers`` to send (an EventSource cannot send any: a bearer token needs the streaming fetch)."""
        return self.event_source and not self.headers and isinstance(self.transport, EventSourceTransport)

    async def _open(
        self, path: str, params: Mapping[str, Any], last_id: str | None, event_types: Sequence[str] | None = None
    ) -> Connection:
        """Open a live stream: with ``event_types``, a native EventSource listening for them; else a
        streaming GET. An error answer raises the exception it maps to."""
        url = self.url(path, params)
        if event_types is not None:
            assert isinstance(self.transport, EventSourceTransport)
            try:
                async with asyncio.timeout(self.timeout):
                    opened = await self.transport.event_source(url, event_types, self.timeout)
            except TimeoutError:
                raise ServerUnavailable(f"GET {url}: no answer within {self.timeout} s") from None
            if isinstance(opened, Response):
                raise error_from_response(opened.status, opened.body, "GET", url)
            return NativeConnection(url, opened, self.idle_timeout)
        headers = {"accept": "text/event-stream", "cache-control": "no-cache", **self.headers}
        if last_id is not None:
            headers["last-event-id"] = last_id
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.transport.stream(url, headers, self.timeout)
        except TimeoutError:
            raise ServerUnavailable(f"GET {url}: no answer within {self.timeout} s") from None
        if response.status == 200:
            return FetchConnection(response, self.idle_timeout)
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                async for chunk in response:
                    body += chunk.encode() if isinstance(chunk, str) else chunk
                    if len(body) > 65536:
                        break
        except TimeoutError:
            pass
        finally:
            await response.aclose()
        raise error_from_response(response.status, bytes(body), "GET", url)

    def _backoff(self) -> Backoff:
        return Backoff(0.05, self.max_backoff, self.reconnect_timeout)

    async def subscribe(self, run_id: str, from_seq: int = 0) -> AsyncGenerator[Event, None]:
        """Every event of the run from ``from_seq`` on, then live ones, ending after the terminal
        event. A dropped connection is resumed with ``Last-Event-ID``: no gap, no duplicate.

        In a browser with no ``headers`` set this rides the page's ``EventSource`` (which resumes by
        itself); otherwise a streaming GET. Raises RunNotFound for an unknown run (a run deleted
        while you follow it just ends the stream), Unauthorized, or ServerUnavailable once the
        server stayed out of reach for ``reconnect_timeout`` seconds.
        """
        next_seq = max(from_seq, 0)
        backoff = self._backoff()
        connected_once = False
        last_terminal = False  # the last event received, on any connection, was a terminal one
        native = self.uses_event_source()

        def ended() -> bool:  # the server ends a run's stream right after its final event
            return last_terminal

        while True:
            params = {"runId": run_id, "from": next_seq}
            last_id = str(next_seq - 1) if next_seq > 0 else None
            try:
                connection = await self._open("subscribe", params, last_id, EVENT_TYPES if native else None)
            except RunNotFound:
                if connected_once:
                    return
                raise
            except ServerUnavailable as exc:
                await backoff.wait(exc)
                continue
            connected_once = True
            try:
                async for message in connection.messages(backoff, ended):
                    event = event_from_message(run_id, message)
                    if event is None or event.seq < next_seq:
                        continue
                    if event.seq > next_seq:
                        raise Gap()
                    next_seq = event.seq + 1
                    last_terminal = event.is_terminal
                    backoff.progressed()
                    yield event
            except (ServerUnavailable, Gap) as exc:
                if isinstance(exc, Gap) and native:
                    # An EventSource hears only the event types it listens for: a newer server's
                    # new type leaves a hole. The streaming GET sees every event.
                    native = False
                    log.info("stepstone: run %r: an event the EventSource does not know; using fetch", run_id)
                await backoff.wait(
                    exc
                    if isinstance(exc, ServerUnavailable)
                    else ServerUnavailable(f"the event stream of run {run_id!r} kept skipping seq {next_seq}")
                )
                continue
            finally:
                await connection.aclose()
            # The server ends a run's stream after its final terminal event (a retried run goes on
            # past earlier ones). Ended otherwise (a restart, a proxy, an EventSource refused on
            # reconnecting): see whether more can come.
            if last_terminal:
                return
            try:
                run = await self.get_run(run_id)
            except ServerUnavailable as exc:
                await backoff.wait(exc)
                continue
            if run is None or (run.is_terminal and run.last_seq < next_seq):
                return
            await backoff.wait(ServerUnavailable(f"the event stream of run {run_id!r} keeps ending early"))

    async def subscribe_runs(
        self, from_version: int | None = None, job_name: str | None = None
    ) -> AsyncGenerator[RunChange, None]:
        """Tail run-level changes (created, status, progress, deleted), forever, resuming after drops.

        Pass the last ``version`` seen as ``from_version`` to resume with no gap; ``None`` starts
        with the changes after now.
        """
        version = from_version
        backoff = self._backoff()
        native = self.uses_event_source()
        if native and version is None:
            # The feed says where "now" is in an id-only frame, which an EventSource keeps to itself:
            # read the position first, so a stream that must be reopened resumes from there.
            with contextlib.suppress(ServerUnavailable):
                version = (await self.get_runs(job_name, limit=0)).version
        while True:
            params = {"from": version, "jobName": job_name}
            last_id = None if version is None else str(version)
            try:
                connection = await self._open("runs/subscribe", params, last_id, ("run:change",) if native else None)
            except ServerUnavailable as exc:
                await backoff.wait(exc)
                continue
            try:
                async for message in connection.messages(backoff):
                    change = _change_from_message(message)
                    if change is None or (version is not None and change.version <= version):
                        continue
                    version = change.version
                    backoff.progressed()
                    yield change
            except ServerUnavailable as exc:
                await backoff.wait(exc)
                continue
            finally:
                await connection.aclose()
                # An id sent with no data (the feed's position on connect) still moves us on.
                last_event_id = connection.last_event_id
                if version is None and last_event_id and last_event_id.isdigit():
                    version = int(last_event_id)
            await backoff.wait(ServerUnavailable("the run-changes stream keeps ending"))


def _change_from_message(message: SSEMessage) -> RunChange | None:
    try:
        data = json.loads(message.data)
    except ValueError:
        return None
    if not isinstance(data, Mapping) or "version" not in data:
        return None
    return run_change_from_json(data)
