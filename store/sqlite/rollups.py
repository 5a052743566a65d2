"""The ``rollups`` table: derived rows per asset and hour, dropped with the data they rest on.

A row of asset A and hour h is derived from A's samples and gaps at times before h + 1 h
(and after its ``reach_ns``). Every change of A's data at a time t < h + 1 h (a late or
backfilled sample, a gap opened or closed) deletes the row in the change's own transaction,
so that no crash can leave a row that the data no longer give; a change that can touch every
asset (tags re-registered) deletes every row; retention deletes the rows that reach back
before its horizon. Whoever computes rows (``api.rollups``) does so from a snapshot and hands
them to :meth:`RollupLog.admit`, which leaves out every row that a change committed since
the snapshot's token has touched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ..base import RollupRow
from ..rollup_log import HOUR_NS, ChangeLog, asset_since

__all__ = ["HOUR_NS", "RollupLog", "asset_since", "get_keyed"]

_MIN = -(2**63)


class RollupLog(ChangeLog):
    """The SQLite store's log (all calls under its writer lock): a change deletes the rows
    it touches in its own transaction."""

    def drop(self, conn: sqlite3.Connection, since: Mapping[str | None, int]) -> None:
        """In the change's transaction: delete the rows it touches and remember it. ``since``:
        asset (None: every asset) -> earliest time the change touched."""
        for asset, t in self.note(since):
            after = max(t - HOUR_NS, _MIN)  # the rows whose hour ends after t
            if asset is None:
                conn.execute("DELETE FROM rollups WHERE hour_ns > ?", (after,))
            else:
                conn.execute("DELETE FROM rollups WHERE asset = ? AND hour_ns > ?", (asset, after))


def put(conn: sqlite3.Connection, rows: Sequence[RollupRow]) -> None:
    conn.executemany(
        "INSERT INTO rollups (asset, hour_ns, key, reach_ns, data, extra) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (asset, hour_ns) DO UPDATE SET key = excluded.key, reach_ns = excluded.reach_ns,"
        " data = excluded.data, extra = excluded.extra",
        [(r.asset, int(r.hour_ns), r.key, int(r.reach_ns), r.data, r.extra) for r in rows],
    )


def get(conn: sqlite3.Connection, assets: Sequence[str], start_ns: int, end_ns: int,
        key: str | None = None, min_reach_ns: int | None = None) -> list[RollupRow]:
    """Rows of ``assets`` whose hour starts in [start_ns, end_ns), by asset and hour; only
    those of ``key`` and with ``reach_ns >= min_reach_ns`` when given."""
    sql = ("SELECT hour_ns, key, reach_ns, data, extra FROM rollups"
           " WHERE asset = ? AND hour_ns >= ? AND hour_ns < ?")
    tail: list[object] = []
    if key is not None:
        sql += " AND key = ?"
        tail.append(key)
    if min_reach_ns is not None:
        sql += " AND reach_ns >= ?"
        tail.append(int(min_reach_ns))
    out: list[RollupRow] = []
    for a in assets:
        out += [RollupRow(a, h, k, r, d, x) for h, k, r, d, x in conn.execute(
            sql + " ORDER BY hour_ns", (a, int(start_ns), int(end_ns), *tail))]
    return out


#: by the key's index (``schema.ROLLUPS_BY_KEY``, made at every open): a read of day-level
#: rows then touches those rows only, not every hour row between them
_BY_KEY = ("SELECT hour_ns, reach_ns, data, extra FROM rollups INDEXED BY rollups_by_key"
           " WHERE asset = ? AND key = ? AND hour_ns >= ? AND hour_ns < ? AND reach_ns >= ?"
           " ORDER BY hour_ns")
#: by the primary key, the key compared on each row (``+key``: not by the index): for rows
#: that are most of the span (hour rows: a day-level row lies between every ~25 of them),
#: one search of the table instead of one of the index and one of the table per row (on
#: the 500 x 30 bench's hour rows, ~2.5 against ~4.7 us a row)
_BY_HOUR = ("SELECT hour_ns, reach_ns, data, extra FROM rollups"
            " WHERE asset = ? AND hour_ns >= ? AND hour_ns < ? AND +key = ? AND reach_ns >= ?"
            " ORDER BY hour_ns")


def get_keyed(conn: sqlite3.Connection, keys: dict[str, str], start_ns: int, end_ns: int,
              min_reach_ns: int | None = None, dense: bool = False,
              ) -> dict[str, list[tuple[int, int, bytes, str | None]]]:
    """asset -> (hour_ns, reach_ns, data, extra) of its rows of key ``keys[asset]`` whose hour
    starts in [start_ns, end_ns) (and ``reach_ns >= min_reach_ns``), by hour: plain tuples,
    one statement per asset, for the read path. ``dense``: the keys' rows are most rows of
    the span (hour rows), read by the primary key."""
    lo = _MIN if min_reach_ns is None else int(min_reach_ns)
    out: dict[str, list[tuple[int, int, bytes, str | None]]] = {}
    for a, k in keys.items():
        if dense:
            got = conn.execute(_BY_HOUR, (a, int(start_ns), int(end_ns), k, lo)).fetchall()
        else:
            got = conn.execute(_BY_KEY, (a, k, int(start_ns), int(end_ns), lo)).fetchall()
        if got:
            out[a] = got
    return out
