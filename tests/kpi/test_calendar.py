"""Planned busy time against hand-computed seconds, for both calendars.

The same table runs against the product's ``kpi/calendar.py`` and the simulators' own
``simulators/calendar.py`` (the ground truth's, which shares no code with it), so neither can
agree with the other by sharing a mistake. Each row's arithmetic is written beside it.

Meaning pinned here (both calendars; see ``simulators/calendar.py``):
- a range occurs on each listed weekday; ``end <= start`` crosses midnight, so a night shift
  belongs to the day it starts on (a Friday 22:00-06:00 runs into Saturday);
- occurrences are elapsed time between the wall-clock readings, so a 22:00-06:00 night is
  7 h when the clocks go forward and 9 h when they go back;
- a local time is the first instant the clock reads it (or later): a time the clocks skip
  is the instant of the jump, a time they read twice is its first reading;
- a holiday removes its whole local date, 00:00-24:00, as the config documents ("whole day
  off"): a night shift that starts the evening before loses its part after midnight, and the
  holiday's own night shift keeps its part on the next date. (Many plants would rather say
  "no shift that *starts* on a holiday runs"; that is a change of meaning for config and both
  calendars, not a bug fix, so it is not made here.)

2026-11-16 is a Monday. Europe/Berlin goes forward on Sun 2026-03-29 at 02:00 CET (01:00Z ->
03:00 CEST) and back on Sun 2026-10-25 at 03:00 CEST (01:00Z -> 02:00 CET).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from config.times import Calendar
from kpi.calendar import planned_intervals
from simulators.calendar import ShiftCalendar, datetime_ns

H = 3600
I64 = npt.NDArray[np.int64]
Planned = Callable[[Calendar, int, int], tuple[I64, I64]]

IMPLEMENTATIONS: dict[str, Planned] = {
    "kpi": planned_intervals,
    "simulators": lambda cal, s, e: ShiftCalendar(cal).intervals(s, e),
}

MON_SAT = ["mon", "tue", "wed", "thu", "fri", "sat"]
MON_FRI = ["mon", "tue", "wed", "thu", "fri"]


@dataclass(frozen=True)
class Case:
    id: str
    calendar: dict[str, Any]
    start: str  # ISO 8601 with offset
    end: str
    seconds: float  # hand-computed planned busy seconds in [start, end)
    kpi_wrong: str = ""  # why kpi/calendar.py gets this row wrong (xfail, strict)
    marks: list[Any] = field(default_factory=list)


def shift(start: str, end: str, days: list[str] | None = None) -> dict[str, Any]:
    return {"start": start, "end": end} | ({"days": days} if days else {})


UTC_DAY = {"shifts": [shift("06:00", "14:00")]}
NIGHT = {"shifts": [shift("22:00", "06:00")]}
NIGHT_STOP = {"shifts": [shift("22:00", "06:00")], "planned_stops": [shift("23:30", "00:30")]}
BERLIN_NIGHT = {"timezone": "Europe/Berlin", "shifts": [shift("22:00", "06:00")]}
BERLIN_ALL_DAY = {"timezone": "Europe/Berlin"}  # default: one 00:00-00:00 shift, every day
DEMO_LIKE = {
    "timezone": "Asia/Shanghai",
    "shifts": [shift("06:00", "14:00", MON_SAT), shift("14:00", "22:00", MON_SAT)],
    "planned_stops": [shift("09:30", "09:40"), shift("12:00", "12:30"), shift("18:00", "18:15")],
}

CASES = [
    # ------------------------------------------------------------------ day shifts, window edges
    # 06:00-14:00 = 8 h
    Case("day shift, one day", UTC_DAY, "2026-11-16T00:00+00:00", "2026-11-17T00:00+00:00", 8 * H),
    # 10:00-12:30 of 06:00-14:00 = 2.5 h
    Case("window inside a shift", UTC_DAY, "2026-11-16T10:00+00:00", "2026-11-16T12:30+00:00", 2.5 * H),
    # Mon 10:00-14:00 (4 h) + Tue 06:00-07:00 (1 h) = 5 h
    Case("window from mid-shift to mid-shift", UTC_DAY,
         "2026-11-16T10:00+00:00", "2026-11-17T07:00+00:00", 5 * H),
    # 13:59:59.5-14:00:00 inside, 14:00:00-14:00:00.5 after the shift = 0.5 s
    Case("sub-second window edges", UTC_DAY,
         "2026-11-16T13:59:59.500+00:00", "2026-11-16T14:00:00.500+00:00", 0.5),
    # Sunday, shifts mon-sat only = 0
    Case("no shift that weekday", {"shifts": [shift("06:00", "14:00", MON_SAT)]},
         "2026-11-22T00:00+00:00", "2026-11-23T00:00+00:00", 0),
    # 06:00-14:00 and 10:00-18:00 overlap: their union 06:00-18:00 = 12 h, not 16 h
    Case("overlapping shifts count once", {"shifts": [shift("06:00", "14:00"), shift("10:00", "18:00")]},
         "2026-11-16T00:00+00:00", "2026-11-17T00:00+00:00", 12 * H),
    # the demo's shape, local Monday: 06:00-22:00 = 16 h = 57,600 s, minus breaks
    # 10 + 30 + 15 min = 55 min = 3,300 s -> 54,300 s
    Case("two shifts with breaks, Asia/Shanghai", DEMO_LIKE,
         "2026-11-16T00:00+08:00", "2026-11-17T00:00+08:00", 54_300),
    # ------------------------------------------------------------------ overnight shifts
    # Tue 00:00-06:00 (Monday's night) + Tue 22:00-24:00 (Tuesday's night) = 6 + 2 = 8 h
    Case("overnight shift, one calendar day", NIGHT,
         "2026-11-16T00:00+00:00", "2026-11-17T00:00+00:00", 8 * H),
    # Tue 22:00 -> Wed 06:00 = 8 h
    Case("overnight shift, noon to noon", NIGHT,
         "2026-11-17T12:00+00:00", "2026-11-18T12:00+00:00", 8 * H),
    # Mon 22:00 -> Tue 02:00 = 4 h
    Case("overnight shift, window across midnight", NIGHT,
         "2026-11-16T20:00+00:00", "2026-11-17T02:00+00:00", 4 * H),
    # local Mon 22:00 -> Tue 06:00 (+08:00) = Mon 14:00Z -> 22:00Z = 8 h; Sunday's night ends
    # Mon 06:00 local = Sun 22:00Z, before the window
    Case("overnight shift in UTC+8, window in UTC", {"timezone": "Asia/Shanghai", **NIGHT},
         "2026-11-16T00:00+00:00", "2026-11-17T00:00+00:00", 8 * H),
    # Mon 06:00 -> Tue 06:00 (end == start: 24 h); the window holds Tue 00:00-06:00 = 6 h
    Case("24-hour shift from 06:00, monday only", {"shifts": [shift("06:00", "06:00", ["mon"])]},
         "2026-11-17T00:00+00:00", "2026-11-18T00:00+00:00", 6 * H),
    # ------------------------------------------------------------------ planned stops across midnight
    # 22:00-06:00 (8 h) minus 23:30-00:30 (1 h) = 7 h
    Case("stop across midnight, whole night", NIGHT_STOP,
         "2026-11-17T12:00+00:00", "2026-11-18T12:00+00:00", 7 * H),
    # 22:00-24:00 minus 23:30-24:00 = 1.5 h
    Case("stop across midnight, evening part", NIGHT_STOP,
         "2026-11-17T12:00+00:00", "2026-11-18T00:00+00:00", 1.5 * H),
    # 00:00-06:00 minus Tuesday's stop tail 00:00-00:30 = 5.5 h
    Case("stop across midnight, morning part", NIGHT_STOP,
         "2026-11-18T00:00+00:00", "2026-11-18T12:00+00:00", 5.5 * H),
    # all day (24 h) minus Monday's 23:00-01:00 stop's tail Tue 00:00-01:00 = 23 h
    Case("monday stop spills into tuesday", {"planned_stops": [shift("23:00", "01:00", ["mon"])]},
         "2026-11-17T00:00+00:00", "2026-11-18T00:00+00:00", 23 * H),
    # ------------------------------------------------------------------ days: filters
    # Mon-Fri x 8 h = 40 h
    Case("day shift mon-fri, one week", {"shifts": [shift("08:00", "16:00", MON_FRI)]},
         "2026-11-16T00:00+00:00", "2026-11-23T00:00+00:00", 40 * H),
    # nights starting Mon..Fri x 8 h = 40 h; Sunday nights (15th->16th, 22nd->23rd) not listed
    Case("night shift mon-fri, one week", {"shifts": [shift("22:00", "06:00", MON_FRI)]},
         "2026-11-16T00:00+00:00", "2026-11-23T00:00+00:00", 40 * H),
    # Saturday holds only the tail of Friday's night: 00:00-06:00 = 6 h
    Case("night shift mon-fri, saturday", {"shifts": [shift("22:00", "06:00", MON_FRI)]},
         "2026-11-21T00:00+00:00", "2026-11-22T00:00+00:00", 6 * H),
    # Mon-Sat x 8 h = 48 h, minus the Saturday-only stop 12:00-13:00 = 47 h
    Case("stop on saturdays only", {"shifts": [shift("06:00", "14:00", MON_SAT)],
                                    "planned_stops": [shift("12:00", "13:00", ["sat"])]},
         "2026-11-16T00:00+00:00", "2026-11-23T00:00+00:00", 47 * H),
    # ------------------------------------------------------------------ holidays
    # Mon-Fri with Wednesday off: 4 x 8 h = 32 h
    Case("holiday removes a day shift", {**UTC_DAY, "holidays": ["2026-11-18"]},
         "2026-11-16T00:00+00:00", "2026-11-21T00:00+00:00", 32 * H),
    # Tuesday's night keeps Tue 22:00-24:00 = 2 h; Wed 00:00-06:00 is the holiday
    Case("holiday cuts the night before it at midnight", {**NIGHT, "holidays": ["2026-11-18"]},
         "2026-11-17T12:00+00:00", "2026-11-18T12:00+00:00", 2 * H),
    # Wednesday's night loses Wed 22:00-24:00, keeps Thu 00:00-06:00 = 6 h
    Case("holiday's own night keeps its part on the next day", {**NIGHT, "holidays": ["2026-11-18"]},
         "2026-11-18T12:00+00:00", "2026-11-19T12:00+00:00", 6 * H),
    # ------------------------------------------------------------------ DST, Europe/Berlin
    # Sat 22:00 CET (21:00Z) -> Sun 06:00 CEST (04:00Z) = 7 h
    Case("night shift, clocks go forward", BERLIN_NIGHT,
         "2026-03-28T12:00+01:00", "2026-03-29T12:00+02:00", 7 * H),
    # Sat 22:00 CEST (20:00Z) -> Sun 06:00 CET (05:00Z) = 9 h
    Case("night shift, clocks go back", BERLIN_NIGHT,
         "2026-10-24T12:00+02:00", "2026-10-25T12:00+01:00", 9 * H),
    # 00:00 CET (23:00Z Sat) -> 24:00 CEST (22:00Z Sun) = 23 h
    Case("whole day, clocks go forward", BERLIN_ALL_DAY,
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 23 * H),
    # 00:00 CEST (22:00Z Sat) -> 24:00 CET (23:00Z Sun) = 25 h
    Case("whole day, clocks go back", BERLIN_ALL_DAY,
         "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 25 * H),
    # 06:00 CEST -> 14:00 CEST, both after the jump = 8 h
    Case("day shift on the 23-hour day", {"timezone": "Europe/Berlin", **UTC_DAY},
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 8 * H),
    # the skipped hour 02:00-03:00 never happens: the stop removes 0 s, 23 h remain
    Case("stop in the skipped hour", {**BERLIN_ALL_DAY, "planned_stops": [shift("02:00", "03:00")]},
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 23 * H),
    # 02:00 CEST (00:00Z) until the clock reads 03:00, i.e. 03:00 CET (02:00Z): the repeated
    # hour is lived twice, so the stop lasts 2 h; 25 h - 2 h = 23 h
    Case("stop in the repeated hour", {**BERLIN_ALL_DAY, "planned_stops": [shift("02:00", "03:00")]},
         "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 23 * H),
    # 22:00 CEST (20:00Z) until the clock first reads 02:30, i.e. 02:30 CEST (00:30Z) = 4.5 h
    Case("shift ending in the repeated hour", {"timezone": "Europe/Berlin",
                                               "shifts": [shift("22:00", "02:30")]},
         "2026-10-24T12:00+02:00", "2026-10-25T12:00+01:00", 4.5 * H),
    # Saturday 24 h + the holiday Sunday (23 h long) 0 h = 24 h
    Case("holiday on the 23-hour day", {**BERLIN_ALL_DAY, "holidays": ["2026-03-29"]},
         "2026-03-28T00:00+01:00", "2026-03-30T00:00+02:00", 24 * H),
    # America/Santiago skips midnight on Sun 2026-09-06 (00:00 -04 = 04:00Z -> 01:00 -03):
    # Saturday 24 h + the holiday Sunday 0 h = 24 h
    Case("holiday on a day whose midnight is skipped", {"timezone": "America/Santiago",
                                                        "holidays": ["2026-09-06"]},
         "2026-09-05T00:00-04:00", "2026-09-07T00:00-03:00", 24 * H),
    # the same Sunday without the holiday: 01:00 -03 (04:00Z) -> Mon 00:00 -03 (03:00Z) = 23 h
    Case("day whose midnight is skipped", {"timezone": "America/Santiago"},
         "2026-09-06T01:00-03:00", "2026-09-07T00:00-03:00", 23 * H),
    # 02:30 is skipped: the clock reaches it at the jump, 02:00 CET = 03:00 CEST (01:00Z);
    # until 10:00 CEST (08:00Z) = 7 h
    Case("shift starting in the skipped hour", {"timezone": "Europe/Berlin",
                                                "shifts": [shift("02:30", "10:00")]},
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 7 * H),
    # 22:00 CET (21:00Z) until the clock reaches 02:30, i.e. the jump at 01:00Z = 4 h
    Case("shift ending in the skipped hour", {"timezone": "Europe/Berlin",
                                              "shifts": [shift("22:00", "02:30")]},
         "2026-03-28T12:00+01:00", "2026-03-29T12:00+02:00", 4 * H),
    # the stop 01:30 CET (00:30Z) until 02:30 is reached at the jump (01:00Z) = 0.5 h;
    # 23 h - 0.5 h = 22.5 h
    Case("stop ending in the skipped hour", {**BERLIN_ALL_DAY, "planned_stops": [shift("01:30", "02:30")]},
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 22.5 * H),
    # a stop wholly in the skipped hour, 02:15-02:45: both ends are the jump, it lasts 0 s
    Case("stop wholly in the skipped hour", {**BERLIN_ALL_DAY, "planned_stops": [shift("02:15", "02:45")]},
         "2026-03-29T00:00+01:00", "2026-03-30T00:00+02:00", 23 * H),
    # ------------------------------------------------------------------ DST, the repeated hour
    # 02:30 is read twice; the first reading is 02:30 CEST (00:30Z); until 10:00 CET (09:00Z)
    # = 8.5 h
    Case("shift starting in the repeated hour", {"timezone": "Europe/Berlin",
                                                 "shifts": [shift("02:30", "10:00")]},
         "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 8.5 * H),
    # 02:15 CEST (00:15Z) until the clock first reads 02:45 = 02:45 CEST (00:45Z) = 0.5 h,
    # not 1.5 h (the second 02:45 is not the first reading); 25 h - 0.5 h = 24.5 h
    Case("stop wholly in the repeated hour", {**BERLIN_ALL_DAY, "planned_stops": [shift("02:15", "02:45")]},
         "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", 24.5 * H),
    # window = the second pass of the repeated hour, 02:00-03:00 CET (01:00Z-02:00Z), all day
    # planned = 1 h
    Case("window in the second pass of the repeated hour", BERLIN_ALL_DAY,
         "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00", 1 * H),
    # Saturday 24 h + the holiday Sunday (25 h long) 0 h + Monday 0-1 h = 25 h
    Case("holiday on the 25-hour day", {**BERLIN_ALL_DAY, "holidays": ["2026-10-25"]},
         "2026-10-24T00:00+02:00", "2026-10-26T01:00+01:00", 25 * H),
]


def ns(iso: str) -> int:
    return datetime_ns(datetime.fromisoformat(iso).astimezone(UTC))


def params() -> list[Any]:
    out = []
    for case in CASES:
        for impl in IMPLEMENTATIONS:
            marks = list(case.marks)
            if impl == "kpi" and case.kpi_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=case.kpi_wrong))
            out.append(pytest.param(case, impl, id=f"{impl}: {case.id}", marks=marks))
    return out


@pytest.mark.parametrize(("case", "impl"), params())
def test_planned_seconds(case: Case, impl: str) -> None:
    cal = Calendar.model_validate(case.calendar)
    s, e = ns(case.start), ns(case.end)
    starts, ends = IMPLEMENTATIONS[impl](cal, s, e)
    # sorted, disjoint, non-empty intervals inside the window
    assert starts.dtype == ends.dtype == np.int64
    assert np.all(ends > starts)
    assert np.all(starts[1:] > ends[:-1])
    assert starts.size == 0 or (starts[0] >= s and ends[-1] <= e)
    assert int(np.sum(ends - starts)) == round(case.seconds * 1e9)


def test_every_row_has_its_own_name() -> None:
    assert len({c.id for c in CASES}) == len(CASES)


TRANSITIONS = [  # (zone, a local day on which its clocks change)
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("America/Santiago", "2026-09-06"), ("America/Santiago", "2026-04-05"),
    ("Australia/Lord_Howe", "2026-10-04"),  # a 30-minute change
]


@pytest.mark.parametrize("seed", range(100))
def test_both_calendars_agree_around_clock_changes(seed: int) -> None:
    """Random shifts, stops and holidays, with times on the quarter hour (so that many fall
    in a skipped or repeated stretch), over two days around a clock change: the product's
    calendar and the simulators' independent one give the same intervals."""
    rng = np.random.default_rng(seed)
    zone, day = TRANSITIONS[seed % len(TRANSITIONS)]

    def hhmm() -> str:
        # half of them between 23:00 and 03:45, where these zones skip or repeat time
        q = int(rng.integers(0, 96)) if rng.random() < 0.5 else int(rng.integers(-4, 16)) % 96
        return f"{q // 4:02d}:{q % 4 * 15:02d}"

    cal = Calendar.model_validate({
        "timezone": zone,
        "shifts": [shift(hhmm(), hhmm()) for _ in range(int(rng.integers(1, 3)))],
        "planned_stops": [shift(hhmm(), hhmm()) for _ in range(int(rng.integers(0, 3)))],
        "holidays": [day] if rng.random() < 0.2 else [],
    })
    mid = ns(f"{day}T12:00+00:00")
    s, e = mid - 36 * H * 10**9, mid + 36 * H * 10**9
    ks, ke = IMPLEMENTATIONS["kpi"](cal, s, e)
    ss, se = IMPLEMENTATIONS["simulators"](cal, s, e)
    assert ks.tolist() == ss.tolist() and ke.tolist() == se.tolist(), cal
