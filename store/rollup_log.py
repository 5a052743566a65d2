"""What every store that keeps roll-up rows must know of its own writes (``api.rollups``).

A row of asset A and hour h rests on A's data at times before h + 1 h. A computation reads a
snapshot, takes a token (:meth:`ChangeLog.claim`) and hands its rows back with it; every
change of A's data at a time t that a row may rest on is noted (:meth:`ChangeLog.note`), and
:meth:`ChangeLog.admit` then leaves out each row a change noted since the token touched. How
a store removes the rows already held (a DELETE in the change's transaction in SQLite, void
points in the same POST in InfluxDB) is its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

from .base import RollupRow
from .batch import I32, I64

__all__ = ["HOUR_NS", "ChangeLog", "asset_since"]

HOUR_NS = 3600 * 1_000_000_000
#: changes remembered for rows being computed; a computation older than these is refused
_LOG = 4096


def asset_since(tag_ids: I32, ts_ns: I64, asset_of: Mapping[int, str]) -> dict[str | None, int]:
    """asset -> earliest ts of the batch's samples of its tags (tags of no asset: none)."""
    order = np.argsort(tag_ids, kind="stable")
    t, ts = tag_ids[order], ts_ns[order]
    first = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    mins = np.minimum.reduceat(ts, first)
    out: dict[str | None, int] = {}
    for tag, m in zip(t[first].tolist(), mins.tolist(), strict=True):
        a = asset_of.get(int(tag))
        if a is not None:
            out[a] = min(out.get(a, int(m)), int(m))
    return out


class ChangeLog:
    """The changes that may make rows stale, and which computed rows may still be put. Not
    thread-safe: the store calls it under the lock that orders its writes and puts."""

    def __init__(self, end_ns: int) -> None:
        #: no row ends after this, nor is one being computed that does: changes from here on
        #: (live ingest) touch no row and are not noted
        self.end_ns = end_ns
        self.seq = 0
        self._log: deque[tuple[int, str | None, int]] = deque(maxlen=_LOG)

    def claim(self, end_ns: int) -> int:
        """A computation of rows ending up to ``end_ns`` starts: its token."""
        self.end_ns = max(self.end_ns, end_ns)
        return self.seq

    def touches(self, since: Mapping[str | None, int]) -> bool:
        return any(t < self.end_ns for t in since.values())

    def note(self, since: Mapping[str | None, int]) -> list[tuple[str | None, int]]:
        """Remember a change: ``since`` maps asset (None: every asset) -> the earliest time it
        touched. Returns the (asset, time) pairs that may touch rows."""
        touched = [(a, t) for a, t in since.items() if t < self.end_ns]
        for a, t in touched:
            self.seq += 1
            self._log.append((self.seq, a, t))
        return touched

    def forget_tokens(self) -> None:
        """A change no entry describes (retention): every computation in flight is refused."""
        self.seq += 1
        self._log.clear()

    def admit(self, rows: Iterable[RollupRow], token: int) -> list[RollupRow]:
        """The rows that no change since ``token`` has touched (none if the log no longer
        reaches back to it)."""
        rows = list(rows)
        if token < self.seq and (not self._log or self._log[0][0] > token + 1):
            return []
        later = [(a, t) for s, a, t in self._log if s > token]
        return [r for r in rows
                if not any((a is None or a == r.asset) and t < r.hour_ns + HOUR_NS for a, t in later)]
