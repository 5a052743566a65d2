"""Plant time in the API: the zone of bare dates and times, ``tz=``, and shifts by name and date.

- **Inputs.** A date or time without an offset in ``from``/``to``/``baseline_from``/
  ``baseline_to`` (and in ``kpi.current``/``kpi.baseline``) is a wall-clock time of the
  plant, ``calendar.timezone``; ``tz=`` (an IANA name) chooses another zone for a request's
  own parameters (the configured windows keep the plant's). A bare date is the start of that
  local day; a time the clocks skip is a 400 naming the parameter; a time read twice is the
  earlier instant (``config.times.local_time``).
- **Answers.** Every time in an answer is ISO 8601 with its offset: UTC with ``Z`` by default;
  with ``tz=`` that zone's wall time with a numeric offset (``+08:00``), the same instants.
  KPI bodies are computed once and shared by every request of the same resolved windows
  (``api.flight``), whatever their ``tz``: they are rendered in UTC and converted here, at
  response time (:func:`render_times`).
- **Shifts.** ``shift=early&date=2026-12-05`` is the window of the calendar's shift ``early``
  on that local date (ending the next day for a shift that crosses midnight), instead of
  ``from``/``to``; ``date`` alone is the whole local day.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated

from fastapi import Depends, Query, Response
from fastapi.exceptions import RequestValidationError

from config.errors import KpiError, NotFoundError
from config.settings import Settings
from config.times import ALL_DAYS, first_instant, zone

from .deps import SettingsDep
from .problems import BadParameter, echo

__all__ = [
    "TZ_DESCRIPTION",
    "DateQuery",
    "ShiftQuery",
    "Zones",
    "ZonesDep",
    "last_worked",
    "render_times",
    "respond",
    "shift_window",
]

TZ_DESCRIPTION = (
    "IANA time zone (e.g. Europe/Berlin) for this request: dates and times without an offset "
    "in its parameters are read in it, and every time in the answer is written in it with its "
    "numeric offset. Default: parameters in the plant's zone (calendar.timezone), answers in "
    "UTC (Z)"
)


@dataclass(frozen=True, slots=True)
class Zones:
    """The zones of one request: ``inputs`` reads its parameters' bare dates and times,
    ``plant`` the configured windows' (calendar.timezone), ``output`` writes the answer's
    times (None: UTC with ``Z``)."""

    inputs: tzinfo
    plant: tzinfo
    output: tzinfo | None


async def request_zones(
    settings: SettingsDep,
    tz: Annotated[str | None, Query(
        description=TZ_DESCRIPTION, examples=["Europe/Berlin"],
        openapi_examples={"plant": {"summary": "the plant's zone", "value": "Asia/Shanghai"},
                          "utc": {"summary": "UTC with a numeric offset", "value": "UTC"}},
        max_length=64)] = None,
) -> Zones:
    """The request's zones from ``tz`` (validated: an unknown name is a 422 naming ``tz``); a
    coroutine that never waits, run inline (``api.deps``)."""
    plant = settings.calendar.zone
    if tz is None:
        return Zones(plant, plant, None)
    try:
        chosen = zone(tz)
    except ValueError as exc:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "tz"), "input": tz,
            "msg": f"{echo(tz, 64)} is not an IANA time zone (e.g. 'Asia/Shanghai', "
                   "'Europe/Berlin', 'UTC')"}]) from exc
    return Zones(chosen, plant, chosen)


ZonesDep = Annotated[Zones, Depends(request_zones)]

#: a time as ``config.times.iso`` writes it, as a whole JSON string: "2026-12-05T06:00:00Z"
_ISO_Z = re.compile(rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)Z"')


def render_times(body: bytes, tz: tzinfo | None) -> bytes:
    """A JSON body rendered with UTC times (``config.times.iso``: whole strings ending ``Z``)
    with every such time written in ``tz`` with its numeric offset instead: the same instant,
    the same precision. None: the body as it is. Times inside longer texts (a problem's
    detail, a note) are left as written."""
    if tz is None:
        return body
    # offsets are whole minutes (since 1972 in every zone): the local time of a UTC time is
    # the local minute of its UTC minute + its seconds unchanged, so each distinct minute of
    # the body is converted once and every time is a concatenation; an offset with seconds
    # (Africa/Monrovia before 1972) is converted whole
    minutes: dict[bytes, tuple[bytes, bytes] | None] = {}

    def one(m: re.Match[bytes]) -> bytes:
        text = m.group(1)
        key = text[:16]  # YYYY-MM-DDTHH:MM
        if key not in minutes:
            local = datetime.fromisoformat(key.decode()).replace(tzinfo=UTC).astimezone(tz)
            off = local.utcoffset() or timedelta(0)
            minutes[key] = None if off.seconds % 60 else (
                local.strftime("%Y-%m-%dT%H:%M").encode(), local.isoformat()[-6:].encode())
        got = minutes[key]
        if got is None:
            utc = datetime.fromisoformat(text.decode()).replace(tzinfo=UTC)
            spec = "microseconds" if b"." in text else "seconds"
            return b'"' + utc.astimezone(tz).isoformat(timespec=spec).encode() + b'"'
        return b'"' + got[0] + text[16:] + got[1] + b'"'

    return _ISO_Z.sub(one, body)


SHIFT_DESCRIPTION = ("name of a shift of the calendar (calendar.shifts[].name, e.g. early): with "
                     "`date`, the window of that shift on that local date, instead of from/to")
DATE_DESCRIPTION = ("local date (YYYY-MM-DD): with `shift`, the window of that shift starting "
                    "on that date of the plant's calendar (a shift crossing midnight ends the "
                    "next day); alone, the whole local day in the request's zone (`tz`, else "
                    "the plant's)")

ShiftQuery = Annotated[str | None, Query(
    description=SHIFT_DESCRIPTION, examples=["early"], max_length=200)]
DateQuery = Annotated[str | None, Query(
    description=DATE_DESCRIPTION, examples=["2026-12-05"], max_length=32)]


#: dates whose local days (and shifts) may not lie inside 1970-01-01..2262-04-11 in some zone
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(2262, 4, 11)


def shift_window(settings: Settings, zones: Zones, shift: str | None, day: str | None,
                 from_: str | None, to: str | None) -> tuple[datetime, datetime] | None:
    """The window that ``shift``/``date`` name, or None when neither is given. With ``from`` or
    ``to``, ``shift`` without ``date``, or a date that is not one: a KpiError (422) naming
    the parameters; a date near or outside the range of stored times: a BadParameter (400);
    an unknown shift, or one that is not worked on that weekday: a
    NotFoundError (404) listing the calendar's shifts."""
    if shift is None and day is None:
        return None
    given = [n for n, v in (("from", from_), ("to", to)) if v is not None]
    if given:
        raise KpiError(f"parameters 'shift'/'date' and {' and '.join(map(repr, given))} both "
                       "give the window: use one or the other")
    if day is None:
        raise KpiError(f"parameter 'shift' ({echo(shift)}) needs 'date': the local date the "
                       "shift starts on, e.g. date=2026-12-05")
    try:
        d = date.fromisoformat(day.strip())
    except ValueError as exc:
        raise KpiError(f"parameter 'date': {echo(day)} is not a date (YYYY-MM-DD)") from exc
    if not _FIRST_DAY < d < _LAST_DAY:  # its window must lie in the range of stored times
        raise BadParameter("date", f"{d.isoformat()} is outside 1970-01-02..2262-04-10, the "
                                   "range of stored times")
    if shift is None:  # the whole local day
        tz = zones.inputs
        return (first_instant(d, time(0), tz), first_instant(d + timedelta(days=1), time(0), tz))
    cal = settings.calendar
    named = [r.name for r in cal.shifts if r.name]
    try:
        r = cal.shift(shift)
    except KeyError:
        raise NotFoundError(
            f"parameter 'shift': no shift {echo(shift)} in the calendar; its shifts: "
            f"{', '.join(map(repr, named)) or 'none has a name'}") from None
    weekday = ALL_DAYS[d.weekday()]
    if weekday not in r.days:
        raise NotFoundError(
            f"parameter 'date': shift {r.name!r} is not worked on {d.isoformat()} ({weekday}); "
            f"it runs on {', '.join(r.days)}")
    end_day = d if r.end > r.start else d + timedelta(days=1)  # crosses midnight: ends next day
    # a shift is the plant's, whatever tz= says: its times and date are the calendar's zone's,
    # read by the calendar's rule (kpi.calendar): the first instant the clock reads them
    plant = zones.plant
    return first_instant(d, r.start, plant), first_instant(end_day, r.end, plant)


async def respond(body: bytes, zones: Zones) -> Response:
    """A KPI route's shared JSON body as this request's answer: its times in ``tz=`` when
    given (converted in a worker thread: an assessment's body can be large), else as cached."""
    if zones.output is not None:
        body = await asyncio.to_thread(render_times, body, zones.output)
    return Response(body, media_type="application/json")


def last_worked(settings: Settings, now: datetime) -> tuple[str, date] | None:
    """The calendar's first named shift and the last local date before today (plant time) on
    which it is worked: the demo's example of ``shift=&date=`` (yesterday's shift)."""
    cal = settings.calendar
    first = next((r for r in cal.shifts if r.name), None)
    if first is None:
        return None
    d = now.astimezone(cal.zone).date()
    for _ in range(7):
        d -= timedelta(days=1)
        if ALL_DAYS[d.weekday()] in first.days:
            return first.name, d
    return None
