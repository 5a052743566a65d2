"""Planned busy time from a shift calendar, as sorted disjoint [start, end) intervals in ns.

A local time is the first instant the wall clock reads it: in the hour the clocks go back
(read twice) the earlier reading; in the hour they skip when they go forward, the instant of
the jump (a shift that starts at a skipped 02:30 starts when the clock jumps from 02:00 to
03:00). ``simulators/calendar.py`` applies the same rule, computed another way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from config.times import ALL_DAYS, Calendar, DailyRange, first_instant
from config.times import epoch_ns as _ns

I64 = npt.NDArray[np.int64]
_NS = 1_000_000_000


def _local_ns(day: date, at: time, tz: ZoneInfo) -> int:
    """The first instant at which the wall clock in ``tz`` reads ``day at`` (see the module;
    ``config.times.first_instant`` holds the rule, shared with the API's bare dates)."""
    return _ns(first_instant(day, at, tz))


R = TypeVar("R", bound=DailyRange)


def occurrences(ranges: Sequence[R], tz: ZoneInfo, first: date, last: date
                ) -> Iterator[tuple[date, R, int, int]]:
    """Each occurrence of daily ranges on local days first..last, day by day: (the local day
    it starts on, the range, start ns, end ns); a range whose end is not after its start
    crosses midnight."""
    day = first
    while day <= last:
        wd = ALL_DAYS[day.weekday()]
        for r in ranges:
            if wd not in r.days:
                continue
            end_day = day if r.end > r.start else day + timedelta(days=1)
            yield day, r, _local_ns(day, r.start, tz), _local_ns(end_day, r.end, tz)
        day += timedelta(days=1)


def _daily(ranges: list[DailyRange], tz: ZoneInfo, first: date, last: date) -> list[tuple[int, int]]:
    """Occurrences of daily ranges on days first..last (local), as ns intervals."""
    return [(a, b) for _, _, a, b in occurrences(ranges, tz, first, last)]


def merge(intervals: list[tuple[int, int]]) -> tuple[I64, I64]:
    """Union of intervals as sorted disjoint arrays."""
    if not intervals:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    arr = np.array(sorted(intervals), dtype=np.int64)
    starts, ends = [int(arr[0, 0])], [int(arr[0, 1])]
    for s, e in arr[1:]:
        if s <= ends[-1]:
            ends[-1] = max(ends[-1], int(e))
        else:
            starts.append(int(s))
            ends.append(int(e))
    return np.array(starts, np.int64), np.array(ends, np.int64)


def subtract(a: tuple[I64, I64], b: tuple[I64, I64]) -> tuple[I64, I64]:
    """a minus b, both sorted disjoint interval sets."""
    out: list[tuple[int, int]] = []
    bs, be = b
    for s, e in zip(a[0].tolist(), a[1].tolist(), strict=True):
        cur = s
        i = int(np.searchsorted(be, cur, side="right"))
        while i < len(bs) and bs[i] < e:
            if bs[i] > cur:
                out.append((cur, int(bs[i])))
            cur = max(cur, int(be[i]))
            i += 1
        if cur < e:
            out.append((cur, e))
    return merge(out)


def clip(iv: tuple[I64, I64], start_ns: int, end_ns: int) -> tuple[I64, I64]:
    s = np.clip(iv[0], start_ns, end_ns)
    e = np.clip(iv[1], start_ns, end_ns)
    keep = e > s
    return s[keep], e[keep]


def planned_intervals(cal: Calendar, start_ns: int, end_ns: int) -> tuple[I64, I64]:
    """Planned busy time within [start_ns, end_ns): shifts - planned stops - holidays."""
    tz = ZoneInfo(cal.timezone)
    first = datetime.fromtimestamp(start_ns / _NS, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_ns / _NS, tz).date()
    shifts = merge(_daily(cal.shifts, tz, first, last))
    stops = merge(_daily(cal.planned_stops, tz, first, last))
    holidays = merge(
        [
            (_local_ns(d, time(0), tz), _local_ns(d + timedelta(days=1), time(0), tz))
            for d in (date.fromisoformat(h) for h in cal.holidays)
        ]
    )
    return clip(subtract(subtract(shifts, stops), holidays), start_ns, end_ns)


def overlap_seconds(iv: tuple[I64, I64], starts: I64, ends: I64) -> npt.NDArray[np.float64]:
    """For each [starts[i], ends[i]) the seconds it overlaps the disjoint interval set ``iv``.

    Vectorised with a cumulative-coverage function: cover(t) = planned seconds before t.
    """
    ps, pe = iv
    if len(ps) == 0:
        return np.zeros(len(starts), np.float64)
    cum = np.concatenate([[0], np.cumsum(pe - ps)])

    def cover(t: I64) -> I64:
        i = np.searchsorted(ps, t, side="right")  # intervals starting at or before t
        before = cum[np.maximum(i - 1, 0)]
        inside = np.where(i > 0, np.minimum(t, pe[np.maximum(i - 1, 0)]) - ps[np.maximum(i - 1, 0)], 0)
        return np.where(i > 0, before + inside, 0)

    return ((cover(ends) - cover(starts)) / _NS).astype(np.float64)
