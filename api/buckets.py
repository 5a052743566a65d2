"""Buckets of a window on the plant calendar's clock: hours, days and shifts as the plant's
wall clock has them (``calendar.timezone``), for ``/kpis/series`` and ``/tags/{path}/history``.

* ``Nm`` / ``1h``: the instants at which the local clock reads a multiple of N minutes (an
  hour): in a zone of offset +05:30 an hour bucket starts at :30 UTC; on the day the clocks
  go back the hour read twice is two buckets, and on the day they go forward the bucket from
  01:00 to 03:00 local lasts one hour.
* ``1d``: local days, midnight to midnight (23 or 25 hours on a DST change day).
* ``shift``: every occurrence of each of the calendar's shifts (``calendar.shifts``, a shift
  whose end is not after its start crossing midnight), named by shift and local date of its
  start; time outside every shift is in no bucket.

A local time is the first instant the wall clock reads it (``kpi.calendar``'s rule). Every
bucket is cut to the window: the first and last may be partial.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from config.times import Calendar
from kpi.calendar import _local_ns, occurrences

from .problems import BadParameter

__all__ = ["HISTORY_BUCKETS", "SERIES_BUCKETS", "Bucket", "buckets"]

_NS: Final = 1_000_000_000
_MIN: Final = 60 * _NS
#: sub-day buckets: their length in minutes
_MINUTES: Final = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60}
SERIES_BUCKETS = Literal["1h", "shift", "1d"]
HISTORY_BUCKETS = Literal["1m", "5m", "15m", "30m", "1h", "shift", "1d"]


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ns: int
    end_ns: int
    shift: str | None = None  # shift buckets: the shift's name
    date: str | None = None  # shift buckets: the local date the shift starts on


def _offset_ns(t_ns: int, tz: ZoneInfo) -> int:
    off = datetime.fromtimestamp(t_ns // _NS, UTC).astimezone(tz).utcoffset()
    assert off is not None
    return int(off.total_seconds()) * _NS


def _clock_edges(step_min: int, tz: ZoneInfo, start_ns: int, end_ns: int, most: int) -> list[int]:
    """Instants in (start_ns, end_ns) at which the local clock reads a multiple of the step.
    UTC offsets are whole multiples of 15 minutes: candidates on a UTC grid of
    gcd(step, 15 min), kept where the local reading is on the step."""
    step = step_min * _MIN
    grid = (15 if step_min % 15 == 0 else step_min) * _MIN
    if step_min < 15 and 15 % step_min:
        grid = _MIN
    t = start_ns - start_ns % grid + grid
    out: list[int] = []
    while t < end_ns:
        if (t + _offset_ns(t, tz)) % step == 0:
            out.append(t)
            if len(out) > most:
                break
        t += grid
    return out


def _local_date(t_ns: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t_ns // _NS, UTC).astimezone(tz).date()


def buckets(kind: str, calendar: Calendar, start_ns: int, end_ns: int, most: int,
            setting: str = "api.max_series_buckets") -> list[Bucket]:
    """The buckets of [start_ns, end_ns) (see the module); more than ``most`` is a 400
    problem naming ``bucket`` and the limit."""
    tz = ZoneInfo(calendar.timezone)

    def too_many() -> BadParameter:
        return BadParameter("bucket", f"the window holds more {kind!r} buckets than {setting} "
                            f"({most}): ask for a shorter window or longer buckets",
                            limit=(setting, most))

    # refused before the edges are computed where the window's length already says so
    minutes = _MINUTES.get(kind)
    if minutes is not None:
        if (end_ns - start_ns) // (minutes * _MIN) > most + 1:
            raise too_many()
        edges = _clock_edges(minutes, tz, start_ns, end_ns, most)
    elif kind == "1d":
        if (end_ns - start_ns) // (23 * 3600 * _NS) > most + 1:
            raise too_many()
        d = _local_date(start_ns, tz) + timedelta(days=1)
        edges = []
        while (at := _local_ns(d, time(0), tz)) < end_ns:
            if at > start_ns:
                edges.append(at)
            d += timedelta(days=1)
            if len(edges) > most:
                break
    elif kind == "shift":
        return _shifts(calendar, tz, start_ns, end_ns, most, too_many)
    else:  # the routes' Literal types keep other values out
        raise BadParameter("bucket", f"unknown bucket {kind!r}")
    cuts = [start_ns, *edges, end_ns]
    out = [Bucket(a, b) for a, b in itertools.pairwise(cuts) if b > a]
    if len(out) > most:
        raise too_many()
    return out


def _shifts(calendar: Calendar, tz: ZoneInfo, start_ns: int, end_ns: int, most: int,
            too_many: Callable[[], BadParameter]) -> list[Bucket]:
    shifts = calendar.shifts
    if (end_ns - start_ns) // (86400 * _NS) * max(len(shifts), 1) > most + len(shifts):
        raise too_many()
    first = _local_date(start_ns, tz) - timedelta(days=1)
    last = _local_date(end_ns, tz)
    out: list[Bucket] = []
    for day, s, a, b in occurrences(shifts, tz, first, last):
        a, b = max(a, start_ns), min(b, end_ns)
        if b > a:
            out.append(Bucket(a, b, s.name or f"{s.start:%H:%M}-{s.end:%H:%M}", day.isoformat()))
            if len(out) > most:
                raise too_many()
    out.sort(key=lambda b: (b.start_ns, b.end_ns))
    return out
