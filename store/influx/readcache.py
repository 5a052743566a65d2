"""Samples a gateway's InfluxDB store has read back, kept exact by its own writes.

A KPI call over InfluxDB reads each asset's raw edges (``InfluxStore.read_ranges``): the
partial hours at the window's start and end, around the roll-up rows. InfluxDB 1.x pays per
series and field a statement opens (with the data in its cache, each cursor copies the
series' cached points), so those reads cost tens of ms of its CPU at every call, while the
samples they return hardly change from one call to the next: the start edge moves by seconds,
and the end edge only gains the samples written since.

The gateway that owns an asset is the only writer of its samples (docs/influxdb.md), and every
write passes through its store. So the store can keep what it read, per tag: every sample in
``[lo, hi)`` and the last one before ``lo`` (``hi`` open, :data:`OPEN`, for a read that took
every sample from ``lo`` on: the statement had no upper bound). A read inside that range is
answered from here. Each acknowledged write of the tag then either

- appends to an open range: every sample later than the last one held, finite, no text, the
  write taken whole; equal stamps within a write keep the last, as InfluxDB keeps the last
  point of a series and time;
- leaves a closed range alone: every sample at or after ``hi``;
- or drops the tag's range (anything else: a late sample inside it, one that may change its
  sample before, a NaN or text, a partial write, a write that failed midway). The next read
  asks InfluxDB again.

A read's answer is kept only if no write of the tag began or ended while it was asked (a
generation per tag, odd while a write is in flight). Ranges are re-read after ``max_age_s``
(a bound on what someone else's write or delete could leave stale) and held within
``max_samples`` in all (least recently used dropped first; an open range longer than a
quarter of that loses its older half). A store that reads other gateways' data
(``discover_tags``) keeps nothing here: it cannot see their writes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..batch import Batch, Series, keep_last
from .ql import join

__all__ = ["OPEN", "ReadCache"]

#: ``hi`` of a range that holds every sample from ``lo`` on
OPEN: Final = 2**63 - 1


@dataclass
class _Range:
    lo: int
    hi: int
    #: the last sample before ``lo`` (empty: there is none)
    prior: Series
    samples: Series
    born: float  # time.monotonic() when read
    #: arrays whose first ``len(samples)`` places are ``samples`` (None: not yet appended to):
    #: a write's samples go into the places after, growing by half when full, so a range
    #: that each write extends is not copied whole at each write. Places once filled are
    #: never written again: answers given out (views) stay as they were.
    room: Series | None = None


def _extend(r: _Range, add: Series) -> Series:
    """``r.samples`` followed by ``add``, in ``r.room`` (made, or made larger, as needed)."""
    n, m = len(r.samples.ts_ns), len(add.ts_ns)
    room = r.room
    if room is None or n + m > len(room.ts_ns):
        size = max(16, (n + m) * 3 // 2)
        room = Series(np.empty(size, np.int64), np.empty(size, np.float64), np.empty(size, np.uint8))
        room.ts_ns[:n], room.value[:n], room.quality[:n] = r.samples
        r.room = room
    room.ts_ns[n:n + m], room.value[n:n + m], room.quality[n:n + m] = add
    return room.cut(0, n + m)


class ReadCache:
    """Thread-safe. ``writing``/``written`` around every post of samples; ``generations``
    before a read's request and ``keep`` after its answer; ``answer`` before asking."""

    def __init__(self, max_samples: int, max_age_s: float = 600.0) -> None:
        self.max_samples = max_samples
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        #: (tag id, lo) -> range, least recently used first; a tag holds a few (a KPI call
        #: reads its tags at both edges of the window)
        self._ranges: OrderedDict[tuple[int, int], _Range] = OrderedDict()
        self._of_tag: dict[int, list[tuple[int, int]]] = {}
        self._held = 0  # samples held in all
        #: per tag id: its write generation (odd while a write of it is in flight)
        self._gen = np.zeros(0, np.int64)
        #: per tag id: whether it holds a range
        self._has = np.zeros(0, bool)
        #: the latest stamp this process has written of any tag (None: nothing yet)
        self._last: int | None = None
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ writes

    def _grow(self, top: int) -> None:
        if top >= len(self._gen):
            n = max(top + 1, 2 * len(self._gen), 64)
            self._gen = np.concatenate([self._gen, np.zeros(n - len(self._gen), np.int64)])
            self._has = np.concatenate([self._has, np.zeros(n - len(self._has), bool)])

    def writing(self, batch: Batch) -> None:
        """Before a post of ``batch``: its tags' generations odd (an index array's ``+=``
        adds once per distinct tag)."""
        top = int(batch.tag_id.max())
        with self._lock:
            self._grow(top)
            self._gen[batch.tag_id] += 1

    def written(self, batch: Batch, whole: bool) -> None:
        """After the post of ``batch`` (``writing`` before it): ``whole`` when InfluxDB took
        every point, False when the post failed or dropped points (what it holds is then
        unknown: the tags' ranges are dropped)."""
        last = int(batch.ts_ns.max())
        with self._lock:
            self._gen[batch.tag_id] += 1
            self._last = last if self._last is None else max(self._last, last)
            if not self._ranges:
                return
            held = np.flatnonzero(self._has[batch.tag_id])
            if not len(held):
                return
            # the rows of the tags held, by tag (in batch order within one): a sort of those
            # rows only, not of the whole write (a group write of ~47k points)
            order = held[np.argsort(batch.tag_id[held], kind="stable")]
            ids = batch.tag_id[order]
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            tags = ids[starts].tolist()
            if not whole:
                for tag in tags:
                    for key in list(self._of_tag.get(tag, ())):
                        self._drop(key)
                return
            # what decides each tag's fate, for all of them at once: its first stamp, whether
            # it has a sample that cannot be appended (NaN, text), whether its stamps rise
            ts, value, quality = batch.ts_ns[order], batch.value[order] + 0.0, batch.quality[order]
            first = np.minimum.reduceat(ts, starts).tolist()
            bad = ~np.isfinite(value)
            if batch.text is not None:
                bad |= batch.text[order] != None  # noqa: E711 (elementwise over the object column)
            dirty = np.logical_or.reduceat(bad, starts).tolist()
            rises = np.ones(len(ts), bool)
            rises[1:] = ts[1:] > ts[:-1]
            rises[starts] = True
            ordered = np.logical_and.reduceat(rises, starts).tolist()
            ends = [*starts[1:].tolist(), len(ids)]
            rows = Series(ts, value, quality)
            for g, (tag, i, j) in enumerate(zip(tags, starts.tolist(), ends, strict=True)):
                keys = self._of_tag.get(tag)
                if not keys:
                    continue
                add = rows.cut(i, j)
                if not ordered[g]:  # equal stamps: the last written stays (InfluxDB's rule)
                    k = np.argsort(add.ts_ns, kind="stable")
                    keep = keep_last(add.ts_ns[k])
                    k = k if keep is None else k[keep]
                    add = Series(add.ts_ns[k], add.value[k], add.quality[k])
                for key in list(keys):
                    self._apply(key, first[g], dirty[g], add)
            self._bound()

    def _apply(self, key: tuple[int, int], first: int, dirty: bool, add: Series) -> None:
        """A whole write's samples of the range's tag (``add``: in time order, one per stamp;
        ``first`` their earliest stamp; ``dirty`` when one is NaN or text)."""
        r = self._ranges[key]
        if r.hi != OPEN and first >= r.hi:
            return  # after a closed range: nothing it holds changes
        held = r.samples.ts_ns
        last = int(held[-1]) if len(held) else (int(r.prior.ts_ns[-1]) if len(r.prior.ts_ns) else None)
        if dirty or r.hi != OPEN or first < r.lo or (last is not None and first <= last):
            self._drop(key)
            return
        r.samples = _extend(r, add)
        self._held += len(add)
        n = len(r.samples.ts_ns)
        if n > max(1, self.max_samples // 4):  # an open range keeps its newer half
            k = n // 2
            self._drop(key)
            self._put(key[0], int(r.samples.ts_ns[k]), r.hi, r.samples.cut(k - 1, k),
                      r.samples.cut(k, n), r.born)

    def _bound(self) -> None:
        """The least recently used ranges go until the bound holds."""
        while self._held > self.max_samples and self._ranges:
            self._drop(next(iter(self._ranges)))

    def _put(self, tag: int, lo: int, hi: int, prior: Series, samples: Series, born: float) -> None:
        for key in list(self._of_tag.get(tag, ())):  # what it overlaps is older
            r = self._ranges[key]
            if r.lo < hi and lo < r.hi:
                self._drop(key)
        self._grow(tag)
        self._ranges[(tag, lo)] = _Range(lo, hi, prior, samples, born)
        self._of_tag.setdefault(tag, []).append((tag, lo))
        self._has[tag] = True
        self._held += len(samples.ts_ns)

    def _drop(self, key: tuple[int, int]) -> None:
        r = self._ranges.pop(key, None)
        if r is not None:
            self._held -= len(r.samples.ts_ns)
            keys = self._of_tag[key[0]]
            keys.remove(key)
            if not keys:
                del self._of_tag[key[0]]
                self._has[key[0]] = False

    def clear(self) -> None:
        with self._lock:
            self._ranges.clear()
            self._of_tag.clear()
            self._has[:] = False
            self._held = 0

    # ------------------------------------------------------------------ reads

    def last_written(self) -> int | None:
        """The latest stamp this process has written of any tag, if any: a read ending after
        it may as well read every sample from its start on (none is written after its end,
        unless stamped ahead of the others)."""
        with self._lock:
            return self._last

    def answer(self, tag: int, a: int, b: int) -> Series | None:
        """The samples of ``tag`` in [a, b) and the last before a (as ``read`` with prior),
        if a range held covers [a, b); else None."""
        with self._lock:
            key = next((k for k in self._of_tag.get(tag, ()) if k[1] <= a and b <= self._ranges[k].hi),
                       None)
            if key is None:
                self.misses += 1
                return None
            r = self._ranges[key]
            if time.monotonic() - r.born > self.max_age_s:
                self._drop(key)
                self.misses += 1
                return None
            self._ranges.move_to_end(key)
            self.hits += 1
            ts = r.samples.ts_ns
            i, j = np.searchsorted(ts, (a, b)).tolist()
            if i > 0:
                return r.samples.cut(i - 1, j)
            return join(r.prior, r.samples.cut(0, j))

    def generations(self, tags: list[int]) -> dict[int, int]:
        """Before a read's request: its tags' generations (``keep`` compares them)."""
        with self._lock:
            if tags:
                self._grow(max(tags))
            return {t: int(self._gen[t]) for t in tags}

    def keep(self, tag: int, lo: int, hi: int, prior: Series | None, samples: Series,
             gens: dict[int, int]) -> None:
        """What a read's answer told of ``tag``: every sample in [lo, hi) (``hi`` OPEN: every
        sample from lo on) and the last before lo (``prior``; None: there is none), kept
        unless a write of the tag began or ended since ``gens`` was taken, or one was in
        flight then."""
        if hi <= lo or len(samples.ts_ns) > self.max_samples // 4:
            return
        with self._lock:
            g = gens.get(tag)
            if g is None or g % 2 or int(self._gen[tag]) != g:
                return
            self._put(tag, lo, hi, prior if prior is not None else Series.empty(), samples,
                      time.monotonic())
            self._bound()
