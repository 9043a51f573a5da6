"""The OPFS store's file format: an append-only log of framed JSON records. Stdlib only.

A frame is an 8-byte header, the payload's length and its CRC-32 (both little-endian uint32),
then the payload, UTF-8 JSON. A log is read frame by frame until the first frame that is cut off,
fails its checksum or is not JSON: everything from there on is a write that never completed (the
tab died mid-write, or the OS lost the tail of an unflushed write) and is cut away. Since every
store call writes whole frames, what survives is always a prefix of the calls that returned.

The first frame of every file is its header: ``{"stepstone": "opfs", "schema": 1, "gen": N}``.
A compacted file (``gen`` > 1) ends its snapshot with ``{"snapshot": N}``; until that frame is
in the file, the older generation is the one to read.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

__all__ = ["SCHEMA", "decode_frames", "encode_frame", "header"]

#: The format of the records (bumped when they change; a newer file is refused).
SCHEMA = 1
_HEAD = struct.Struct("<II")
#: A frame longer than this is damage, not data (no store call writes 256 MiB at once).
_MAX_FRAME = 256 << 20


def encode_frame(record: Any) -> bytes:
    payload = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def header(gen: int) -> bytes:
    return encode_frame({"stepstone": "opfs", "schema": SCHEMA, "gen": gen})


def decode_frames(data: bytes | memoryview) -> tuple[list[Any], int]:
    """The records of ``data`` up to the first damaged frame, and where that frame starts (the
    length of the good part)."""
    view = memoryview(data)
    records: list[Any] = []
    pos = 0
    size = len(view)
    while pos + _HEAD.size <= size:
        length, crc = _HEAD.unpack_from(view, pos)
        start = pos + _HEAD.size
        end = start + length
        if length == 0 or length > _MAX_FRAME or end > size:
            break
        payload = view[start:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            records.append(json.loads(bytes(payload).decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            break
        pos = end
    return records, pos
