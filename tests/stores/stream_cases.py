"""The StreamStore contract (Durable Streams persistence), as plain async cases: stdlib + stepstone
only, so any store that claims streams runs the same rules. Each case takes a fresh, initialised,
empty store and raises AssertionError on a broken rule. Time is passed in (``now``), so expiry is
tested without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stepstone._errors import (
    ContentTypeMismatch,
    InvalidStreamRequest,
    ProducerFenced,
    ProducerSeqGap,
    StreamClosedError,
    StreamConflict,
    StreamGone,
    StreamNotFound,
    StreamSeqConflict,
)
from stepstone._stream_models import AppendRequest, NewStream, ProducerRef, format_offset

Case = Callable[[Any], Awaitable[None]]
STREAM_CASES: dict[str, Case] = {}
T0 = 1_900_000_000.0


def case(fn: Case) -> Case:
    STREAM_CASES[fn.__name__] = fn
    return fn


async def _raises(exc: type[BaseException], awaitable: Awaitable[Any]) -> BaseException:
    try:
        await awaitable
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


async def _text(store: Any, path: str, after: tuple[int, int] = (0, 0), limit: int = 1 << 30) -> bytes:
    info = await store.stream_get(path, T0)
    result = await store.stream_read(info.id, after, limit)
    return b"".join(r.data for r in result.records)


async def _json(store: Any, path: str, after: tuple[int, int] = (0, 0)) -> list[Any]:
    return list(json.loads(b"[" + b",".join(await _records(store, path, after)) + b"]"))


async def _records(store: Any, path: str, after: tuple[int, int] = (0, 0)) -> list[bytes]:
    info = await store.stream_get(path, T0)
    return [r.data for r in (await store.stream_read(info.id, after, 1 << 30)).records]


async def _append(store: Any, path: str, data: bytes, ct: str = "text/plain", **kw: Any) -> Any:
    return await store.stream_append(path, AppendRequest(data, ct, **kw), T0)


def _p(pid: str, epoch: int, seq: int) -> ProducerRef:
    return ProducerRef(pid, epoch, seq)


# -- create ------------------------------------------------------------------------------------
@case
async def test_create_is_idempotent_for_the_same_config_and_refuses_another(store: Any) -> None:
    first = await store.stream_create(NewStream("a", "text/plain", ttl=60), T0)
    assert first.created and first.info.tail == (0, 0) and first.info.content_type == "text/plain"
    again = await store.stream_create(NewStream("a", "TEXT/PLAIN; charset=utf-8", ttl=60), T0)
    assert not again.created and again.info.id == first.info.id
    await _raises(StreamConflict, store.stream_create(NewStream("a", "text/plain", ttl=61), T0))
    await _raises(StreamConflict, store.stream_create(NewStream("a", "application/json", ttl=60), T0))
    await _raises(StreamConflict, store.stream_create(NewStream("a", "text/plain", ttl=60, closed=True), T0))


@case
async def test_create_defaults_to_octet_stream_and_stores_the_initial_body(store: Any) -> None:
    result = await store.stream_create(NewStream("b", None, body=b"hello"), T0)
    assert result.info.content_type == "application/octet-stream"
    assert result.info.tail == (1, 5)
    assert await _text(store, "b") == b"hello"


@case
async def test_create_closed_keeps_the_body_as_the_whole_content(store: Any) -> None:
    result = await store.stream_create(NewStream("c", "text/plain", closed=True, body=b"all"), T0)
    assert result.info.closed
    await _raises(StreamClosedError, _append(store, "c", b"more"))
    assert await _text(store, "c") == b"all"


# -- append and read ---------------------------------------------------------------------------
@case
async def test_offsets_increase_and_a_read_returns_what_follows_an_offset(store: Any) -> None:
    await store.stream_create(NewStream("s", "text/plain"), T0)
    tails = [(await _append(store, "s", chunk)).tail for chunk in (b"ab", b"cde", b"f")]
    assert tails == [(1, 2), (2, 5), (3, 6)]
    assert [format_offset(t) for t in tails] == sorted(format_offset(t) for t in tails)
    assert await _text(store, "s") == b"abcdef"
    assert await _text(store, "s", tails[0]) == b"cdef"
    assert await _text(store, "s", tails[2]) == b""
    assert await _text(store, "s", (99, 99)) == b""


@case
async def test_a_read_pages_by_bytes_but_always_returns_one_record(store: Any) -> None:
    await store.stream_create(NewStream("p", "text/plain"), T0)
    for i in range(10):
        await _append(store, "p", bytes([65 + i]) * 10)
    info = await store.stream_get("p", T0)
    page = await store.stream_read(info.id, (0, 0), 25)
    assert [r.data[:1] for r in page.records] == [b"A", b"B"]
    assert page.tail == (10, 100)
    tiny = await store.stream_read(info.id, (0, 0), 1)
    assert len(tiny.records) == 1


@case
async def test_reading_near_the_end_of_a_long_stream_returns_only_the_tail(store: Any) -> None:
    await store.stream_create(NewStream("long", "text/plain"), T0)
    last = None
    for i in range(3000):
        last = (await _append(store, "long", f"{i:05d}".encode())).tail
    assert last is not None
    before_last = (last[0] - 2, last[1] - 10)
    assert await _text(store, "long", before_last) == b"0299802999"


@case
async def test_json_streams_flatten_one_level_of_array(store: Any) -> None:
    await store.stream_create(NewStream("j", "application/json", body=b"[]"), T0)
    assert (await store.stream_get("j", T0)).tail == (0, 0)
    await _append(store, "j", b'[{"a":1}, {"b":2}]', "application/json")
    await _append(store, "j", b"[[1,2],[3]]", "application/json; charset=utf-8")
    await _append(store, "j", b' "s" ', "application/json")
    assert await _json(store, "j") == [{"a": 1}, {"b": 2}, [1, 2], [3], "s"]


@case
async def test_bad_json_and_empty_arrays_are_refused_and_store_nothing(store: Any) -> None:
    await store.stream_create(NewStream("j", "application/json"), T0)
    for body in (b"[]", b"{nope", b"NaN", b"\xff"):
        await _raises(InvalidStreamRequest, _append(store, "j", body, "application/json"))
    await _raises(InvalidStreamRequest, _append(store, "j", b"{", "application/json", producer=_p("w", 0, 0)))
    assert (await store.stream_get("j", T0)).tail == (0, 0)
    # the refused batch did not advance the producer: seq 0 is still the next one
    result = await _append(store, "j", b"1", "application/json", producer=_p("w", 0, 0))
    assert result.appended and not result.duplicate


@case
async def test_content_type_must_match_the_streams(store: Any) -> None:
    await store.stream_create(NewStream("t", "text/plain"), T0)
    await _raises(ContentTypeMismatch, _append(store, "t", b"x", "application/json"))
    assert (await _append(store, "t", b"x", "Text/Plain; charset=utf-8")).tail == (1, 1)


@case
async def test_stream_seq_must_grow_lexicographically(store: Any) -> None:
    await store.stream_create(NewStream("q", "text/plain"), T0)
    await _append(store, "q", b"a", stream_seq="09")
    await _append(store, "q", b"b", stream_seq="10")
    await _raises(StreamSeqConflict, _append(store, "q", b"c", stream_seq="10"))
    await _raises(StreamSeqConflict, _append(store, "q", b"c", stream_seq="1"))
    assert await _text(store, "q") == b"ab"


@case
async def test_missing_and_deleted_streams_refuse_appends(store: Any) -> None:
    await _raises(StreamNotFound, _append(store, "nope", b"x"))
    assert await store.stream_get("nope", T0) is None


# -- idempotent producers ------------------------------------------------------------------------
@case
async def test_producer_duplicates_are_acknowledged_without_writing(store: Any) -> None:
    await store.stream_create(NewStream("w", "text/plain"), T0)
    first = await _append(store, "w", b"a", producer=_p("p1", 0, 0))
    assert first.appended and first.producer_seq == 0
    await _append(store, "w", b"b", producer=_p("p1", 0, 1))
    dup = await _append(store, "w", b"a", producer=_p("p1", 0, 0))
    assert dup.duplicate and not dup.appended and dup.producer_seq == 1
    assert await _text(store, "w") == b"ab"


@case
async def test_producer_gaps_stale_epochs_and_epoch_bumps(store: Any) -> None:
    await store.stream_create(NewStream("w", "text/plain"), T0)
    gap = await _raises(ProducerSeqGap, _append(store, "w", b"x", producer=_p("p", 0, 3)))
    assert isinstance(gap, ProducerSeqGap) and gap.expected == 0 and gap.received == 3
    await _append(store, "w", b"a", producer=_p("p", 0, 0))
    gap = await _raises(ProducerSeqGap, _append(store, "w", b"x", producer=_p("p", 0, 5)))
    assert isinstance(gap, ProducerSeqGap) and gap.expected == 1
    await _raises(InvalidStreamRequest, _append(store, "w", b"x", producer=_p("p", 1, 1)))
    await _append(store, "w", b"b", producer=_p("p", 1, 0))
    fenced = await _raises(ProducerFenced, _append(store, "w", b"x", producer=_p("p", 0, 1)))
    assert isinstance(fenced, ProducerFenced) and fenced.current_epoch == 1
    await _append(store, "w", b"c", producer=_p("other", 0, 0))
    assert await _text(store, "w") == b"abc"


@case
async def test_concurrent_producer_batches_land_once_in_seq_order(store: Any) -> None:
    await store.stream_create(NewStream("w", "text/plain"), T0)

    async def send(seq: int) -> Any:
        for _ in range(50):
            try:
                return await _append(store, "w", f"{seq},".encode(), producer=_p("p", 0, seq))
            except ProducerSeqGap:
                await asyncio.sleep(0)
        raise AssertionError("never accepted")

    await asyncio.gather(*(send(i) for i in reversed(range(20))))
    await asyncio.gather(*(send(i) for i in range(20)))  # all duplicates now
    assert await _text(store, "w") == b"".join(f"{i},".encode() for i in range(20))


# -- close -----------------------------------------------------------------------------------------
@case
async def test_close_is_idempotent_and_final(store: Any) -> None:
    await store.stream_create(NewStream("c", "text/plain", body=b"x"), T0)
    closed = await store.stream_append("c", AppendRequest(b"", "application/weird", close=True), T0)
    assert closed.closed and closed.tail == (1, 1) and not closed.appended
    again = await store.stream_append("c", AppendRequest(b"", None, close=True), T0)
    assert again.closed and again.tail == (1, 1)
    err = await _raises(StreamClosedError, _append(store, "c", b"y"))
    assert isinstance(err, StreamClosedError) and err.tail == format_offset((1, 1))
    await _raises(StreamClosedError, _append(store, "c", b"y", close=True))
    assert (await store.stream_get("c", T0)).closed


@case
async def test_append_and_close_by_a_producer_deduplicates_its_retry(store: Any) -> None:
    await store.stream_create(NewStream("c", "text/plain"), T0)
    done = await _append(store, "c", b"last", producer=_p("p", 2, 0), close=True)
    assert done.closed and done.appended
    retry = await _append(store, "c", b"last", producer=_p("p", 2, 0), close=True)
    assert retry.duplicate and retry.closed and retry.producer_seq == 0
    await _raises(StreamClosedError, _append(store, "c", b"more", producer=_p("p", 2, 1)))
    assert await _text(store, "c") == b"last"


# -- delete ----------------------------------------------------------------------------------------
@case
async def test_delete_then_recreate_gives_a_fresh_stream(store: Any) -> None:
    await store.stream_create(NewStream("d", "text/plain", body=b"old"), T0)
    await _append(store, "d", b"x", producer=_p("p", 0, 0))
    assert await store.stream_delete("d", T0) is True
    assert await store.stream_get("d", T0) is None
    await _raises(StreamNotFound, store.stream_delete("d", T0))
    await store.stream_create(NewStream("d", "application/json"), T0)
    assert await _text(store, "d") == b""
    # no producer state carried over
    assert (await _append(store, "d", b"1", "application/json", producer=_p("p", 0, 0))).appended


# -- forks -----------------------------------------------------------------------------------------
@case
async def test_a_fork_reads_its_source_up_to_the_fork_point_then_its_own(store: Any) -> None:
    await store.stream_create(NewStream("src", "text/plain", body=b"ab"), T0)
    mid = (await _append(store, "src", b"cd")).tail
    await _append(store, "src", b"ef")
    fork = await store.stream_create(NewStream("f", None, fork_from="src", fork_offset=mid), T0)
    assert fork.info.content_type == "text/plain" and fork.info.tail == mid
    await _append(store, "src", b"gh")
    await _append(store, "f", b"XY")
    assert await _text(store, "f") == b"abcdXY"
    assert await _text(store, "f", (1, 2)) == b"cdXY"
    assert await _text(store, "src") == b"abcdefgh"
    default = await store.stream_create(NewStream("f2", "text/plain", fork_from="src"), T0)
    assert default.info.tail == (await store.stream_get("src", T0)).tail


@case
async def test_fork_sub_offsets_take_part_of_the_next_append(store: Any) -> None:
    await store.stream_create(NewStream("b", "text/plain", body=b"hello"), T0)
    await store.stream_create(
        NewStream("bf", None, fork_from="b", fork_offset=(0, 0), fork_sub_offset=3, body=b"XY"), T0
    )
    assert await _text(store, "bf") == b"helXY"
    await store.stream_create(NewStream("j", "application/json", body=b"[1,2,3,4]"), T0)
    await store.stream_create(NewStream("jf", None, fork_from="j", fork_offset=(0, 0), fork_sub_offset=2), T0)
    assert await _json(store, "jf") == [1, 2]
    await _raises(
        InvalidStreamRequest,
        store.stream_create(NewStream("x", None, fork_from="b", fork_offset=(0, 0), fork_sub_offset=6), T0),
    )
    await _raises(
        InvalidStreamRequest,
        store.stream_create(NewStream("x", None, fork_from="j", fork_offset=(0, 0), fork_sub_offset=5), T0),
    )
    chained = NewStream("bff", None, fork_from="bf", fork_offset=(0, 0), fork_sub_offset=2)
    await store.stream_create(chained, T0)
    assert await _text(store, "bff") == b"he"


@case
async def test_fork_errors_change_nothing(store: Any) -> None:
    await store.stream_create(NewStream("src", "text/plain", body=b"a"), T0)
    await _raises(StreamNotFound, store.stream_create(NewStream("f", None, fork_from="missing"), T0))
    await _raises(
        InvalidStreamRequest, store.stream_create(NewStream("f", None, fork_from="src", fork_offset=(5, 5)), T0)
    )
    await _raises(StreamConflict, store.stream_create(NewStream("f", "application/json", fork_from="src"), T0))
    assert await store.stream_get("f", T0) is None
    # no fork holds a reference, so the source deletes for good
    assert await store.stream_delete("src", T0) is True


@case
async def test_a_fork_does_not_inherit_producers_closure_or_stream_seq(store: Any) -> None:
    await store.stream_create(NewStream("src", "text/plain"), T0)
    await _append(store, "src", b"a", producer=_p("p", 3, 0), stream_seq="5")
    await store.stream_append("src", AppendRequest(b"", None, close=True), T0)
    fork = await store.stream_create(NewStream("f", None, fork_from="src"), T0)
    assert not fork.info.closed
    assert (await _append(store, "f", b"b", producer=_p("p", 0, 0), stream_seq="1")).appended
    assert await _text(store, "f") == b"ab"


@case
async def test_deleting_a_forked_source_soft_deletes_it_until_the_last_fork_goes(store: Any) -> None:
    await store.stream_create(NewStream("l0", "text/plain", body=b"A"), T0)
    await store.stream_create(NewStream("l1", None, fork_from="l0"), T0)
    await _append(store, "l1", b"B")
    await store.stream_create(NewStream("l2", None, fork_from="l1"), T0)
    assert await store.stream_delete("l1", T0) is False
    gone = await store.stream_get("l1", T0)
    assert gone is not None and gone.deleted
    await _raises(StreamGone, _append(store, "l1", b"x"))
    await _raises(StreamGone, store.stream_delete("l1", T0))
    await _raises(StreamConflict, store.stream_create(NewStream("l1", "text/plain"), T0))
    await _raises(StreamConflict, store.stream_create(NewStream("l3", None, fork_from="l1"), T0))
    await _append(store, "l2", b"C")
    assert await _text(store, "l2") == b"ABC"
    assert await store.stream_delete("l0", T0) is False
    assert await store.stream_delete("l2", T0) is True
    assert await store.stream_get("l1", T0) is None
    assert await store.stream_get("l0", T0) is None
    assert await store.stream_paths(T0) == []


# -- expiry ----------------------------------------------------------------------------------------
@case
async def test_a_sliding_ttl_restarts_on_touch_and_expires_when_idle(store: Any) -> None:
    info = (await store.stream_create(NewStream("t", "text/plain", ttl=10), T0)).info
    assert info.expiry() == T0 + 10
    assert await store.stream_get("t", T0 + 9) is not None
    await store.stream_touch(info.id, T0 + 9)
    await store.stream_append("t", AppendRequest(b"x", "text/plain"), T0 + 15)
    assert await store.stream_get("t", T0 + 24) is not None
    assert await store.stream_get("t", T0 + 25.5) is None
    await _raises(StreamNotFound, store.stream_append("t", AppendRequest(b"x", "text/plain"), T0 + 26))
    assert (await store.stream_create(NewStream("t", "text/plain"), T0 + 26)).created


@case
async def test_expires_at_is_absolute(store: Any) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 5))
    info = (await store.stream_create(NewStream("e", "text/plain", expires_at=stamp), T0)).info
    assert info.expires_at == stamp and info.expiry() == T0 + 5
    await store.stream_touch(info.id, T0 + 4)
    assert await store.stream_get("e", T0 + 4.9) is not None
    assert await store.stream_get("e", T0 + 5) is None


@case
async def test_an_expired_source_with_forks_is_soft_deleted_and_forks_inherit_expiry(store: Any) -> None:
    await store.stream_create(NewStream("src", "text/plain", ttl=10, body=b"data"), T0)
    fork = (await store.stream_create(NewStream("f", None, fork_from="src", ttl=100), T0)).info
    assert fork.ttl == 100
    inherited = (await store.stream_create(NewStream("g", None, fork_from="src"), T0)).info
    assert inherited.ttl == 10
    assert await store.stream_sweep(T0 + 11) == 2  # src (soft) and g
    src = await store.stream_get("src", T0 + 11)
    assert src is not None and src.deleted
    assert await _text(store, "f") == b"data"
    assert await store.stream_paths(T0 + 11) == ["f"]
    await store.stream_delete("f", T0 + 11)
    assert await store.stream_get("src", T0 + 11) is None


# -- waiting ---------------------------------------------------------------------------------------
@case
async def test_wait_returns_at_once_with_data_and_wakes_on_append_and_close(store: Any) -> None:
    info = (await store.stream_create(NewStream("w", "text/plain", body=b"a"), T0)).info
    started = time.monotonic()
    await store.stream_wait(info.id, (0, 0), 5)
    assert time.monotonic() - started < 1

    async def later(req: AppendRequest) -> None:
        await asyncio.sleep(0.05)
        await store.stream_append("w", req, T0)

    for req in (AppendRequest(b"b", "text/plain"), AppendRequest(b"", None, close=True)):
        tail = (await store.stream_get("w", T0)).tail
        task = asyncio.ensure_future(later(req))
        started = time.monotonic()
        await store.stream_wait(info.id, tail, 5)
        assert time.monotonic() - started < 2
        await task
    started = time.monotonic()
    await store.stream_wait(info.id, (2, 2), 0.1)  # closed: never waits
    assert time.monotonic() - started < 1
