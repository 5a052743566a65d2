"""Step signals (state, mode) and cumulative counters, as numpy.

A step signal holds each sample's value until the next sample of the same tag. A value is
unknown where its sample has bad quality, before the first sample, inside a recorded gap and
after it until the tag's next sample, or where the raw value has no canonical meaning. Unknown
time is never guessed: it lowers the coverage that every KPI reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from config.signals import Quality

from .calendar import merge

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
UNKNOWN = -1


def step_codes(value: F64, quality: npt.NDArray[np.uint8], lut: Mapping[int, int] | None) -> I64:
    """Raw step values mapped through ``lut`` (raw -> canonical code); a bad or non-finite
    sample, and a raw value the table does not hold, -> UNKNOWN; without a table a whole
    number is its own code."""
    ok = (quality < Quality.BAD) & np.isfinite(value)
    raw = np.where(ok, value, -1.0)
    code = np.full(len(value), UNKNOWN, np.int64)
    if lut is None:
        good = ok & (raw == np.round(raw))
        code[good] = raw[good].astype(np.int64)
    else:
        for r, c in lut.items():
            code[ok & (raw == r)] = c
    return code


@dataclass(frozen=True, slots=True)
class Step:
    """One step signal: sorted sample times and canonical codes (UNKNOWN where unusable)."""

    ts_ns: I64
    code: I64

    @classmethod
    def from_samples(
        cls,
        ts_ns: I64,
        value: F64,
        quality: npt.NDArray[np.uint8],
        lut: Mapping[int, int] | None = None,
    ) -> Step:
        """Map raw values through ``lut`` (raw -> canonical code); unmapped raw -> UNKNOWN."""
        return cls(np.asarray(ts_ns, np.int64), step_codes(value, quality, lut))


    @classmethod
    def constant(cls, code: int, start_ns: int, gaps: Sequence[tuple[int, int]] = ()) -> Step:
        """A configured value that holds over the whole window from ``start_ns`` (e.g. an
        asset's ``default_mode``): one sample at the start and one at each gap's end, since
        :func:`combine` carries no value across a gap, while a configured value is as true
        after it as before."""
        ts = np.unique(np.array([start_ns, *(e for _, e in gaps if e > start_ns)], np.int64))
        return cls(ts, np.full(len(ts), code, np.int64))


@dataclass(frozen=True, slots=True)
class Intervals:
    """Consecutive intervals [start, end) covering a window, with one code row per signal."""

    start: I64
    end: I64
    codes: npt.NDArray[np.int64]  # shape (n_signals, n_intervals)

    @property
    def seconds(self) -> F64:
        return (self.end - self.start).astype(np.float64) / 1e9


def combine(
    steps: Sequence[Step],
    start_ns: int,
    end_ns: int,
    gaps: Sequence[tuple[int, int]] = (),
    cuts: Sequence[I64] = (),
) -> Intervals:
    """Split [start_ns, end_ns) at every change of any signal, at gap edges and at ``cuts``
    (e.g. the edges of planned busy time, so that each interval is wholly in or out of it).

    Each interval carries every signal's code in force over it. Inside a gap every code is
    UNKNOWN, and after the gap each signal stays UNKNOWN until its next sample arrives: the
    device was unreachable, so the last value before the gap is never carried across it.
    """
    gs, ge = merge(list(gaps))
    edges = [np.array([start_ns, end_ns], np.int64), gs, ge, *cuts]
    edges += [s.ts_ns for s in steps]
    b = np.unique(np.concatenate(edges))
    b = b[(b >= start_ns) & (b <= end_ns)]
    starts, ends = b[:-1], b[1:]
    codes = np.full((len(steps), len(starts)), UNKNOWN, np.int64)
    # the gap in force at or last before each interval start (gaps are merged, so their ends
    # ascend too): a sample older than that gap's end does not reach across it
    j = np.searchsorted(gs, starts, side="right") - 1
    after_gap = np.where(j >= 0, ge[np.maximum(j, 0)] if len(ge) else 0, np.iinfo(np.int64).min)
    for k, s in enumerate(steps):
        i = np.searchsorted(s.ts_ns, starts, side="right") - 1
        # a value holds from its sample until the next sample, never across a gap: inside a
        # gap, and after it until the next sample arrives, the signal is unknown
        have = (i >= 0) & (s.ts_ns[np.maximum(i, 0)] >= after_gap) if len(s.ts_ns) else i >= 0
        codes[k, have] = s.code[i[have]]
    return Intervals(starts, ends, codes)


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """Increase of a cumulative counter in a window, and each increase with the two samples
    that bound it (it happened somewhere in (t0, t1]; dated t1 to pick the window)."""

    increase: float
    resets: int
    samples: int  # usable samples in the window
    t0_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    t1_ns: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    inc: F64 = field(default_factory=lambda: np.empty(0, np.float64))
    #: increases excluded as physically implausible: (t0_ns, t1_ns, increase, allowed)
    implausible: tuple[tuple[int, int, float, float], ...] = ()


def counter_increase(
    ts_ns: I64,
    value: F64,
    quality: npt.NDArray[np.uint8],
    start_ns: int,
    end_ns: int,
    max_per_s: float | None = None,
    stamp_tolerance_s: float = 0.0,
) -> CounterDelta:
    """Sum of non-negative differences between consecutive usable samples, each attributed
    to the later sample's time and counted when that time is in [start_ns, end_ns).

    A drop means the counter was reset: the new value counts from zero.
    Needs the last sample before the window (read with ``prior``) to count the first rise.
    With ``max_per_s`` (the most parts a second the machine can make), an increase above
    ``max_per_s`` x (the seconds between its two samples + ``stamp_tolerance_s``), plus one
    part of sampling slack, is physically implausible (a glitch to 0 and back): it is excluded
    and listed in ``implausible``.

    ``stamp_tolerance_s``: how late a sample's stamp may be against the instant its value was
    read. A gateway stamps a Modbus answer, or a plain MQTT value, when its coroutine resumes;
    starved of CPU, it stamps one late, and the pair after it looks shorter than it was: by at
    most the tolerance, since the later sample is not early. The rule stays local to the pair
    (hour sums stay additive).
    """
    ok = (quality < Quality.BAD) & np.isfinite(value)
    t, v = ts_ns[ok], value[ok]
    if len(v) < 2:
        return CounterDelta(0.0, 0, int(((t >= start_ns) & (t < end_ns)).sum()))
    d = np.diff(v)
    inc = np.where(d >= 0, d, v[1:])
    at = t[1:]
    inw = (at >= start_ns) & (at < end_ns)
    bad: tuple[tuple[int, int, float, float], ...] = ()
    if max_per_s is not None:
        allowed = ((at - t[:-1]) / 1e9 + stamp_tolerance_s) * max_per_s + 1.0
        wrong = inw & (inc > allowed)
        bad = tuple(
            (int(a), int(b), float(x), float(y))
            for a, b, x, y in zip(t[:-1][wrong], at[wrong], inc[wrong], allowed[wrong], strict=True)
        )
        inc = np.where(wrong, 0.0, inc)
    return CounterDelta(
        float(inc[inw].sum()),
        int((d[inw] < 0).sum()),
        int(((t >= start_ns) & (t < end_ns)).sum()),
        t[:-1][inw],
        at[inw],
        inc[inw].astype(np.float64),
        bad,
    )
