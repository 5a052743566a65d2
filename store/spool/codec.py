"""The spool's on-disk record: a framed, checksummed, compact binary copy of one :class:`Batch`.

A record is ``frame | payload``. Two frame versions exist; a record says which by its magic:

- **v2** (``TPS2``, written since per-record damage detection): ``magic (4) | payload length
  (u32) | sequence number (u64) | points (u32) | crc32 of the payload (u32) | crc32 of the 24
  bytes before it (u32)``. The frame has its own checksum, so a damaged length or sequence
  number is recognised as damage (never followed to a wrong place), and a record whose payload
  is damaged still tells which batch (sequence number) and how many points were lost.
- **v1** (``TPS1``, written before): ``magic (4) | payload length (u32) | crc32 of the payload
  (u32)``; read as before (the sequence number is in the payload's header). Segments written
  by an older gateway hold only v1 records and stay readable; new appends always go to a new
  segment, in v2.

:func:`read_frame` reads the record at a position; :func:`resync` finds the next intact record
(of either version) after damage, so a reader skips the damaged bytes instead of cutting
everything after them.

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
    "FRAME_V1",
    "MAGIC",
    "MAGIC_V1",
    "Damaged",
    "Frame",
    "RecordHeader",
    "decode_batch",
    "decode_header",
    "encode_batch",
    "frame",
    "frame_v1",
    "read_frame",
    "resync",
]

MAGIC = b"TPS2"
FRAME = struct.Struct("<4sIQIII")  # magic, payload length, seq, points, crc32(payload), crc32(frame)
_FRAME_BODY = struct.Struct("<4sIQII")  # what the frame's own checksum covers
MAGIC_V1 = b"TPS1"
FRAME_V1 = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
#: a frame that promises more than this is damage, whatever its checksum says
MAX_PAYLOAD = 1 << 31
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


@dataclass(frozen=True, slots=True)
class Frame:
    """An intact record found by :func:`read_frame`."""

    payload: memoryview
    end: int  # position after the record
    seq: int
    points: int
    version: int


@dataclass(frozen=True, slots=True)
class Damaged:
    """Why there is no intact record at a position. ``seq``/``points``/``end`` are known when
    the v2 frame itself is intact and only the payload is damaged (the record can be skipped);
    ``short`` is True when the bytes simply end before the record does (what a crash in the
    middle of an append leaves)."""

    why: str
    short: bool = False
    seq: int | None = None
    points: int | None = None
    end: int | None = None


def frame(payload: bytes) -> bytes:
    """``payload`` (from :func:`encode_batch`) with its v2 frame in front: what one append writes."""
    head = decode_header(payload)
    body = _FRAME_BODY.pack(MAGIC, len(payload), head.seq, head.points, zlib.crc32(payload))
    return body + struct.pack("<I", zlib.crc32(body)) + payload


def frame_v1(payload: bytes) -> bytes:
    """The v1 frame an older gateway wrote (kept to test that old segments stay readable)."""
    return FRAME_V1.pack(MAGIC_V1, len(payload), zlib.crc32(payload)) + payload


def read_frame(buf: bytes | memoryview, pos: int) -> Frame | Damaged:
    """The intact record at ``pos``, or why there is none."""
    view = memoryview(buf)
    left = len(view) - pos
    magic = bytes(view[pos : pos + 4])
    if magic == MAGIC:
        if left < FRAME.size:
            return Damaged(f"{left} bytes, shorter than a record frame", short=True)
        _, length, seq, points, crc, fcrc = FRAME.unpack_from(view, pos)
        if zlib.crc32(view[pos : pos + _FRAME_BODY.size]) != fcrc or length > MAX_PAYLOAD:
            return Damaged("record frame checksum mismatch")
        start = pos + FRAME.size
        if start + length > len(view):
            return Damaged(f"record of {length} bytes cut short at {len(view) - start}", short=True,
                           seq=seq, points=points)
        payload = view[start : start + length]
        if zlib.crc32(payload) != crc:
            return Damaged("record checksum mismatch", seq=seq, points=points, end=start + length)
        return Frame(payload, start + length, seq, points, 2)
    if magic == MAGIC_V1:
        if left < FRAME_V1.size:
            return Damaged(f"{left} bytes, shorter than a record frame", short=True)
        _, length, crc = FRAME_V1.unpack_from(view, pos)
        start = pos + FRAME_V1.size
        if start + length > len(view):
            return Damaged(f"record of {length} bytes cut short at {len(view) - start}", short=True)
        payload = view[start : start + length]
        if zlib.crc32(payload) != crc or length < _HEAD.size:
            return Damaged("checksum mismatch")
        head = decode_header(payload)
        return Frame(payload, start + length, head.seq, head.points, 1)
    if left < 4 and bytes(view[pos:]) in (MAGIC[:left], MAGIC_V1[:left]):
        return Damaged(f"{left} bytes, shorter than a record frame", short=True)
    if not any(view[pos : pos + FRAME.size]):
        # zeros: a file extended by a crash before its data reached the disk
        return Damaged("zeros instead of a record", short=True)
    return Damaged("no record marker")


def resync(buf: bytes | memoryview, pos: int) -> tuple[int, Frame] | None:
    """The first intact record after ``pos`` (its position and frame), or None."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    at = pos
    while True:
        cands = [i for i in (data.find(MAGIC, at + 1), data.find(MAGIC_V1, at + 1)) if i >= 0]
        if not cands:
            return None
        at = min(cands)
        got = read_frame(data, at)
        if isinstance(got, Frame):
            return at, got
