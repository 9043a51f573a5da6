"""The SSE framing and parser (stepstone._sse): spec behaviour, chunking, round trips."""

from __future__ import annotations

import json
import random

import pytest

from stepstone._sse import SSEMessage, SSEParser, format_comment, format_event


def parse_all(*chunks: str | bytes) -> tuple[list[SSEMessage], SSEParser]:
    parser = SSEParser()
    out: list[SSEMessage] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out, parser


def test_format_event_writes_id_event_and_data_then_a_blank_line() -> None:
    assert format_event('{"a":1}', id="7", event="log:write") == b'id: 7\nevent: log:write\ndata: {"a":1}\n\n'


def test_format_event_splits_multiline_data_on_every_kind_of_line_break() -> None:
    assert format_event("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_format_event_with_retry_and_empty_data() -> None:
    assert format_event("", retry=1500) == b"retry: 1500\ndata: \n\n"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "1\n2"}, "line break"),
        ({"id": "1\x002"}, "NUL"),
        ({"event": "a\rb"}, "line break"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
    ],
)
def test_format_event_refuses_fields_that_would_break_the_framing(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_event("x", **kwargs)  # type: ignore[arg-type]


def test_format_comment_is_ignored_by_the_parser() -> None:
    assert format_comment("keep-alive") == b": keep-alive\n\n"
    assert format_comment() == b":\n\n"
    assert format_comment("two\nlines") == b": two\n: lines\n\n"
    messages, _ = parse_all(format_comment("keep-alive"), format_comment("x\ny"))
    assert messages == []


def test_parses_a_complete_event() -> None:
    messages, parser = parse_all(b"id: 3\nevent: step:start\ndata: hello\n\n")
    assert messages == [SSEMessage("3", "step:start", "hello", None)]
    assert parser.last_event_id == "3"


def test_event_type_defaults_to_message_and_id_to_none() -> None:
    messages, parser = parse_all("data: x\n\n")
    assert messages == [SSEMessage(None, "message", "x")]
    assert parser.last_event_id is None


def test_multiline_data_is_joined_with_lf() -> None:
    messages, _ = parse_all("data: a\ndata:b\ndata:  c\n\n")
    assert [m.data for m in messages] == ["a\nb\n c"]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_ending_works(eol: str) -> None:
    stream = eol.join(["id: 1", "event: e", "data: a", "data: b", "", "data: c", "", ""])
    messages, _ = parse_all(stream)
    assert messages == [SSEMessage("1", "e", "a\nb"), SSEMessage("1", "message", "c")]


def test_crlf_split_between_two_chunks_is_one_line_end() -> None:
    messages, _ = parse_all("data: a\r", "\ndata: b\r", "\n\r", "\n")
    assert [m.data for m in messages] == ["a\nb"]


def test_cr_at_chunk_end_followed_by_cr_is_two_line_ends() -> None:
    messages, _ = parse_all("data: a\r", "\rdata: b\r\r")
    assert [m.data for m in messages] == ["a", "b"]


def test_leading_bom_is_dropped_only_at_the_start() -> None:
    messages, _ = parse_all("\ufeffdata: a\n\n", "\ufeffdata: b\n\n")
    # the second BOM is part of a field name, so that line is an unknown field and ignored
    assert [m.data for m in messages] == ["a"]


def test_bom_split_across_byte_chunks() -> None:
    raw = "\ufeffdata: ok\n\n".encode()
    messages, _ = parse_all(raw[:1], raw[1:2], raw[2:])
    assert [m.data for m in messages] == ["ok"]


def test_multibyte_utf8_split_across_chunks_is_decoded_once_whole() -> None:
    raw = format_event("héllo → 世界", id="1")
    for cut in range(1, len(raw)):
        messages, _ = parse_all(raw[:cut], raw[cut:])
        assert messages == [SSEMessage("1", "message", "héllo → 世界")], cut


def test_comments_and_unknown_fields_are_ignored() -> None:
    messages, _ = parse_all(": hi\nfoo: bar\ndata: x\n:another\n\n")
    assert messages == [SSEMessage(None, "message", "x")]


def test_block_without_data_dispatches_nothing_and_resets_the_event_type() -> None:
    messages, _ = parse_all("event: a\n\ndata: x\n\n")
    assert messages == [SSEMessage(None, "message", "x")]


def test_id_persists_to_later_events_and_can_be_reset() -> None:
    messages, parser = parse_all("id: 5\n\ndata: a\n\nid\ndata: b\n\n")
    assert [m.id for m in messages] == ["5", ""]
    assert parser.last_event_id == ""


def test_id_with_nul_is_ignored() -> None:
    messages, parser = parse_all("id: 1\n\nid: 2\x003\ndata: x\n\n")
    assert messages[0].id == "1"
    assert parser.last_event_id == "1"


def test_retry_sets_the_reconnection_time_only_when_all_digits() -> None:
    messages, parser = parse_all("retry: 2500\ndata: a\n\nretry: 1x\ndata: b\n\nretry: -3\n\n")
    assert [m.retry for m in messages] == [2500, None]
    assert parser.retry == 2500


def test_field_without_colon_has_empty_value() -> None:
    messages, _ = parse_all("data\ndata\n\n")
    assert [m.data for m in messages] == ["\n"]


def test_only_one_leading_space_is_stripped() -> None:
    messages, _ = parse_all("data:   three\n\n")
    assert messages[0].data == "  three"


def test_incomplete_event_waits_for_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed("id: 1\ndata: par") == []
    assert parser.feed("tial\n") == []
    assert parser.feed("\n") == [SSEMessage("1", "message", "partial")]


def test_random_chunking_of_a_long_stream_round_trips() -> None:
    rng = random.Random(1234)
    events = [
        (str(seq), rng.choice(["step:start", "log:write", "stream"]), json.dumps({"seq": seq, "text": "é\n✓" * seq}))
        for seq in range(200)
    ]
    raw = b"".join(format_event(data, id=i, event=e) + format_comment("ka") for i, e, data in events)
    for _ in range(20):
        parser = SSEParser()
        got: list[SSEMessage] = []
        pos = 0
        while pos < len(raw):
            size = rng.randint(1, 64)
            got.extend(parser.feed(raw[pos : pos + size]))
            pos += size
        assert [(m.id, m.event, m.data) for m in got] == events


def test_empty_chunks_are_harmless() -> None:
    messages, _ = parse_all(b"", "", b"data: x\n", b"", "\n")
    assert [m.data for m in messages] == ["x"]
