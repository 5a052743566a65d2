"""Checksums of the ``chunks`` rows, and the check a read makes of every chunk it loads.

A chunk carries two CRC-32s (``zlib.crc32``, stdlib): ``crc`` over its header and the blobs
every read loads (``tag_id``, ``t_min``, ``t_max``, ``n``, then ``ts``, ``value``,
``quality``), ``crc_extra`` over the columns only some reads load (``texts``, ``server_ts``,
``gateway_ts``, each preceded by one byte saying whether it is NULL), so that a plain read
never loads blobs it does not use. ``store/sqlite/SCHEMA.md`` gives the exact byte sequence.
NULL checksums (chunks written before schema version 5): unverified; their blobs are still
checked to decode.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np

from .schema import TAG, TS, VAL

__all__ = ["chunk_crc", "chunk_fault", "extra_crc", "ingest_crcs", "ingest_fault"]

_HEAD = struct.Struct("<qqqq")
_NULL, _SOME = b"\x00", b"\x01"
_TS_SIZE, _VAL_SIZE = TS.itemsize, VAL.itemsize
assert np.dtype("<i8") == TS  # read as such by chunk_fault

Buf = bytes | memoryview


def chunk_crc(tag_id: int, t_min: int, t_max: int, n: int, ts: Buf, value: Buf, quality: Buf) -> int:
    """``crc``: CRC-32 of the header (4 × int64 little-endian) then the three blobs."""
    c = zlib.crc32(_HEAD.pack(tag_id, t_min, t_max, n))
    for b in (ts, value, quality):
        c = zlib.crc32(b, c)
    return c


def extra_crc(texts: str | None, server_ts: Buf | None, gateway_ts: Buf | None) -> int:
    """``crc_extra``: per column a byte 0 (NULL) or 1 followed by its bytes (texts as UTF-8)."""
    c = 0
    for b in (None if texts is None else texts.encode("utf-8"), server_ts, gateway_ts):
        c = zlib.crc32(_NULL, c) if b is None else zlib.crc32(b, zlib.crc32(_SOME, c))
    return c


def chunk_fault(r: Any, extra: Any | None) -> str | None:
    """Why the chunk row ``r`` = (chunk_id, tag_id, t_min, t_max, n, ts, value, quality, crc)
    cannot be trusted, or None. ``extra`` = (texts, server_ts, gateway_ts, crc_extra) when the
    read loads those columns (then checked too), else None."""
    _, tag_id, t_min, t_max, n, ts, value, quality, crc = r
    # SQLite does not enforce column types: a damaged row can hold anything anywhere (every
    # read checks every chunk it loads: spelled out, not as generators, for its cost)
    if not (isinstance(tag_id, int) and isinstance(t_min, int) and isinstance(t_max, int)
            and isinstance(n, int) and isinstance(ts, bytes) and isinstance(value, bytes)
            and isinstance(quality, bytes)):
        return "a column of the wrong type"
    if extra is not None and not (
            (extra[0] is None or isinstance(extra[0], str))
            and all(b is None or isinstance(b, bytes) for b in extra[1:3])):
        return "a column of the wrong type (texts or server/gateway timestamps)"
    if crc is not None and chunk_crc(tag_id, t_min, t_max, n, ts, value, quality) != crc:
        return "checksum mismatch"
    if extra is not None:
        texts, srv, gw, crc_x = extra
        if crc_x is not None and extra_crc(texts, srv, gw) != crc_x:
            return "checksum mismatch (texts or server/gateway timestamps)"
    # what a chunk always is; the only check of a chunk without checksums
    if n < 1:
        return f"bad sample count {n}"
    if len(ts) != n * _TS_SIZE or len(value) != n * _VAL_SIZE or len(quality) != n:
        for name, b, size in (("ts", ts, _TS_SIZE), ("value", value, _VAL_SIZE),
                              ("quality", quality, 1)):
            if len(b) != n * size:
                return f"{name} blob of {len(b)} bytes, not {n * size}"
    # the first and last timestamps (int64 little-endian, TS) without a numpy array; the
    # order only without a checksum: a matching one vouches for what was written sorted
    if int.from_bytes(ts[:_TS_SIZE], "little", signed=True) != t_min or int.from_bytes(
            ts[-_TS_SIZE:], "little", signed=True) != t_max:
        return "timestamps out of order or outside the chunk's range"
    if crc is None and n > 1:
        t = np.frombuffer(ts, TS)
        if not bool((t[1:] > t[:-1]).all()):
            return "timestamps out of order or outside the chunk's range"
    if extra is not None:
        texts, srv, gw, _ = extra
        for name, b in (("server_ts", srv), ("gateway_ts", gw)):
            if b is not None and len(b) != n * TS.itemsize:
                return f"{name} blob of the wrong length"
        if texts is not None:
            try:
                pairs = json.loads(texts)
                if not all(0 <= int(p[0]) < n and isinstance(p[1], str) for p in pairs):
                    return "texts index outside the chunk"
            except (ValueError, TypeError, IndexError, KeyError):
                return "texts not decodable"
    return None


def ingest_crcs(level: int, n: int, t_min: int, t_max: int, tag_ids: Buf, ts: Buf, value: Buf,
                quality: Buf) -> tuple[int, int]:
    """An ``ingest`` row's (``crc_tags``, ``crc``): ``crc_tags`` = CRC-32 of the header
    (``level``, ``t_min``, ``t_max``, ``n`` as 4 × int64 little-endian) then ``tag_ids``;
    ``crc`` continues it over ``ts``, ``value``, ``quality``. One pass over the bytes; the
    intermediate one says, when the whole does not match, whether the row's tags can still be
    trusted (then its damage is reported per tag)."""
    c_tags = zlib.crc32(tag_ids, zlib.crc32(_HEAD.pack(level, t_min, t_max, n)))
    c = c_tags
    for b in (ts, value, quality):
        c = zlib.crc32(b, c)
    return c_tags, c


def ingest_fault(r: Any, extra: bool = True) -> tuple[str, bool] | None:
    """Why the ingest row ``r`` = (level, n, t_min, t_max, crc_tags, crc, crc_extra, tag_ids,
    ts, value, quality, texts, server_ts, gateway_ts) cannot be trusted, and whether its header
    and ``tag_ids`` can (they name the tags and the time range its damage covers); None when
    it is sound. ``extra`` False: texts and server/gateway timestamps were not loaded (they
    are None in ``r``) and are not checked."""
    level, n, t_min, t_max, c_tags, crc, crc_x, tag_ids, ts, value, quality, texts, srv, gw = r
    # every write's row is checked once by its merge: the sound path is kept short
    if not (type(level) is int and type(n) is int and type(t_min) is int
            and type(t_max) is int and type(tag_ids) is bytes):
        return "a column of the wrong type", False
    try:
        c_head = zlib.crc32(tag_ids, zlib.crc32(_HEAD.pack(level, t_min, t_max, n)))
    except struct.error:  # an integer beyond int64
        return "a header column out of range", False
    tags_ok = (c_head == c_tags if c_tags is not None
               else n >= 1 and len(tag_ids) == n * TAG.itemsize)
    if not (type(ts) is bytes and type(value) is bytes and type(quality) is bytes):
        return "a column of the wrong type", tags_ok
    if extra and not ((texts is None or type(texts) is str)
                      and (srv is None or type(srv) is bytes)
                      and (gw is None or type(gw) is bytes)):
        return "a column of the wrong type (texts or server/gateway timestamps)", tags_ok
    if crc is not None and zlib.crc32(quality, zlib.crc32(value, zlib.crc32(ts, c_head))) != crc:
        return "checksum mismatch", tags_ok
    if extra and crc_x is not None and extra_crc(texts, srv, gw) != crc_x:
        return "checksum mismatch (texts or server/gateway timestamps)", tags_ok
    if crc is not None and (crc_x is not None or not extra):
        return None  # matching checksums vouch for the row as written (sound by construction)
    # what a row always is; the only check of a row without checksums
    if n < 1:
        return f"bad sample count {n}", False
    for name, b, size in (("tag_ids", tag_ids, TAG.itemsize), ("ts", ts, TS.itemsize),
                          ("value", value, VAL.itemsize), ("quality", quality, 1)):
        if len(b) != n * size:
            return f"{name} blob of {len(b)} bytes, not {n * size}", tags_ok
    if crc is None:
        t = np.frombuffer(ts, TS)
        if int(t.min()) != t_min or int(t.max()) != t_max:
            return "timestamps outside the row's range", tags_ok
    if extra:
        for name, b in (("server_ts", srv), ("gateway_ts", gw)):
            if b is not None and len(b) != n * TS.itemsize:
                return f"{name} blob of the wrong length", tags_ok
        if texts is not None:
            try:
                pairs = json.loads(texts)
                if not all(0 <= int(p[0]) < n and isinstance(p[1], str) for p in pairs):
                    return "texts index outside the row", tags_ok
            except (ValueError, TypeError, IndexError, KeyError):
                return "texts not decodable", tags_ok
    return None
