"""The reserved subscription APIs under ``{stream root}/__ds/``: a subscription watches streams
(by glob pattern and/or explicit list) and, when one has data past its acknowledged offset, wakes
a consumer — by POSTing a signed webhook, or by appending a wake event to a stream that
``pull-wake`` workers claim from. Wakes carry a generation and a bearer token; acks and releases
from a stale generation are refused (``409 FENCED``).

Routes: ``PUT|GET|DELETE subscriptions/<id>``, ``POST subscriptions/<id>/streams``,
``DELETE subscriptions/<id>/streams/<path>``, ``POST subscriptions/<id>/{callback,claim,ack,release}``,
``GET jwks.json``. Subscriptions live in this process's memory (like the reference server's);
the streams they watch are durable. Server-only; never imported by ``stepstone/__init__.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..._errors import StreamError
from ..._http import Transport, default_transport
from ..._stream_models import AppendRequest, format_offset
from ...stores._contract import StreamStore
from ._asgi import Request, Send, send_error, send_response
from ._sign import CallbackTokens, WebhookSigner

__all__ = ["Subscriptions", "glob_match"]

log = logging.getLogger("stepstone.server.streams")

_ZERO = format_offset((0, 0))
_BEFORE_FIRST = "-1"
_STATUS = {
    "INVALID_REQUEST": 400,
    "WEBHOOK_URL_REJECTED": 400,
    "TOKEN_INVALID": 401,
    "TOKEN_EXPIRED": 401,
    "SUBSCRIPTION_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "SUBSCRIPTION_ALREADY_EXISTS": 409,
    "FENCED": 409,
    "ALREADY_CLAIMED": 409,
    "NO_PENDING_WORK": 409,
    "INVALID_OFFSET": 409,
    "PAYLOAD_TOO_LARGE": 413,
}

#: The largest body a subscription API request may carry (a config or an ack), in bytes.
MAX_BODY = 1 << 20


class _Refused(Exception):
    def __init__(self, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra or {}


def _norm(path: str) -> str:
    return path.strip("/")


def glob_match(pattern: str, path: str) -> bool:
    """``*`` matches one path segment, ``**`` any number (zero included); the rest literally."""
    pat = [p for p in _norm(pattern).split("/") if p]
    parts = [p for p in _norm(path).split("/") if p]

    def match(pi: int, si: int) -> bool:
        while pi < len(pat) and si < len(parts):
            seg = pat[pi]
            if seg == "**":
                return any(match(pi + 1, i) for i in range(si, len(parts) + 1))
            if seg != "*" and seg.replace("%2A", "*").replace("%2a", "*") != parts[si]:
                return False
            pi, si = pi + 1, si + 1
        while pi < len(pat) and pat[pi] == "**":
            pi += 1
        return pi == len(pat) and si == len(parts)

    return match(0, 0)


def _webhook_url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return "webhook.url must be an http(s) URL"
    local = host == "localhost" or host.startswith("127.")
    if parts.scheme == "http":
        return None if local else "http webhook URLs are only allowed for localhost or 127.0.0.x"
    if host == "localhost":
        return "localhost webhook URLs must use http"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6:
        return "IPv6 webhook hosts are not accepted"
    if address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified:
        return "webhook.url must not target private or link-local hosts"
    return None


@dataclass
class _Link:
    path: str
    kinds: set[str]
    acked: str


@dataclass
class _Sub:
    id: str
    type: str
    config: dict[str, Any]
    base_url: str
    created_at: str
    links: dict[str, _Link] = field(default_factory=dict)
    status: str = "active"
    generation: int = 0
    wake_id: str | None = None
    snapshot: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    holder: str | None = None
    lease: asyncio.TimerHandle | None = None
    retries: int = 0
    retry: asyncio.TimerHandle | None = None

    @property
    def lease_ttl(self) -> float:
        return float(self.config["lease_ttl_ms"]) / 1000.0

    def end_wake(self) -> None:
        if self.lease is not None:
            self.lease.cancel()
            self.lease = None
        self.token = self.holder = self.wake_id = None
        self.snapshot = {}


def _parse_config(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Refused("INVALID_REQUEST", "the body must be a JSON object")
    kind = body.get("type")
    if kind not in ("webhook", "pull-wake"):
        raise _Refused("INVALID_REQUEST", 'type must be "webhook" or "pull-wake"')
    pattern = body.get("pattern")
    pattern = _norm(pattern) if isinstance(pattern, str) and pattern else None
    streams = body.get("streams") or []
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        raise _Refused("INVALID_REQUEST", "streams must be a list of stream paths")
    if pattern is None and not streams:
        raise _Refused("INVALID_REQUEST", "give a pattern or streams (or both)")
    ttl = body.get("lease_ttl_ms", 30_000)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1000 <= ttl <= 600_000:
        raise _Refused("INVALID_REQUEST", "lease_ttl_ms must be an integer from 1000 to 600000")
    webhook = body.get("webhook")
    url = webhook.get("url") if isinstance(webhook, dict) else None
    if kind == "webhook" and (not isinstance(url, str) or not url):
        raise _Refused("INVALID_REQUEST", "webhook subscriptions need webhook.url")
    wake = body.get("wake_stream")
    wake = _norm(wake) if isinstance(wake, str) and wake else None
    if kind == "pull-wake" and wake is None:
        raise _Refused("INVALID_REQUEST", "pull-wake subscriptions need wake_stream")
    description = body.get("description")
    return {
        "type": kind,
        "pattern": pattern,
        "streams": sorted({_norm(s) for s in streams}),
        "webhook": {"url": url} if kind == "webhook" else None,
        "wake_stream": wake,
        "lease_ttl_ms": ttl,
        "description": description if isinstance(description, str) else None,
    }


class Subscriptions:
    """Subscription state and routes for one streams app."""

    def __init__(self, store: StreamStore, max_body: int = MAX_BODY) -> None:
        self.store = store
        self.max_body = max_body
        self.signer = WebhookSigner()
        self.tokens = CallbackTokens()
        self.subs: dict[str, _Sub] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: Transport | None = None  # for webhooks, made on first delivery
        self._closing = False

    # -- hooks from the stream routes ----------------------------------------------------------
    def on_append(self, path: str) -> None:
        if self.subs and not self._closing:
            self._spawn(self._appended(path))

    def on_delete(self, path: str) -> None:
        for sub in self.subs.values():
            sub.links.pop(path, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _appended(self, path: str) -> None:
        async with self._lock:
            for sub in list(self.subs.values()):
                pattern = sub.config["pattern"]
                if pattern and glob_match(pattern, path):
                    link = sub.links.get(path)
                    self._link(sub, path, "glob", link.acked if link else _BEFORE_FIRST)
                if path in sub.links and sub.wake_id is None and sub.holder is None:
                    await self._maybe_wake(sub, path)

    async def shutdown(self) -> None:
        self._closing = True
        for sub in self.subs.values():
            sub.end_wake()
            if sub.retry is not None:
                sub.retry.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()

    # -- state helpers -------------------------------------------------------------------------
    def _link(self, sub: _Sub, path: str, kind: str, acked: str) -> None:
        link = sub.links.get(path)
        if link is None:
            sub.links[path] = _Link(path, {kind}, acked)
        else:
            link.kinds.add(kind)

    async def _tail(self, path: str) -> str:
        info = await self.store.stream_get(path, time.time())
        return _ZERO if info is None or info.deleted else info.next_offset

    async def _infos(self, sub: _Sub) -> list[dict[str, Any]]:
        out = []
        for link in sub.links.values():
            tail = await self._tail(link.path)
            out.append(
                {
                    "path": link.path,
                    "link_type": "explicit" if "explicit" in link.kinds else "glob",
                    "acked_offset": link.acked,
                    "tail_offset": tail,
                    "has_pending": tail > link.acked,
                }
            )
        return out

    async def _pending(self, sub: _Sub) -> str | None:
        for info in await self._infos(sub):
            if info["has_pending"]:
                return str(info["path"])
        return None

    async def _maybe_wake(self, sub: _Sub, triggered_by: str) -> None:
        if sub.wake_id is None and sub.holder is None and await self._pending(sub) is not None:
            await self._wake(sub, triggered_by)

    async def _wake(self, sub: _Sub, triggered_by: str) -> None:
        sub.generation += 1
        sub.wake_id = f"w_{os.urandom(12).hex()}"
        infos = await self._infos(sub)
        sub.snapshot = {i["path"]: i["tail_offset"] for i in infos}
        if sub.type == "webhook":
            sub.token = self.tokens.issue(f"subscription:{sub.id}", sub.generation)
            self._extend_lease(sub)
            self._spawn(self._deliver(sub))
            return
        event = {
            "type": "wake",
            "subscription_id": sub.id,
            "stream": triggered_by,
            "generation": sub.generation,
            "ts": int(time.time() * 1000),
        }
        try:
            await self.store.stream_append(
                sub.config["wake_stream"],
                AppendRequest(json.dumps(event).encode(), "application/json"),
                time.time(),
            )
        except StreamError as exc:
            log.warning("stepstone streams: cannot write the wake event of %s: %s", sub.id, exc)

    async def _next_wake(self, sub: _Sub) -> bool:
        pending = await self._pending(sub)
        if pending is None:
            return False
        await self._wake(sub, pending)
        return True

    def _extend_lease(self, sub: _Sub) -> None:
        if sub.lease is not None:
            sub.lease.cancel()
        sub.lease = asyncio.get_running_loop().call_later(sub.lease_ttl, self._lease_expired, sub)

    def _lease_expired(self, sub: _Sub) -> None:
        sub.lease = None
        sub.end_wake()
        if self.subs.get(sub.id) is sub and not self._closing:
            self._spawn(self._locked_next_wake(sub))

    async def _locked_next_wake(self, sub: _Sub) -> None:
        async with self._lock:
            if sub.wake_id is None and sub.holder is None:
                await self._next_wake(sub)

    async def _deliver(self, sub: _Sub) -> None:
        if sub.wake_id is None or sub.token is None or self.subs.get(sub.id) is not sub:
            return
        body = json.dumps(
            {
                "subscription_id": sub.id,
                "wake_id": sub.wake_id,
                "generation": sub.generation,
                "streams": await self._infos(sub),
                "callback_url": f"{sub.base_url}/__ds/subscriptions/{sub.id}/callback",
                "callback_token": sub.token,
            }
        )
        headers = {"content-type": "application/json", "webhook-signature": self.signer.sign(body)}
        try:
            if self._transport is None:
                self._transport = default_transport()
            url = sub.config["webhook"]["url"]
            response = await self._transport.request("POST", url, headers, body.encode(), timeout=10.0)
            if response.status >= 400:
                raise RuntimeError(f"the webhook answered {response.status}")
        except Exception as exc:
            log.warning("stepstone streams: webhook delivery for %s failed: %s", sub.id, exc)
            self._schedule_retry(sub)
            return
        sub.status, sub.retries = "active", 0
        try:
            done = response.json().get("done") is True
        except (ValueError, AttributeError):
            done = False
        if done:
            async with self._lock:
                for path, tail in sub.snapshot.items():
                    if path in sub.links:
                        sub.links[path].acked = tail
                sub.end_wake()
                await self._next_wake(sub)

    def _schedule_retry(self, sub: _Sub) -> None:
        if self._closing:
            return
        sub.retries += 1
        delay = min(1.0 * 2 ** (sub.retries - 1), 60.0)
        delay = max(0.0, delay * (1 + random.uniform(-0.2, 0.2)))
        sub.status = "failed"
        if sub.retry is not None:
            sub.retry.cancel()
        sub.retry = asyncio.get_running_loop().call_later(delay, lambda: self._spawn(self._deliver(sub)))

    # -- routes --------------------------------------------------------------------------------
    async def handle(self, request: Request, send: Send, rest: str) -> None:
        try:
            status, body = await self._route(request, rest)
        except _Refused as exc:
            await send_error_body(send, _STATUS.get(exc.code, 400), exc.code, str(exc), exc.extra)
            return
        except StreamError as exc:
            await send_error(send, exc.status, exc.code, str(exc))
            return
        if body is None:
            await send_response(send, status, [])
        elif status == 200 and rest == "jwks.json":
            data = json.dumps(body).encode()
            await send_response(
                send,
                200,
                [(b"content-type", b"application/jwk-set+json"), (b"cache-control", b"public, max-age=300")],
                data,
            )
        else:
            await send_response(send, status, [(b"content-type", b"application/json")], json.dumps(body).encode())

    async def _route(self, request: Request, rest: str) -> tuple[int, Any]:
        method = request.method
        if rest == "jwks.json":
            _allow(method, "GET")
            return 200, self.signer.jwks()
        parts = rest.split("/")
        if len(parts) < 2 or parts[0] != "subscriptions" or not parts[1]:
            raise _Refused("SUBSCRIPTION_NOT_FOUND", "no such Durable Streams control route")
        sub_id, tail = parts[1], parts[2:]
        body = await _json(request, self.max_body) if method in ("PUT", "POST") else None
        async with self._lock:
            if not tail:
                return await self._base(request, sub_id, body)
            if tail[0] == "streams":
                if len(tail) == 1:
                    _allow(method, "POST")
                    return await self._add_streams(sub_id, body)
                _allow(method, "DELETE")
                self._sub(sub_id)
                link = self.subs[sub_id].links.get(_norm("/".join(tail[1:])))
                if link is not None:
                    link.kinds.discard("explicit")
                    if not link.kinds:
                        del self.subs[sub_id].links[link.path]
                return 204, None
            if len(tail) == 1 and tail[0] in ("callback", "claim", "ack", "release"):
                _allow(method, "POST")
                return await self._action(request, sub_id, tail[0], body)
        raise _Refused("SUBSCRIPTION_NOT_FOUND", "no such Durable Streams control route")

    def _sub(self, sub_id: str) -> _Sub:
        sub = self.subs.get(sub_id)
        if sub is None:
            raise _Refused("SUBSCRIPTION_NOT_FOUND", f"no subscription {sub_id!r}")
        return sub

    async def _base(self, request: Request, sub_id: str, body: Any) -> tuple[int, Any]:
        if request.method == "GET":
            return 200, await self._serialize(self._sub(sub_id))
        if request.method == "DELETE":
            sub = self.subs.pop(sub_id, None)
            if sub is not None:
                sub.end_wake()
                if sub.retry is not None:
                    sub.retry.cancel()
            return 204, None
        _allow(request.method, "PUT")
        config = _parse_config(body)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        existing = self.subs.get(sub_id)
        if existing is not None:
            if existing.config["hash"] != digest:
                raise _Refused("SUBSCRIPTION_ALREADY_EXISTS", f"subscription {sub_id!r} exists with another config")
            return 200, await self._serialize(existing)
        if config["webhook"] is not None:
            problem = _webhook_url_problem(config["webhook"]["url"])
            if problem is not None:
                raise _Refused("WEBHOOK_URL_REJECTED", problem)
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        sub = _Sub(sub_id, config["type"], {**config, "hash": digest}, request.base_url(), created)
        for path in config["streams"]:
            self._link(sub, path, "explicit", await self._tail(path))
        if config["pattern"]:
            for path in await self.store.stream_paths(time.time()):
                if glob_match(config["pattern"], path):
                    self._link(sub, path, "glob", await self._tail(path))
        self.subs[sub_id] = sub
        return 201, await self._serialize(sub)

    async def _add_streams(self, sub_id: str, body: Any) -> tuple[int, Any]:
        streams = body.get("streams") if isinstance(body, dict) else None
        if not isinstance(streams, list) or not all(isinstance(s, str) and s for s in streams):
            raise _Refused("INVALID_REQUEST", "streams must be a non-empty list of stream paths")
        sub = self._sub(sub_id)
        for path in streams:
            self._link(sub, _norm(path), "explicit", await self._tail(_norm(path)))
        return 204, None

    async def _action(self, request: Request, sub_id: str, action: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _Refused("INVALID_REQUEST", "the body must be a JSON object")
        sub = self._sub(sub_id)
        if action == "claim":
            return await self._claim(sub, body)
        if action != "callback" and sub.type != "pull-wake":
            raise _Refused("INVALID_REQUEST", "this subscription is not pull-wake")
        self._check_token(sub, request, body)
        if action == "release":
            sub.end_wake()
            await self._next_wake(sub)
            return 204, None
        await self._apply_acks(sub, body.get("acks"))
        self._extend_lease(sub)
        next_wake = False
        if body.get("done") is True:
            sub.end_wake()
            next_wake = await self._next_wake(sub)
        return 200, {"ok": True, "next_wake": next_wake}

    async def _claim(self, sub: _Sub, body: dict[str, Any]) -> tuple[int, Any]:
        worker = body.get("worker")
        if not isinstance(worker, str) or not worker:
            raise _Refused("INVALID_REQUEST", "worker must be a non-empty string")
        if sub.type != "pull-wake":
            raise _Refused("INVALID_REQUEST", "this subscription is not pull-wake")
        if sub.holder is not None:
            raise _Refused(
                "ALREADY_CLAIMED",
                f"held by {sub.holder}",
                {"current_holder": sub.holder, "generation": sub.generation},
            )
        pending = await self._pending(sub)
        if pending is None:
            raise _Refused("NO_PENDING_WORK", "the subscription has no pending work")
        if sub.wake_id is None:
            await self._wake(sub, pending)
        sub.holder = worker
        sub.token = self.tokens.issue(f"subscription:{sub.id}", sub.generation)
        self._extend_lease(sub)
        return 200, {
            "wake_id": sub.wake_id,
            "generation": sub.generation,
            "token": sub.token,
            "streams": await self._infos(sub),
            "lease_ttl_ms": sub.config["lease_ttl_ms"],
        }

    def _check_token(self, sub: _Sub, request: Request, body: dict[str, Any]) -> None:
        auth = request.header("authorization") or ""
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise _Refused("TOKEN_INVALID", "a Bearer token is required")
        problem, epoch = self.tokens.check(auth[7:].strip(), f"subscription:{sub.id}")
        if problem is not None:
            raise _Refused(problem, "the token is expired" if problem == "TOKEN_EXPIRED" else "the token is invalid")
        if epoch != sub.generation or body.get("generation") != sub.generation or body.get("wake_id") != sub.wake_id:
            raise _Refused("FENCED", "the wake generation is stale")

    async def _apply_acks(self, sub: _Sub, acks: Any) -> None:
        if not acks:
            return
        if not isinstance(acks, list):
            raise _Refused("INVALID_REQUEST", "acks must be a list")
        planned: list[tuple[_Link, str]] = []
        for ack in acks:
            path = _norm(str(ack.get("stream") or ack.get("path") or "")) if isinstance(ack, dict) else ""
            offset = ack.get("offset") if isinstance(ack, dict) else None
            link = sub.links.get(path)
            if not path or link is None or not isinstance(offset, str):
                raise _Refused("INVALID_OFFSET", "an ack names a stream this subscription does not watch")
            if offset == _BEFORE_FIRST or offset < link.acked or offset > await self._tail(path):
                raise _Refused("INVALID_OFFSET", f"ack offset {offset!r} is before the committed one or past the tail")
            planned.append((link, offset))
        for link, offset in planned:
            link.acked = offset

    async def _serialize(self, sub: _Sub) -> dict[str, Any]:
        config = sub.config
        out: dict[str, Any] = {
            "id": sub.id,
            "subscription_id": sub.id,
            "type": sub.type,
            "pattern": config["pattern"],
            "streams": [
                {"path": i["path"], "link_type": i["link_type"], "acked_offset": i["acked_offset"]}
                for i in await self._infos(sub)
            ],
            "webhook": None,
            "wake_stream": config["wake_stream"],
            "lease_ttl_ms": config["lease_ttl_ms"],
            "created_at": sub.created_at,
            "status": sub.status,
            "description": config["description"],
        }
        if config["webhook"] is not None:
            out["webhook"] = {
                "url": config["webhook"]["url"],
                "signing": {"alg": "ed25519", "kid": self.signer.kid, "jwks_url": f"{sub.base_url}/__ds/jwks.json"},
            }
        return {k: v for k, v in out.items() if v is not None}


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise _Refused("METHOD_NOT_ALLOWED", f"use {allowed} here")


async def _json(request: Request, limit: int) -> Any:
    body = await request.body(limit)
    if body is None:
        raise _Refused("PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _Refused("INVALID_REQUEST", f"invalid JSON body: {exc}") from exc
    except RecursionError:
        raise _Refused("INVALID_REQUEST", "the JSON body is nested too deeply") from None


async def send_error_body(send: Send, status: int, code: str, message: str, extra: dict[str, Any]) -> None:
    body = json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
    await send_response(send, status, [(b"content-type", b"application/json")], body)
