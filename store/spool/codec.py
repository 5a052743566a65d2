"""The spool's on-disk record: a framed, checksummed, compact binary copy of one :class:`Batch`.

A record is ``frame | payload``. The frame is ``magic (4 bytes) | payload length (u32) |
crc32 of the payload (u32)``, so a reader can tell a complete record from one a crash cut
short (too few bytes, or a checksum that does not match) and cut the file there.

The payload is a fixed header (sequence number, point count, flags, time range, spooling
time) followed by the numpy columns as raw little-endian arrays (the optional server and
gateway timestamps when the batch has them, as flagged), and, when the batch has string
samples, a text section: positions (int32), UTF-8 lengths (u32), then the bytes. No
per-point Python objects except for the texts themselves.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..batch import Batch

__all__ = [
    "FRAME",
    "MAGIC",
    "RecordHeader",
    "decode_batch",
    "decode_header",
    "encode_batch",
    "frame",
    "read_frame",
]

MAGIC = b"TPS1"
FRAME = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
_HEAD = struct.Struct("<QIBqqq")  # seq, points, flags, ts_min, ts_max, spooled_ns
_HAS_TEXT = 1
_HAS_SERVER_TS = 2
_HAS_GATEWAY_TS = 4
_TEXT_COUNT = struct.Struct("<I")

_I4, _I8, _F8, _U1, _U4 = np.dtype("<i4"), np.dtype("<i8"), np.dtype("<f8"), np.dtype("u1"), np.dtype("<u4")


@dataclass(frozen=True, slots=True)
class RecordHeader:
    seq: int
    points: int
    flags: int
    ts_min: int  # 0 when the batch is empty
    ts_max: int
    spooled_ns: int


def encode_batch(batch: Batch, seq: int, spooled_ns: int) -> bytes:
    """The payload of ``batch`` (without the frame)."""
    n = len(batch)
    ts_min = int(batch.ts_ns.min()) if n else 0
    ts_max = int(batch.ts_ns.max()) if n else 0
    flags = (
        (_HAS_TEXT if batch.text is not None else 0)
        | (_HAS_SERVER_TS if batch.server_ts_ns is not None else 0)
        | (_HAS_GATEWAY_TS if batch.gateway_ts_ns is not None else 0)
    )
    parts = [
        _HEAD.pack(seq, n, flags, ts_min, ts_max, spooled_ns),
        batch.tag_id.astype(_I4, copy=False).tobytes(),
        batch.ts_ns.astype(_I8, copy=False).tobytes(),
        batch.value.astype(_F8, copy=False).tobytes(),
        batch.quality.tobytes(),
    ]
    for opt in (batch.server_ts_ns, batch.gateway_ts_ns):
        if opt is not None:
            parts.append(opt.astype(_I8, copy=False).tobytes())
    if batch.text is not None:
        idx = np.flatnonzero([t is not None for t in batch.text]).astype(_I4)
        blobs = [str(batch.text[i]).encode("utf-8") for i in idx]
        parts += [
            _TEXT_COUNT.pack(len(idx)),
            idx.tobytes(),
            np.fromiter((len(b) for b in blobs), dtype=_U4, count=len(blobs)).tobytes(),
            b"".join(blobs),
        ]
    return b"".join(parts)


def decode_header(payload: bytes | memoryview) -> RecordHeader:
    seq, n, flags, ts_min, ts_max, spooled_ns = _HEAD.unpack_from(payload, 0)
    return RecordHeader(seq, n, flags, ts_min, ts_max, spooled_ns)


def _take(
    buf: memoryview, pos: int, dtype: np.dtype[np.generic], n: int
) -> tuple[npt.NDArray[np.generic], int]:
    size = dtype.itemsize * n
    if pos + size > len(buf):
        raise ValueError("record payload shorter than its header says")
    # copied: the buffer belongs to a file read, and callers may keep or modify the arrays
    return np.frombuffer(buf, dtype=dtype, count=n, offset=pos).copy(), pos + size


def decode_batch(payload: bytes | memoryview) -> tuple[RecordHeader, Batch]:
    """Header and batch of a payload written by :func:`encode_batch`."""
    buf = memoryview(payload)
    head = decode_header(buf)
    n, pos = head.points, _HEAD.size
    tag_id, pos = _take(buf, pos, _I4, n)
    ts_ns, pos = _take(buf, pos, _I8, n)
    value, pos = _take(buf, pos, _F8, n)
    quality, pos = _take(buf, pos, _U1, n)
    server_ts = gateway_ts = None
    if head.flags & _HAS_SERVER_TS:
        server_ts, pos = _take(buf, pos, _I8, n)
    if head.flags & _HAS_GATEWAY_TS:
        gateway_ts, pos = _take(buf, pos, _I8, n)
    text: npt.NDArray[np.object_] | None = None
    if head.flags & _HAS_TEXT:
        (m,) = _TEXT_COUNT.unpack_from(buf, pos)
        pos += _TEXT_COUNT.size
        idx, pos = _take(buf, pos, _I4, m)
        lengths, pos = _take(buf, pos, _U4, m)
        text = np.full(n, None, dtype=object)
        for i, length in zip(idx.tolist(), lengths.tolist(), strict=True):
            text[i] = bytes(buf[pos : pos + length]).decode("utf-8")
            pos += length
    batch = Batch(
        tag_id.astype(np.int32), ts_ns.astype(np.int64), value.astype(np.float64),
        quality.astype(np.uint8), text,
        None if server_ts is None else server_ts.astype(np.int64),
        None if gateway_ts is None else gateway_ts.astype(np.int64),
    )
    return head, batch


def frame(payload: bytes) -> bytes:
    """``payload`` with its frame in front: what one append writes."""
    return FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def read_frame(buf: bytes | memoryview, pos: int) -> tuple[memoryview, int] | str:
    """The payload of the record at ``pos`` and the position after it, or why there is no
    complete, intact record there (a torn or corrupt tail)."""
    view = memoryview(buf)
    if pos + FRAME.size > len(view):
        return f"{len(view) - pos} bytes, shorter than a record frame"
    magic, length, crc = FRAME.unpack_from(view, pos)
    if magic != MAGIC:
        return "no record marker"
    start = pos + FRAME.size
    if start + length > len(view):
        return f"record of {length} bytes cut short at {len(view) - start}"
    payload = view[start : start + length]
    if zlib.crc32(payload) != crc:
        return "checksum mismatch"
    return payload, start + length
