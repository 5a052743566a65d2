"""A tag's samples in the ``chunks`` table: the parts a read needs, and the trimming of
chunks that straddle the retention horizon."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from .runs import Part, texts_index, texts_subset, times_blob
from .schema import TS, VAL, Q

__all__ = ["chunk_parts", "chunks_by_id", "trim_chunks"]


def chunk_parts(
    conn: sqlite3.Connection, tag_id: int, start_ns: int, end_ns: int,
    prior: bool, with_text: bool, with_times: bool = False,
) -> list[Part]:
    """The chunks of one tag that the window [start_ns, end_ns) (and with ``prior`` the last
    sample before it) can need, as parts in write order."""
    cols = ("chunk_id, n, ts, value, quality" + (", texts" if with_text else "")
            + (", server_ts, gateway_ts" if with_times else ""))
    k_times = 6 if with_text else 5  # column index of server_ts when read
    chunk_rows = conn.execute(
        f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
        (tag_id, start_ns, end_ns),
    ).fetchall()
    if prior:
        # The true last sample before start is in a chunk overlapping start (loaded
        # above), in the chunk(s) with the greatest t_max < start, or in ingest: two
        # index lookups, whatever the length of the history.
        (p_max,) = conn.execute(
            "SELECT max(t_max) FROM chunks WHERE tag_id = ? AND t_max < ?", (tag_id, start_ns)
        ).fetchone()
        if p_max is not None:
            chunk_rows += conn.execute(
                f"SELECT {cols} FROM chunks WHERE tag_id = ? AND t_max = ?", (tag_id, p_max)
            ).fetchall()
    chunk_rows.sort(key=lambda r: r[0])  # chunk_id order is write order
    return [_part(r, with_text, with_times, k_times) for r in chunk_rows]


def _part(r: Sequence[Any], with_text: bool, with_times: bool, k_times: int) -> Part:
    """A chunk row (chunk_id, n, ts, value, quality[, texts][, server_ts, gateway_ts]) as a
    part: views of its blobs."""
    txt, strings = texts_index(r[5], r[1]) if with_text else (None, [])
    srv = gw = None
    if with_times:
        srv, gw = (None if b is None else np.frombuffer(b, TS) for b in r[k_times:k_times + 2])
    return Part(np.frombuffer(r[2], TS), np.frombuffer(r[3], VAL), np.frombuffer(r[4], Q),
                txt, strings, srv, gw)


def chunks_by_id(conn: sqlite3.Connection, chunk_ids: Sequence[int], with_times: bool
                 ) -> dict[int, Part]:
    """The chunks ``chunk_ids`` (at most a few hundred) as parts, by chunk_id; without texts."""
    if not chunk_ids:
        return {}
    cols = "chunk_id, n, ts, value, quality" + (", server_ts, gateway_ts" if with_times else "")
    marks = ",".join("?" * len(chunk_ids))
    rows = conn.execute(f"SELECT {cols} FROM chunks WHERE chunk_id IN ({marks})",
                        [int(c) for c in chunk_ids]).fetchall()
    return {int(r[0]): _part(r, False, with_times, 5) for r in rows}


def trim_chunks(conn: sqlite3.Connection, tag_id: int, horizon: int) -> int:
    """Cut the samples before ``horizon`` from the chunks of ``tag_id`` that straddle it
    (UPDATE keeps chunk_id, hence their write order); return the samples cut."""
    straddling = conn.execute(
        "SELECT chunk_id, n, ts, value, quality, texts, server_ts, gateway_ts FROM chunks"
        " WHERE tag_id = ? AND t_max >= ? AND t_min < ?",
        (tag_id, horizon, horizon),
    ).fetchall()
    cut_total = 0
    for cid, n, ts_b, v_b, q_b, texts, srv_b, gw_b in straddling:
        cut = int(np.searchsorted(np.frombuffer(ts_b, TS), horizon, "left"))
        txt, strings = texts_index(texts, n)
        srv, gw = (None if b is None else times_blob(np.frombuffer(b, TS)[cut:])
                   for b in (srv_b, gw_b))
        conn.execute(
            "UPDATE chunks SET t_min = ?, n = ?, ts = ?, value = ?, quality = ?, texts = ?,"
            " server_ts = ?, gateway_ts = ? WHERE chunk_id = ?",
            (
                int(np.frombuffer(ts_b, TS)[cut]), n - cut, ts_b[cut * TS.itemsize:],
                v_b[cut * VAL.itemsize:], q_b[cut * Q.itemsize:],
                texts_subset(txt, strings, cut, n), srv, gw, cid,
            ),
        )
        cut_total += cut
    return cut_total
