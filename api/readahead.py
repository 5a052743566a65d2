"""Reads of a KPI request issued together: a view of the store that serves ``read`` and
``read_many`` from samples read ahead in one ``read_many`` per range.

A request's computation reads each tag of each asset on its own (``asset_result`` per role,
``reach_ns`` per counter, ``_part`` per asset). On the embedded store each read is a few
microseconds; on InfluxDB each is an HTTP round trip (a 7-day ``/kpis`` of the demo plant made
77 requests without roll-ups, 169 with them). ``KpiService.results`` therefore reads the ranges
it is about to need -- with roll-ups, the window's partial hours at both edges (and the hour
before the tail, for ``reach_ns``); without, the whole window of one asset at a time -- in one
``read_many`` each, and computes against this view.

Exact by construction: a read of [a, b) with ``prior`` is served only when a read-ahead range
[A, B) with A <= a and b <= B holds the tag (that read came with the last sample before A, so
the last sample before a is in it too); the samples are those of the window sliced at the same
bounds the store applies (``start <= ts < end``). Any other read goes to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store.base import Store
from store.batch import Series

__all__ = ["ReadAhead"]


class ReadAhead:
    """``store`` with some tags' samples of some ranges already read (see the module)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: (start_ns, end_ns) -> tag id -> samples read with prior
        self._held: dict[tuple[int, int], dict[int, Series]] = {}
        #: the same by tag id: tag id -> (start_ns, end_ns) -> samples (a read looks at the
        #: ranges of its own tag only; every range read of a tag gives the same samples)
        self._by_tag: dict[int, dict[tuple[int, int], Series]] = {}
        self.served = 0  # reads answered from what was read ahead (for tests and benches)
        #: spans [start_ns, end_ns) in which the store holds no gap of any device
        #: (``fetch_gaps``): a device's gaps inside one are [] without a read
        self._gap_free: list[tuple[int, int]] = []
        #: spans in which it holds some (gaps are only ever added, within a snapshot)
        self._gapped: list[tuple[int, int]] = []

    def fetch(self, tag_ids: Sequence[int], start_ns: int, end_ns: int) -> None:
        """Read ``tag_ids`` over [start_ns, end_ns) with ``prior``, in one ``read_many``."""
        ids = sorted({int(t) for t in tag_ids})
        if not ids or end_ns <= start_ns:
            return
        self._gap_free.clear()
        got = self._store.read_many(ids, start_ns, end_ns, prior=True)
        for t, series in got.items():
            self._hold(int(t), int(start_ns), int(end_ns), series)

    def _hold(self, tag_id: int, start_ns: int, end_ns: int, series: Series) -> None:
        self._held.setdefault((start_ns, end_ns), {})[tag_id] = series
        self._by_tag.setdefault(tag_id, {})[(start_ns, end_ns)] = series

    def fetch_all(self, ranges: dict[tuple[int, int], list[int]]) -> None:
        """``fetch`` of several ranges: in one ``read_ranges`` where the store has one
        (``InfluxStore``: one request for them all), else one ``read_many`` per range."""
        ranges = {(int(lo), int(hi)): sorted({int(t) for t in ids})
                  for (lo, hi), ids in ranges.items() if hi > lo and ids}
        self._gap_free.clear()
        fast = getattr(self._store, "read_ranges", None)
        if not callable(fast):
            for (lo, hi), ids in ranges.items():
                self.fetch(ids, lo, hi)
            return
        wanted = [(t, lo, hi) for (lo, hi), ids in ranges.items() for t in ids]
        for (t, lo, hi), series in zip(wanted, fast(wanted, True), strict=True):
            self._hold(t, lo, hi, series)

    def forget(self, start_ns: int, end_ns: int) -> None:
        """Drop the samples read ahead for [start_ns, end_ns) (memory: one raw window at a time)."""
        span = (int(start_ns), int(end_ns))
        for t in self._held.pop(span, {}):
            self._by_tag[t].pop(span, None)

    def holds(self, tag_id: int, start_ns: int, end_ns: int) -> bool:
        """Whether a read of [start_ns, end_ns) (with or without ``prior``) is served from
        the samples read ahead."""
        return any(lo <= start_ns and end_ns <= hi for lo, hi in self._by_tag.get(int(tag_id), {}))

    def _slice(self, tag_id: int, start_ns: int, end_ns: int, prior: bool) -> Series | None:
        for (lo, hi), s in self._by_tag.get(tag_id, {}).items():
            if lo <= start_ns and end_ns <= hi:
                i, j = s.ts_ns.searchsorted((start_ns, end_ns)).tolist()
                if prior and i > 0:
                    i -= 1
                return s.cut(i, j)
        return None

    def read(self, tag_id: int, start_ns: int, end_ns: int, prior: bool = True) -> Series:
        got = self._slice(int(tag_id), int(start_ns), int(end_ns), prior)
        if got is None:
            self._gap_free.clear()  # a read of the store can find damage: a gap
            return self._store.read(tag_id, start_ns, end_ns, prior)
        self.served += 1
        return got

    def read_many(self, tag_ids: Sequence[int], start_ns: int, end_ns: int,
                  prior: bool = True) -> dict[int, Series]:
        out: dict[int, Series] = {}
        rest: list[int] = []
        for t in tag_ids:
            got = self._slice(int(t), int(start_ns), int(end_ns), prior)
            if got is None:
                rest.append(int(t))
            else:
                out[int(t)] = got
        self.served += len(out)
        if rest:
            self._gap_free.clear()
            out.update(self._store.read_many(rest, start_ns, end_ns, prior))
        return {int(t): out[int(t)] for t in tag_ids}

    def fetch_gaps(self, start_ns: int, end_ns: int) -> bool:
        """One read of every device's gaps over [start_ns, end_ns); when there are none (the
        usual case), ``gaps`` of any device inside that span is [] without a read of its own
        (``KpiService._rolled`` asks each asset's devices: 500 reads per window on the 500 x
        30 bench). ``gaps(None, ...)`` holds every device's gaps (and damaged ranges), so
        when it is empty so is each device's. Until the next read this view passes to the
        store: a read can find damaged data, which is a gap from then on."""
        if end_ns > start_ns and not self._store.gaps(None, int(start_ns), int(end_ns)):
            self._gap_free.append((int(start_ns), int(end_ns)))
            return True
        self._gapped.append((int(start_ns), int(end_ns)))
        return False

    def gaps(self, device: str | None, start_ns: int, end_ns: int) -> list[Any]:
        """The store's ``gaps``; [] without a read of the device's own inside a span
        ``fetch_gaps`` found gap-free. A span not known either way is looked at once
        (every asset of a window asks for the same one)."""
        if device is not None:
            for lo, hi in self._gap_free:
                if lo <= start_ns and end_ns <= hi:
                    return []
            if not any(lo <= start_ns and end_ns <= hi for lo, hi in self._gapped) \
                    and self.fetch_gaps(start_ns, end_ns):
                return []
        return self._store.gaps(device, start_ns, end_ns)

    def __getattr__(self, name: str) -> Any:  # everything else is the store's
        self._gap_free.clear()  # (which may read samples, and find damage)
        return getattr(self._store, name)
