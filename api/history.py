"""A tag's history per bucket: the aggregate of its raw samples, columnar (numpy), read with
the store's paged reads (``Store.read_page``), so that memory is that of one page and the
buckets' accumulators, whatever the window holds.

``min``, ``max``, ``last`` and ``count`` are over the *usable* samples whose time is in the
bucket (quality below bad and a finite value); ``mean`` is **time-weighted**: each usable
value holds from its sample until the tag's next sample (the value in force at the window's
start is the last sample before it), and the mean is the integral over the bucket's known
time divided by that time. A bad-quality or NaN sample makes the time until the next sample
unknown, so do the gaps of the tag's device (``tag_gaps``: it was not being collected), and
so is time after ``now``. That is the mean of the signal, not of the
samples: a tag stored on change (a state, a setpoint) or polled at an uneven rate has few
samples where it is steady, and a sample mean would weigh its changes, not its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from config.signals import Quality
from store.base import Store, TagRecord

from .buckets import Bucket

__all__ = ["PAGE", "Aggregates", "aggregate", "aggregate_text", "tag_gaps"]

#: samples per store read
PAGE: Final = 50_000
_NS: Final = 1e9

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Aggregates:
    """Per bucket: usable samples, other samples, min, max, last, and the time-weighted
    integral and known seconds (``mean`` = integral / known)."""

    n: int
    count: I64 = field(init=False)
    bad: I64 = field(init=False)
    min: F64 = field(init=False)
    max: F64 = field(init=False)
    last: F64 = field(init=False)
    last_ts: I64 = field(init=False)
    integral: F64 = field(init=False)
    known_s: F64 = field(init=False)

    def __post_init__(self) -> None:
        n = self.n
        self.count, self.bad = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.min, self.max = np.full(n, np.nan), np.full(n, np.nan)
        self.last, self.last_ts = np.full(n, np.nan), np.full(n, -1, np.int64)
        self.integral, self.known_s = np.zeros(n), np.zeros(n)

    def mean(self) -> F64:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.known_s > 0, self.integral / np.maximum(self.known_s, 1e-300),
                            np.nan)


def _usable(value: F64, quality: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return (quality < Quality.BAD) & np.isfinite(value)


def tag_gaps(store: Store, tag: TagRecord, start_ns: int, end_ns: int, now_ns: int
             ) -> list[tuple[int, int]]:
    """The intervals of [start_ns, end_ns) during which ``tag``'s value is unknown by a gap:
    its device's gaps (device-wide, of its asset, or of damaged data of this tag), an open
    gap reaching now; merged."""
    out: list[tuple[int, int]] = []
    for g in store.gaps(tag.device, start_ns, end_ns):
        if g.asset not in (None, tag.asset) or g.tag not in (None, tag.path):
            continue
        a, b = max(g.start_ns, start_ns), min(now_ns if g.end_ns is None else g.end_ns, end_ns)
        if b > a:
            out.append((a, b))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(out):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _step_integral(t: I64, v: F64, at: I64) -> tuple[F64, F64]:
    """Of the step function holding v[k] on [t[k], t[k+1]) (NaN: unknown; the last value
    holds on), the integral and the known seconds from t[0] to each of ``at`` (>= t[0])."""
    known = np.isfinite(v[:-1])
    dt = np.diff(t) / _NS
    cg = np.concatenate([[0.0], np.cumsum(np.where(known, v[:-1] * dt, 0.0))])
    ck = np.concatenate([[0.0], np.cumsum(np.where(known, dt, 0.0))])
    j = np.searchsorted(t, at, "right") - 1
    held = v[j]
    ext = (at - t[j]) / _NS
    return (cg[j] + np.where(np.isfinite(held), held * ext, 0.0),
            ck[j] + np.where(np.isfinite(held), ext, 0.0))


def aggregate(store: Store, tag_id: int, bks: list[Bucket], now_ns: int,
              page: int = PAGE, gaps: Sequence[tuple[int, int]] = ()) -> Aggregates:
    """Every aggregate of ``tag_id`` over the buckets (sorted by start; they may overlap),
    reading the samples of [first start, last end) a page at a time. ``gaps`` (sorted,
    disjoint): intervals of unknown value (``tag_gaps``), left out of the mean."""
    agg = Aggregates(len(bks))
    if not bks:
        return agg
    starts = np.array([b.start_ns for b in bks], np.int64)
    ends = np.array([b.end_ns for b in bks], np.int64)
    lo_ns, hi_ns = int(starts.min()), int(ends.max())
    # the integral G(t) from lo_ns is evaluated at every bucket edge (clamped to now: later
    # time is unknown); the edges are met in time order as the pages go by
    stop = min(hi_ns, now_ns)
    q = np.unique(np.clip(np.concatenate([starts, ends]), lo_ns, max(stop, lo_ns)))
    g_at, k_at = np.zeros(len(q)), np.zeros(len(q))
    done_q = 0  # edges evaluated so far
    g0 = k0 = 0.0  # G and K at the carried sample's time
    prior = store.read(tag_id, lo_ns, lo_ns + 1, prior=True)
    before = prior.ts_ns < lo_ns
    if before.any():
        i = int(np.flatnonzero(before)[-1])
        usable = bool(_usable(prior.value[i:i + 1], prior.quality[i:i + 1])[0])
        carry_t, carry_v = lo_ns, float(prior.value[i]) if usable else np.nan
    else:
        carry_t, carry_v = lo_ns, np.nan
    at, skip = lo_ns, 0
    while True:
        got = store.read_page(tag_id, at, hi_ns, page + skip)
        ts, value, quality = got.ts_ns[skip:], got.value[skip:], got.quality[skip:]
        ok = _usable(value, quality)
        # sample aggregates: each bucket's slice of this page (the page is in time order)
        a_idx = np.searchsorted(ts, starts, "left")
        b_idx = np.searchsorted(ts, ends, "left")
        cum_ok = np.concatenate([[0], np.cumsum(ok)])
        n_ok = cum_ok[b_idx] - cum_ok[a_idx]
        agg.count += n_ok
        agg.bad += (b_idx - a_idx) - n_ok
        uv = np.where(ok, value, np.nan)
        for i in np.flatnonzero(n_ok).tolist():
            seg = uv[a_idx[i]:b_idx[i]]
            agg.min[i] = np.fmin(agg.min[i], np.nanmin(seg))
            agg.max[i] = np.fmax(agg.max[i], np.nanmax(seg))
            j = a_idx[i] + int(np.flatnonzero(ok[a_idx[i]:b_idx[i]])[-1])
            agg.last[i], agg.last_ts[i] = value[j], ts[j]
        # the time-weighted integral: a step function from the carried sample to the page's
        # last sample (which is carried to the next page), evaluated at the edges inside
        t = np.concatenate([[carry_t], np.clip(ts, lo_ns, max(stop, lo_ns))]).astype(np.int64)
        v = np.concatenate([[carry_v], uv])
        page_end = int(t[-1])
        more = got.more and len(ts) > 0
        # the edges before the page's last sample (all, at the end), whose value holds on
        upto = int(np.searchsorted(q, page_end, "left")) if more else len(q)
        if upto > done_q:
            gi, ki = _step_integral(t, v, q[done_q:upto])
            g_at[done_q:upto], k_at[done_q:upto] = g0 + gi, k0 + ki
            done_q = upto
        if not more:
            break
        ge, ke = _step_integral(t, v, np.array([page_end], np.int64))
        g0, k0 = g0 + float(ge[0]), k0 + float(ke[0])
        carry_t, carry_v = page_end, float(v[-1])
        last = int(ts[-1])
        at, skip = last, len(ts) - int(np.searchsorted(ts, last, "left"))
    for a, b in gaps:  # the step function's integral over each gap is unknown time
        a, b = max(a, lo_ns), min(b, stop)
        if b <= a:
            continue
        s = store.read(tag_id, a, b, prior=True)  # a gap holds few samples, if any
        inside = s.ts_ns >= a
        first = np.nan
        if (~inside).any():
            k = int(np.flatnonzero(~inside)[-1])
            first = float(s.value[k]) if _usable(s.value[k:k + 1], s.quality[k:k + 1])[0] else np.nan
        t = np.concatenate([[a], s.ts_ns[inside]]).astype(np.int64)
        v = np.concatenate([[first], np.where(_usable(s.value[inside], s.quality[inside]),
                                              s.value[inside], np.nan)])
        later = q[q > a]
        gi, ki = _step_integral(t, v, np.minimum(later, b))
        g_at[q > a] -= gi
        k_at[q > a] -= ki
    ia = np.searchsorted(q, np.clip(starts, lo_ns, max(stop, lo_ns)))
    ib = np.searchsorted(q, np.clip(ends, lo_ns, max(stop, lo_ns)))
    agg.integral = g_at[ib] - g_at[ia]
    agg.known_s = k_at[ib] - k_at[ia]
    return agg


def aggregate_text(store: Store, tag_id: int, bks: list[Bucket], page: int = PAGE
                   ) -> tuple[I64, I64, list[str | None]]:
    """A text tag's samples per bucket (count, other samples) and the last text in each:
    counted from paged reads; each bucket's last text read alone (one sample)."""
    agg = Aggregates(len(bks))
    starts = np.array([b.start_ns for b in bks], np.int64)
    ends = np.array([b.end_ns for b in bks], np.int64)
    if not bks:
        return agg.count, agg.bad, []
    at, hi, skip = int(starts.min()), int(ends.max()), 0
    while True:
        got = store.read_page(tag_id, at, hi, page + skip)
        ts, quality = got.ts_ns[skip:], got.quality[skip:]
        ok = quality < Quality.BAD
        a_idx, b_idx = np.searchsorted(ts, starts, "left"), np.searchsorted(ts, ends, "left")
        cum = np.concatenate([[0], np.cumsum(ok)])
        n_ok = cum[b_idx] - cum[a_idx]
        agg.count += n_ok
        agg.bad += (b_idx - a_idx) - n_ok
        for i in np.flatnonzero(n_ok).tolist():
            j = a_idx[i] + int(np.flatnonzero(ok[a_idx[i]:b_idx[i]])[-1])
            agg.last_ts[i] = ts[j]
        if not (got.more and len(ts)):
            break
        last = int(ts[-1])
        at, skip = last, len(ts) - int(np.searchsorted(ts, last, "left"))
    texts: list[str | None] = []
    for t in agg.last_ts.tolist():
        got_text = store.read_text(tag_id, t, t + 1) if t >= 0 else []
        texts.append(got_text[-1][1] if got_text else None)
    return agg.count, agg.bad, texts
