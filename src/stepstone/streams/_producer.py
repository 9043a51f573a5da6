"""``IdempotentProducer``: fire-and-forget appends, batched by linger time and size, several batches
in flight, exactly once.

Every batch carries ``(Producer-Id, Producer-Epoch, Producer-Seq)``; the server drops a batch it
already has, so a batch is retried after a network error or a 5xx until it is acknowledged — a
server restart loses nothing this process appended. Batches that arrive out of order (``409`` with
``Producer-Expected-Seq``) wait for their predecessors and go again. A refused batch (``400``, …)
is reported and the ones after it are renumbered so the sequence has no hole. A ``403`` means
another producer took the id over with a newer epoch: with ``auto_claim`` this producer claims the
next epoch and resends what is unacknowledged, otherwise it stops with :class:`StaleEpochError`.

Stdlib + asyncio only (the I/O goes through the stream's transport); must never import httpx,
``js`` or ``pyodide``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from .._errors import ProducerClosed, ProducerFenced, ProducerSeqGap, StreamHTTPError, TransportError
from .._stream_models import is_json_type
from ._stream import DurableStream, encode_message
from ._wire import error_for

__all__ = ["IdempotentProducer"]

log = logging.getLogger("stepstone.streams")

_READY, _SENDING, _WAITING = "ready", "sending", "waiting"


class _Batch:
    __slots__ = ("body", "count", "failing_since", "not_before", "sent_as_head", "seq", "state")

    def __init__(self, body: bytes, count: int, seq: int) -> None:
        self.body = body
        self.count = count
        self.seq = seq
        self.state = _READY
        self.not_before = 0.0
        self.failing_since: float | None = None
        self.sent_as_head = False


class IdempotentProducer:
    """Exactly-once, pipelined writes to one stream under a stable ``producer_id``.

        producer = IdempotentProducer(stream, "ingest-1", auto_claim=True)
        for event in events:
            producer.append(event)        # returns at once; JSON streams take any JSON value
        await producer.flush()           # everything acknowledged (or raised / sent to on_error)
        await producer.close()           # flush, then close the stream (EOF), idempotently

    ``linger`` (seconds) and ``max_batch_bytes`` decide when a batch goes; ``max_in_flight`` how
    many go at once. ``on_error(exc)`` receives refused batches; without it ``flush`` raises the
    first one. ``retry_timeout`` bounds how long one batch is retried through network errors.
    """

    def __init__(
        self,
        stream: DurableStream,
        producer_id: str,
        *,
        epoch: int = 0,
        auto_claim: bool = False,
        linger: float = 0.005,
        max_batch_bytes: int = 1 << 20,
        max_in_flight: int = 5,
        on_error: Callable[[Exception], Any] | None = None,
        retry_timeout: float = 30.0,
    ) -> None:
        if not producer_id:
            raise ValueError("producer_id must be a non-empty string")
        if epoch < 0 or linger < 0 or max_batch_bytes <= 0 or max_in_flight <= 0:
            raise ValueError("epoch and linger must be >= 0; max_batch_bytes and max_in_flight > 0")
        if stream.content_type is None:
            raise ValueError("the stream's content type is unknown: get it from DurableStream.create or .connect")
        self.stream = stream
        self.producer_id = producer_id
        self.epoch = epoch
        self.auto_claim = auto_claim
        self.linger = linger
        self.max_batch_bytes = max_batch_bytes
        self.max_in_flight = max_in_flight
        self.on_error = on_error
        self.retry_timeout = retry_timeout
        self.next_seq = 0
        self.last_offset: str | None = None
        self._json = is_json_type(stream.content_type)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._batches: deque[_Batch] = deque()
        self._inflight: dict[asyncio.Task[None], _Batch] = {}
        self._claimed = not auto_claim
        self._resequence: tuple[str, int] | None = None
        self._errors: list[Exception] = []
        self._fenced: Exception | None = None
        self._closed = False
        self._close_result: str | None = None
        self._runner: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- public API ----------------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        """Messages waiting for their batch to be sent."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Batches sent or queued but not yet acknowledged."""
        return len(self._batches)

    def append(self, message: Any) -> None:
        """Queue one message and return at once (see :func:`~._stream.encode_message`)."""
        if self._fenced is not None:
            raise self._fenced
        if self._closed:
            raise ProducerClosed(f"producer {self.producer_id!r} is closed")
        data = encode_message(message, self._json)
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._idle.clear()
        if self._pending_bytes >= self.max_batch_bytes:
            self._enqueue()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._on_linger)

    async def flush(self) -> None:
        """Send what is pending and wait until every batch is acknowledged or refused."""
        self._enqueue()
        await self._idle.wait()
        if self._fenced is not None:
            raise self._fenced
        if self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise first

    async def detach(self) -> None:
        """Flush and stop, leaving the stream open (another producer may take over)."""
        self._closed = True
        try:
            await self.flush()
        finally:
            await self._stop()

    async def close(self, final_message: Any = None) -> str:
        """Flush, then close the stream (with an optional last message); returns the final offset.
        Safe to retry: the close carries producer headers, so a repeat is deduplicated."""
        if self._close_result is not None:
            return self._close_result
        self._closed = True
        try:
            await self.flush()
            self._close_result = await self._close_stream(final_message)
            return self._close_result
        finally:
            await self._stop()

    # -- batching ------------------------------------------------------------------------------
    def _on_linger(self) -> None:
        self._timer = None
        self._enqueue()

    def _enqueue(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        items, self._pending, self._pending_bytes = self._pending, [], 0
        body = b"[" + b",".join(items) + b"]" if self._json else b"".join(items)
        self._batches.append(_Batch(body, len(items), self.next_seq))
        self.next_seq += 1
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        self._wake.set()

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    # -- the sender ----------------------------------------------------------------------------
    def _start_sends(self, now: float) -> float | None:
        """Start every batch allowed to go; return when the next delayed one may go."""
        if self._resequence is not None:
            if not self._inflight:
                self._renumber()
            else:
                return None
        limit = self.max_in_flight if self._claimed else 1
        next_time: float | None = None
        for batch in self._batches:
            if len(self._inflight) >= limit:
                break
            if batch.state != _READY:
                continue
            if batch.not_before > now:
                next_time = batch.not_before if next_time is None else min(next_time, batch.not_before)
                continue
            batch.state = _SENDING
            batch.sent_as_head = batch is self._batches[0]
            self._inflight[asyncio.ensure_future(self._send(batch))] = batch
        return next_time

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            next_time = self._start_sends(loop.time())
            if not self._batches and not self._inflight:
                if not self._pending:
                    self._idle.set()
                await self._wake.wait()
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            timeout = None if next_time is None else max(0.0, next_time - loop.time())
            done, _ = await asyncio.wait(
                {*self._inflight, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not waiter.done():
                waiter.cancel()
            for task in done:
                batch = self._inflight.pop(task, None)  # type: ignore[arg-type]
                if batch is not None:
                    self._settle(batch, task.exception(), loop.time())

    async def _send(self, batch: _Batch) -> None:
        headers = {
            "content-type": self.stream.content_type or "application/octet-stream",
            "producer-id": self.producer_id,
            "producer-epoch": str(self.epoch),
            "producer-seq": str(batch.seq),
        }
        response = await self.stream.transport.request(
            "POST", self.stream.url, {**self.stream.headers, **headers}, batch.body
        )
        if response.status >= 400:
            raise error_for(response, self.stream.url)
        offset = response.header("stream-next-offset")
        if offset and (self.last_offset is None or offset > self.last_offset):
            self.last_offset = offset

    def _settle(self, batch: _Batch, error: BaseException | None, now: float) -> None:
        if self._fenced is not None or batch not in self._batches:
            return  # the producer stopped meanwhile
        batch.failing_since = None if not isinstance(error, TransportError | StreamHTTPError) else batch.failing_since
        if error is None:
            self._claimed = True
            self._batches.remove(batch)
            for other in self._batches:
                if other.state == _WAITING:
                    other.state = _READY
            return
        if isinstance(error, ProducerSeqGap) and error.expected < batch.seq:
            batch.state = _READY
            if batch.sent_as_head:
                # nothing earlier was outstanding, yet the server expects an earlier seq (it forgot
                # this producer, e.g. its state expired): renumber from what it expects
                self._request_resequence("gap", error.expected)
            elif self._batches[0] is not batch:
                batch.state = _WAITING  # an earlier batch is still on its way; its ack frees this one
            return
        if isinstance(error, ProducerFenced):
            if self.auto_claim:
                batch.state = _READY
                self._request_resequence("claim", error.current_epoch + 1)
                return
            self._fence(error)
            return
        transient = isinstance(error, TransportError) or (
            isinstance(error, StreamHTTPError) and (error.status >= 500 or error.status == 429)
        )
        if transient:
            if batch.failing_since is None:
                batch.failing_since = now
            failing = now - batch.failing_since
            if failing < self.retry_timeout:
                batch.state = _READY
                batch.not_before = now + min(0.02 + failing / 2, 1.0)
                return
            # The server may or may not have this batch: renumbering later ones could overwrite
            # it or drop them as duplicates, so the producer stops instead.
            self._stop_with(error if isinstance(error, Exception) else RuntimeError(repr(error)))
            return
        self._fail(batch, error if isinstance(error, Exception) else RuntimeError(repr(error)))

    def _request_resequence(self, kind: str, value: int) -> None:
        """Renumber once nothing is in flight: a claim (new epoch) wins over a gap; the highest
        epoch and the lowest hole win among their kind."""
        current = self._resequence
        if (
            current is None
            or (kind == "claim" and (current[0] == "gap" or value > current[1]))
            or (kind == "gap" and current[0] == "gap" and value < current[1])
        ):
            self._resequence = (kind, value)

    def _renumber(self) -> None:
        """With nothing in flight: give the unacknowledged batches fresh, gapless seqs."""
        assert self._resequence is not None
        kind, value = self._resequence
        self._resequence = None
        if kind == "claim":  # a new epoch: everything unacknowledged goes again from seq 0
            self.epoch = max(value, self.epoch + 1)
            renumbered = list(self._batches)
            seq = 0
        else:  # a hole at ``value``: the batches from there on move down to fill it
            renumbered = [b for b in self._batches if b.seq >= value]
            seq = value
        for batch in renumbered:
            batch.seq, batch.state, batch.not_before, batch.sent_as_head = seq, _READY, 0.0, False
            seq += 1
        self.next_seq = seq

    def _fail(self, batch: _Batch, error: Exception) -> None:
        log.warning("stepstone streams: producer %r lost a batch of %d: %s", self.producer_id, batch.count, error)
        self._batches.remove(batch)
        self._request_resequence("gap", batch.seq)
        self._report(error)

    def _fence(self, error: ProducerFenced) -> None:
        self._stop_with(error)

    def _stop_with(self, error: Exception) -> None:
        """Give up: what is unacknowledged is lost to this producer; append and flush raise."""
        lost = sum(b.count for b in self._batches) + len(self._pending)
        if lost:
            log.warning("stepstone streams: producer %r stopped with %d messages unacknowledged: %s",
                        self.producer_id, lost, error)  # fmt: skip
        self._fenced = error
        self._batches.clear()
        self._pending.clear()
        self._report(error)

    def _report(self, error: Exception) -> None:
        if self.on_error is None:
            self._errors.append(error)
            return
        try:
            result = self.on_error(error)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callbacks.add(task)
                task.add_done_callback(self._callbacks.discard)
        except Exception:
            log.exception("stepstone streams: on_error failed")

    async def _close_stream(self, final_message: Any) -> str:
        body = b""
        if final_message is not None:
            data = encode_message(final_message, self._json)
            body = b"[" + data + b"]" if self._json else data
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = 0.05
        while True:
            headers = {
                "content-type": self.stream.content_type or "application/octet-stream",
                "producer-id": self.producer_id,
                "producer-epoch": str(self.epoch),
                "producer-seq": str(self.next_seq),
                "stream-closed": "true",
            }
            try:
                response = await self.stream.transport.request(
                    "POST", self.stream.url, {**self.stream.headers, **headers}, body
                )
                if response.status >= 400:
                    raise error_for(response, self.stream.url)
            except ProducerFenced as exc:
                if not self.auto_claim:
                    self._fenced = exc
                    raise
                self.epoch, self.next_seq = exc.current_epoch + 1, 0
                continue
            except (TransportError, StreamHTTPError) as exc:
                transient = isinstance(exc, TransportError) or exc.status >= 500
                if not transient or loop.time() - started > self.retry_timeout:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self.next_seq += 1
            offset = response.header("stream-next-offset") or ""
            self.last_offset = offset or self.last_offset
            return offset
