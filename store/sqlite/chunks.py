"""A tag's samples in the ``chunks`` table: the parts a read needs, and the trimming of
chunks that straddle the retention horizon."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from .checksum import chunk_crc, chunk_fault, extra_crc
from .runs import Part, texts_index, texts_subset, times_blob
from .schema import TS, VAL, Q

#: the arrays ``sound_window`` gives: an int64, float64 and uint8 array
Arrays = tuple[Any, Any, Any]

__all__ = ["Fault", "chunk_parts", "chunk_parts_many", "chunks_by_id", "sound_rows", "sound_window",
           "sound_windows", "trim_chunks"]


#: a chunk found damaged: (chunk_id, tag_id, t_min, t_max, n, reason)
Fault = tuple[int, int, int, int, int, str]
_HEAD_COLS = "chunk_id, tag_id, t_min, t_max, n, ts, value, quality, crc"
_EXTRA_COLS = ", texts, server_ts, gateway_ts, crc_extra"


def chunk_parts(
    conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int,
    prior: bool, with_text: bool, with_times: bool = False,
    skip: Container[int] = (), faults: list[Fault] | None = None,
) -> list[Part]:
    """The chunks of one tag that the window [start_ns, end_ns) (and with ``prior`` the last
    sample before it) can need, as parts in write order. Chunks in ``skip`` (known damaged)
    are left out; a chunk that fails its check (``checksum.chunk_fault``) is left out and
    appended to ``faults``."""
    extra = with_text or with_times
    cols = _HEAD_COLS + (_EXTRA_COLS if extra else "")
    chunk_rows = conn.execute(
        f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
        (tag_id, start_ns, end_ns),
    ).fetchall()
    sound: set[int] = set()
    if prior:
        # The true last sample before start is in a chunk overlapping start (loaded
        # above), in the chunk(s) with the greatest t_max < start, or in ingest: two
        # index lookups, whatever the length of the history. Damaged chunks do not count:
        # then the next greatest t_max below theirs (a few more lookups, only after damage).
        # (one statement for both lookups: a read of many tags makes one per tag)
        below = start_ns
        while True:
            got = conn.execute(
                f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max ="
                " (SELECT max(t_max) FROM chunks WHERE tag_id = ? AND t_max < ?)",
                (tag_id, tag_id, below),
            ).fetchall()
            if not got:
                break
            chunk_rows += got
            found = False
            for r in got:
                if int(r[0]) not in skip and chunk_fault(r[:9], r[9:13] if extra else None) is None:
                    sound.add(int(r[0]))  # checked: not checked again below
                    found = True
            if found:
                break
            below = int(got[0][3])
    chunk_rows.sort(key=lambda r: r[0])  # chunk_id order is write order
    return [p for _, p in _checked(chunk_rows, with_text, with_times, skip, faults, sound)]


#: the chunks a read of one tag with ``prior`` needs, in one statement: those overlapping the
#: window and those with the greatest ``t_max`` before it (``chunk_parts`` makes two)
_WITH_PRIOR = (
    f"SELECT {_HEAD_COLS} FROM chunks WHERE tag_id = ? AND t_max >= coalesce("
    "(SELECT max(t_max) FROM chunks WHERE tag_id = ? AND t_max < ?), ?) AND t_min < ?"
)
_WITHOUT_PRIOR = f"SELECT {_HEAD_COLS} FROM chunks WHERE tag_id = ? AND t_max >= ? AND t_min < ?"


def chunk_parts_many(
    conn: sqlite3.Connection, ranges: Sequence[tuple[int, int, int]], prior: bool,
    skip: Container[int] = (), faults: list[Fault] | None = None,
) -> list[list[Part] | None]:
    """``chunk_parts(conn, tag, start, end, prior, False)`` of each (tag, start, end) of
    ``ranges``: the same parts in the same order, the same chunks checked, from one statement
    per range instead of two. None for a range whose prior chunks (the greatest ``t_max``
    before its start) are all damaged: ``chunk_parts`` then looks further back."""
    out: list[list[Part] | None] = []
    for tag_id, start_ns, end_ns in ranges:
        if prior:
            rows = conn.execute(_WITH_PRIOR, (tag_id, tag_id, start_ns, start_ns, end_ns)).fetchall()
        else:
            rows = conn.execute(_WITHOUT_PRIOR, (tag_id, start_ns, end_ns)).fetchall()
        sound: set[int] = set()
        before = False
        if prior:
            for r in rows:
                # a prior chunk: as chunk_parts, a sound one ends the search
                if isinstance(r[3], int | float) and r[3] < start_ns:
                    before = True
                    if int(r[0]) not in skip and chunk_fault(r, None) is None:
                        sound.add(int(r[0]))
        if before and not sound:
            out.append(None)
            continue
        if len(rows) > 1:
            rows.sort(key=lambda r: r[0])  # chunk_id order is write order
        out.append([p for _, p in _checked(rows, False, False, skip, faults, sound)])
    return out


def sound_window(conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int
                 ) -> Arrays | None:
    """The samples of one tag in [start_ns, end_ns) and the last before it, as (ts int64,
    value float64, quality uint8) copies, from its chunks alone: the same samples as
    ``chunk_parts_many`` then ``store._ordered_window`` give, without a ``Part`` per chunk
    or a numpy call per chunk that lies wholly inside or before the window. Only the usual
    case: every chunk the read loads passes its check (``checksum.chunk_fault``, once each,
    as there) and, in write order, each ends before the next begins. None otherwise (a
    damaged chunk, chunks that overlap): the caller then takes the general path, which finds
    and records the damage. The caller also makes sure no ingest row or known damaged
    chunk can matter (those need the general path too)."""
    rows = conn.execute(_WITH_PRIOR, (tag_id, tag_id, start_ns, start_ns, end_ns)).fetchall()
    return sound_rows(rows, start_ns, end_ns)


#: ``_WITH_PRIOR`` of several tags over one window, in one statement: the tag ids as a JSON
#: array (``json_each``), each tag's chunks found by the index as ``_WITH_PRIOR`` finds them
#: (``SEARCH c USING INDEX chunks_by_tag (tag_id=? AND t_max>?)``, the bound a correlated
#: subquery on the covering index)
_MANY_WITH_PRIOR = (
    f"SELECT {', '.join('c.' + c.strip() for c in _HEAD_COLS.split(','))} FROM json_each(?) j"
    " JOIN chunks c ON c.tag_id = j.value AND c.t_max >= coalesce("
    "(SELECT max(t_max) FROM chunks WHERE tag_id = j.value AND t_max < ?), ?) AND c.t_min < ?"
)


def sound_windows(conn: sqlite3.Connection, tag_ids: Sequence[int], start_ns: int, end_ns: int
                  ) -> list[Arrays | None]:
    """``sound_window`` of each of ``tag_ids`` over the same window, from one statement for
    them all instead of one per tag (a KPI request's read-ahead reads ~14 tags per window
    edge: on the 500 x 30 bench ~14,000 ranges in ~1,000 windows). The same rows per tag,
    checked and cut the same way.

    Each tag's rows are cut as soon as the cursor has moved past them (the plan reads the
    tags one after another, ``json_each`` the outer loop), so only one tag's blobs are alive
    at a time, as with ``sound_window`` per tag. Holding a whole window's blobs first (up to
    ~11 MB when chunks are days long) made glibc give the freed heap top back to the kernel
    after each window and fault it in again for the next: ~5,900 minor page faults and
    ~12 ms more per 7-day /kpis of the demo plant in a fresh process (30 ms instead of 18).
    Should the rows of a tag already cut come again (another plan), that tag alone is left
    to the general path (None)."""
    wanted = dict.fromkeys(int(t) for t in tag_ids)
    done: dict[int, Arrays | None] = {}
    tag: int | None = None
    rows: list[Any] = []
    for r in conn.execute(_MANY_WITH_PRIOR, (json.dumps(list(wanted)), start_ns, start_ns, end_ns)):
        if r[1] != tag:
            if tag is not None:
                done[tag] = sound_rows(rows, start_ns, end_ns) if tag not in done else None
            rows = []
            tag = r[1]
            if not isinstance(tag, int) or tag not in wanted:
                return [None] * len(tag_ids)  # a damaged row: the general path finds and records it
        rows.append(r)
    if tag is not None:
        done[tag] = sound_rows(rows, start_ns, end_ns) if tag not in done else None
    del rows
    return [done[int(t)] if int(t) in done else sound_rows([], start_ns, end_ns) for t in tag_ids]


def sound_rows(rows: list[Any], start_ns: int, end_ns: int) -> Arrays | None:
    """``sound_window`` of the rows ``_WITH_PRIOR`` found for one tag."""
    for r in rows:
        if chunk_fault(r, None) is not None:
            return None
    if len(rows) > 1:
        rows.sort(key=lambda r: r[0])  # chunk_id order is write order
        prev = None
        for r in rows:
            # checked: ts[0] == t_min and ts[-1] == t_max (chunk_fault)
            if prev is not None and prev >= r[2]:
                return None
            prev = r[3]
    # (row, i, j): the samples [i, j) of each chunk the window needs; a chunk wholly before
    # the start gives at most its last sample (the one before the start, if it is the last
    # such chunk); a chunk the window holds whole gives all of it
    cuts: list[tuple[Any, int, int]] = []
    last = -1  # the chunk holding the last sample before start_ns
    for k, r in enumerate(rows):
        n, t_min, t_max = r[4], r[2], r[3]
        if t_max < start_ns:
            i = j = n
        elif t_min >= start_ns and t_max < end_ns:
            i, j = 0, n
        else:
            i, j = np.frombuffer(r[5], TS).searchsorted((start_ns, end_ns)).tolist()
        if i > 0:
            last = k
        cuts.append((r, i, j))
    if last >= 0:
        r, i, j = cuts[last]
        cuts[last] = (r, i - 1, j)
    pick = [(r, i, j) for r, i, j in cuts if j > i]
    if not pick:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8)
    if len(pick) == 1:
        r, i, j = pick[0]
        return (np.frombuffer(r[5], TS, j - i, i * TS.itemsize).astype(np.int64),
                np.frombuffer(r[6], VAL, j - i, i * VAL.itemsize).astype(np.float64),
                np.frombuffer(r[7], Q, j - i, i * Q.itemsize).astype(np.uint8))
    return (np.concatenate([np.frombuffer(r[5], TS, j - i, i * TS.itemsize) for r, i, j in pick]
                           ).astype(np.int64, copy=False),
            np.concatenate([np.frombuffer(r[6], VAL, j - i, i * VAL.itemsize) for r, i, j in pick]
                           ).astype(np.float64, copy=False),
            np.concatenate([np.frombuffer(r[7], Q, j - i, i * Q.itemsize) for r, i, j in pick]
                           ).astype(np.uint8, copy=False))


def _checked(rows: Sequence[Any], with_text: bool, with_times: bool, skip: Container[int],
             faults: list[Fault] | None, sound: Container[int] = ()) -> list[tuple[int, Part]]:
    """The rows that pass their check, as (chunk_id, part); the others into ``faults``.
    ``sound``: rows of the same read already checked (and passed)."""
    extra = with_text or with_times
    out: list[tuple[int, Part]] = []
    for r in rows:
        cid = int(r[0])
        if cid in skip:
            continue
        why = None if cid in sound else chunk_fault(r[:9], r[9:13] if extra else None)
        if why is None:
            try:
                out.append((cid, _part(r, with_text, with_times)))
                continue
            except (ValueError, TypeError, IndexError, KeyError) as exc:  # texts that lie
                why = f"does not decode: {exc}"
        if faults is not None:
            faults.append((cid, int(r[1]), int(r[2]), int(r[3]), int(r[4]), why))
    return out


def _part(r: Sequence[Any], with_text: bool, with_times: bool) -> Part:
    """A checked chunk row (``_HEAD_COLS`` [+ ``_EXTRA_COLS``]) as a part: views of its
    blobs."""
    txt, strings = texts_index(r[9], r[4]) if with_text else (None, [])
    srv = gw = None
    if with_times:
        srv, gw = (None if b is None else np.frombuffer(b, TS) for b in r[10:12])
    return Part(np.frombuffer(r[5], TS), np.frombuffer(r[6], VAL), np.frombuffer(r[7], Q),
                txt, strings, srv, gw)


def chunks_by_id(conn: sqlite3.Connection, chunk_ids: Sequence[int], with_times: bool,
                 skip: Container[int] = (), faults: list[Fault] | None = None,
                 ) -> dict[int, Part]:
    """The chunks ``chunk_ids`` (at most a few hundred) as parts, by chunk_id; without texts.
    Damaged ones are left out (as in ``chunk_parts``)."""
    if not chunk_ids:
        return {}
    cols = _HEAD_COLS + (_EXTRA_COLS if with_times else "")
    marks = ",".join("?" * len(chunk_ids))
    rows = conn.execute(f"SELECT {cols} FROM chunks WHERE chunk_id IN ({marks})",
                        [int(c) for c in chunk_ids]).fetchall()
    return dict(_checked(rows, False, with_times, skip, faults))


def trim_chunks(conn: sqlite3.Connection, tag_id: int, horizon: int) -> int:
    """Cut the samples before ``horizon`` from the chunks of ``tag_id`` that straddle it
    (UPDATE keeps chunk_id, hence their write order, and sets new checksums); return the
    samples cut. A damaged chunk is left whole (retention deletes it once all of it is
    older than the horizon)."""
    straddling = conn.execute(
        f"SELECT {_HEAD_COLS}{_EXTRA_COLS} FROM chunks WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
        (tag_id, horizon, horizon),
    ).fetchall()
    cut_total = 0
    for r in straddling:
        if chunk_fault(r[:9], r[9:13]) is not None:
            continue
        cid: int = r[0]
        n: int = r[4]
        ts_b: bytes = r[5]
        v_b: bytes = r[6]
        q_b: bytes = r[7]
        texts: str | None = r[9]
        srv_b: bytes | None = r[10]
        gw_b: bytes | None = r[11]
        cut = int(np.searchsorted(np.frombuffer(ts_b, TS), horizon, "left"))
        txt, strings = texts_index(texts, n)
        srv, gw = (None if b is None else times_blob(np.frombuffer(b, TS)[cut:])
                   for b in (srv_b, gw_b))
        t_min, n_new = int(np.frombuffer(ts_b, TS)[cut]), n - cut
        ts_c, v_c, q_c = ts_b[cut * TS.itemsize:], v_b[cut * VAL.itemsize:], q_b[cut * Q.itemsize:]
        tx = texts_subset(txt, strings, cut, n)
        conn.execute(
            "UPDATE chunks SET t_min = ?, n = ?, ts = ?, value = ?, quality = ?, texts = ?,"
            " server_ts = ?, gateway_ts = ?, crc = ?, crc_extra = ? WHERE chunk_id = ?",
            (t_min, n_new, ts_c, v_c, q_c, tx, srv, gw,
             # an unverified chunk (written before checksums) stays unverified
             None if r[8] is None else chunk_crc(tag_id, t_min, int(r[3]), n_new, ts_c, v_c, q_c),
             None if r[12] is None else extra_crc(tx, srv, gw), cid),
        )
        cut_total += cut
    return cut_total
