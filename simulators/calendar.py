"""Planned busy time of a shift calendar, computed plainly for the ground truth.

This deliberately shares no code with ``kpi/calendar.py`` and works another way, so that a
calendar bug cannot hide by being in both the product and the truth it is checked against.
It is written to be obviously right, not fast (the model caches its answers per day).

The meaning, in the calendar's time zone:

- A daily range listed for a weekday occurs on each such local date ``d``. It starts at the
  first instant the wall clock reads ``d start`` or later, and ends at the first instant it
  reads its end or later: ``d end`` when ``end > start``, else ``(d + 1 day) end`` (it crosses
  midnight; ``end == start`` is 24 hours of wall clock). An occurrence is elapsed time, so a
  22:00-06:00 shift lasts 7 h on the night the clocks go forward and 9 h when they go back;
  a time the clocks skip (02:30 in a spring-forward gap) is reached at the jump.
- A holiday is the whole local date: from the first instant reading ``d 00:00`` to the first
  instant reading ``(d + 1) 00:00``. Overnight shifts lose the part on that date only.
- An instant is planned when it lies in some shift occurrence, in no planned-stop occurrence
  and in no holiday.

How: list every occurrence that can touch the window, cut the window at all their ends, and
test each piece once (membership cannot change inside a piece).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from config.times import ALL_DAYS, Calendar, DailyRange

__all__ = ["ShiftCalendar", "datetime_ns", "overlap_seconds"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIDNIGHT = time(0)

Span = tuple[int, int]  # [start, end) in ns since the epoch


def datetime_ns(dt: datetime) -> int:
    """Exact nanoseconds since the epoch of an aware datetime (no float rounding)."""
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


class ShiftCalendar:
    """Planned busy time of one :class:`~config.times.Calendar`."""

    def __init__(self, calendar: Calendar) -> None:
        self.tz = ZoneInfo(calendar.timezone)
        self.shifts = list(calendar.shifts)
        self.stops = list(calendar.planned_stops)
        self.holidays = sorted(date.fromisoformat(h) for h in calendar.holidays)

    # ------------------------------------------------------------------ wall clock

    def reading(self, t_ns: int) -> datetime:
        """What the wall clock shows at ``t_ns`` (naive local time, floored to a microsecond)."""
        return (_EPOCH + timedelta(microseconds=t_ns // 1000)).astimezone(self.tz).replace(tzinfo=None)

    def first_reading(self, local: datetime) -> int:
        """The first instant at which the wall clock reads ``local`` (naive) or later."""
        # Where ``local`` exists, one of the two offsets in force around it reads it; when the
        # clocks go back it is read twice and the earlier one is first.
        hits = []
        for fold in (0, 1):
            t = datetime_ns(local.replace(tzinfo=self.tz, fold=fold))
            if self.reading(t) == local:
                hits.append(t)
        if hits:
            return min(hits)
        # Skipped by the clocks going forward: the first instant reading later than ``local``
        # is the jump. It lies between the two readings' instants; bisect on microseconds.
        lo, hi = sorted(datetime_ns(local.replace(tzinfo=self.tz, fold=f)) // 1000 for f in (0, 1))
        while hi - lo > 1:  # reading(lo * 1000) < local <= reading(hi * 1000)
            mid = (lo + hi) // 2
            if self.reading(mid * 1000) < local:
                lo = mid
            else:
                hi = mid
        return hi * 1000

    # ------------------------------------------------------------------ occurrences

    def _occurrences(self, ranges: list[DailyRange], first: date, last: date) -> list[Span]:
        out: list[Span] = []
        day = first
        while day <= last:
            for r in ranges:
                if ALL_DAYS[day.weekday()] not in r.days:
                    continue
                start, end = r.start.replace(tzinfo=None), r.end.replace(tzinfo=None)
                end_day = day if end > start else day + timedelta(days=1)
                out.append((
                    self.first_reading(datetime.combine(day, start)),
                    self.first_reading(datetime.combine(end_day, end)),
                ))
            day += timedelta(days=1)
        return out

    def _holidays(self) -> list[Span]:
        return [
            (self.first_reading(datetime.combine(d, _MIDNIGHT)),
             self.first_reading(datetime.combine(d + timedelta(days=1), _MIDNIGHT)))
            for d in self.holidays
        ]

    # ------------------------------------------------------------------ planned time

    def intervals(self, start_ns: int, end_ns: int) -> tuple[I64, I64]:
        """Planned busy time within [start_ns, end_ns) as sorted, disjoint, non-touching
        ``(starts, ends)`` in ns."""
        if end_ns <= start_ns:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        # an occurrence starts on its own local date and lasts at most ~1 day (25 h at most)
        first = self.reading(start_ns).date() - timedelta(days=2)
        last = self.reading(end_ns).date() + timedelta(days=1)
        shifts = self._occurrences(self.shifts, first, last)
        off = self._occurrences(self.stops, first, last) + self._holidays()

        def inside(t: int, spans: list[Span]) -> bool:
            return any(s <= t < e for s, e in spans)

        cuts = sorted({start_ns, end_ns} | {
            t for span in shifts + off for t in span if start_ns < t < end_ns
        })
        starts: list[int] = []
        ends: list[int] = []
        for a, b in itertools.pairwise(cuts):
            if not inside(a, shifts) or inside(a, off):
                continue
            if ends and ends[-1] == a:  # touches the previous planned piece: extend it
                ends[-1] = b
            else:
                starts.append(a)
                ends.append(b)
        return np.array(starts, np.int64), np.array(ends, np.int64)


def overlap_seconds(plan: tuple[I64, I64], starts: I64, ends: I64) -> F64:
    """Seconds of each segment [starts[i], ends[i]) that lie inside ``plan``.

    The segments must be sorted and disjoint (a timeline's are). Everything is cut at every
    edge of either; each piece belongs to at most one segment and is either planned or not.
    """
    ps, pe = plan
    out = np.zeros(len(starts), np.int64)
    if out.size == 0:
        return out / _NS
    cuts = np.unique(np.concatenate((starts, ends, ps, pe)).astype(np.int64))
    a, b = cuts[:-1], cuts[1:]
    seg = np.searchsorted(starts, a, side="right") - 1
    in_seg = (seg >= 0) & (a < ends[np.maximum(seg, 0)])
    j = np.searchsorted(ps, a, side="right") - 1
    in_plan = (j >= 0) & (a < pe[np.maximum(j, 0)]) if ps.size else np.zeros(a.size, bool)
    keep = in_seg & in_plan
    np.add.at(out, seg[keep], (b - a)[keep])
    return out / _NS
