"""Time: instants, windows and the plant calendar -- the one home of every time conversion.

Instants are int64 nanoseconds since the Unix epoch.

An instant a store can hold lies in ``[0, NS_MAX]`` (1970-01-01 to 2262-04-11). A protocol
timestamp outside that range -- OPC UA's null date (1601-01-01), anything before 1970, or
after 2262 -- is *unknown*, never an error: the caller keeps the next timestamp of its
documented fallback order. Column-wise callers use :func:`valid_ns` as a mask.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from .base import Model

__all__ = [
    "EPOCH", "NS_MAX", "Calendar", "DailyRange", "Instant", "NonexistentTime", "Weekday", "Window",
    "datetime_ns", "epoch_ns", "first_instant", "iso", "local_time", "parse_instant", "to_ns",
    "valid_ns", "zone",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: the last instant int64 nanoseconds can hold (2262-04-11T23:47:16.854775807Z)
NS_MAX: Final = int(np.iinfo(np.int64).max)


def epoch_ns(dt: datetime) -> int:
    """``dt`` in ns since the epoch, exactly (integer arithmetic, no float rounding), whatever
    its range; a naive ``dt`` is UTC (as asyncua decodes UA DateTime). The one conversion the
    two below apply a policy to."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def datetime_ns(dt: datetime) -> int | None:
    """A protocol's timestamp in ns, or None (*unknown*) when it lies outside ``[0, NS_MAX]``."""
    try:
        ns = epoch_ns(dt)
    except OverflowError:  # an aware datetime whose UTC value leaves datetime's range
        return None
    return ns if 0 <= ns <= NS_MAX else None


def to_ns(dt: datetime) -> int:
    """An instant a user or a config gives (a window's ends) in ns; ValueError outside
    ``[1970-01-01, 2262-04-11]``, where a protocol's timestamp would be unknown instead."""
    ns = datetime_ns(dt)
    if ns is None:
        raise ValueError(f"{dt.isoformat()} is outside 1970-01-01..2262-04-11, the range of stored times")
    return ns


def iso(ns: int | None, timespec: str = "auto", tz: tzinfo | None = None) -> str | None:
    """An instant as ISO 8601 (None for None), exact to the microsecond (truncated, never
    rounded into the next second); ``timespec`` as for ``isoformat``. Without ``tz``: UTC with
    a ``Z``; with ``tz`` (a ``tz=`` of the API): that zone's wall time with its numeric offset
    (``+08:00``, ``+00:00``), the same instant."""
    if ns is None:
        return None
    dt = EPOCH + timedelta(microseconds=ns // 1000)
    if tz is not None:
        return dt.astimezone(tz).isoformat(timespec=timespec)
    return dt.isoformat(timespec=timespec).replace("+00:00", "Z")


def valid_ns(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Mask of the instants that are known (not negative; int64 cannot exceed NS_MAX)."""
    return ns >= 0


# --------------------------------------------------------------------------- local (plant) time


#: what an IANA zone name looks like (Asia/Shanghai, America/Argentina/Buenos_Aires, Etc/GMT+8)
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}$")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``Europe/Berlin``, ``UTC``); ValueError
    naming it when there is none such. Only names shaped like zone names are looked up (never
    a path, a folder such as ``America`` or a long name: ``ZoneInfo`` raises OSErrors there)."""
    try:
        if len(name) <= 64 and _ZONE_NAME.match(name):
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise ValueError(f"unknown time zone {name[:64]!r} (an IANA name such as 'Asia/Shanghai', "
                     "'Europe/Berlin' or 'UTC')")


class NonexistentTime(ValueError):
    """A local time that the clocks skip (the hour they go forward): no instant reads it."""


_NS_PER_S: Final = 1_000_000_000


def first_instant(day: date, at: time, tz: tzinfo) -> datetime:
    """The first instant at which the wall clock in ``tz`` reads ``day at``: in the hour the
    clocks go back (read twice) the earlier reading; in the hour they skip when they go
    forward, the instant of the jump (a shift that starts at a skipped 02:30 starts when the
    clock jumps from 02:00 to 03:00). The calendar's rule (``kpi.calendar``) and a bare
    date's start of day (a day whose midnight is skipped starts at the jump)."""
    early = datetime.combine(day, at, tz)  # fold=0: the earlier reading when read twice
    late = early.replace(fold=1)
    off0, off1 = early.utcoffset(), late.utcoffset()
    assert off0 is not None and off1 is not None
    if off0 >= off1:  # an ordinary time, or one read twice (fold=0 is the first reading)
        return early
    # skipped: fold=0 reads it with the offset before the jump (too late), fold=1 with the one
    # after (too early); the jump lies between. Find the first whole second of the new offset
    # (tz transitions fall on whole seconds).
    lo, hi = epoch_ns(late) // _NS_PER_S, epoch_ns(early) // _NS_PER_S
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == off1:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, tz)


def local_time(naive: datetime, tz: tzinfo) -> datetime:
    """A wall-clock time without offset read in ``tz``: an aware datetime. Read twice (the
    hour the clocks go back): the **earlier** instant (the first reading, as the calendar
    counts it). Skipped (the hour the clocks go forward): :class:`NonexistentTime`, naming
    the gap, since no instant reads it and a guess would move the window by an hour."""
    early = naive.replace(tzinfo=tz, fold=0)
    late = early.replace(fold=1)
    off0, off1 = early.utcoffset(), late.utcoffset()
    assert off0 is not None and off1 is not None
    if off0 >= off1:
        return early
    jump = first_instant(naive.date(), naive.time(), tz)  # the clocks' jump (an aware time)
    skipped_from = (jump.astimezone(UTC) + off0).replace(tzinfo=None)
    raise NonexistentTime(
        f"{naive.isoformat()} does not exist in {tz}: its clocks jump from "
        f"{skipped_from.time().isoformat()} to {jump.time().isoformat()} on "
        f"{jump.date().isoformat()} (at {jump.isoformat()}); give an offset or a time outside "
        "the skipped hour")


# --------------------------------------------------------------------------- windows and calendar

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_instant(text: str | datetime, now: datetime | None = None,
                  tz: tzinfo | None = None) -> datetime:
    """Parse ``now``, ``now-7d``, ``now+2h`` or an ISO 8601 timestamp. A time without an
    offset is a wall-clock time in ``tz`` (the plant's zone; UTC when None, see
    :func:`local_time` for the hours the clocks skip or read twice); a bare date is the start
    of that local day (:func:`first_instant`)."""
    zone_ = tz if tz is not None else UTC
    if isinstance(text, datetime):
        dt = text
    else:
        m = _RELATIVE.match(text.strip())
        if m:
            base = now or datetime.now(UTC)
            if m.group(1) is None:
                return base
            delta = timedelta(seconds=float(m.group(2)) * _UNIT_S[m.group(3)])
            return base - delta if m.group(1) == "-" else base + delta
        stripped = text.strip()
        try:
            day = date.fromisoformat(stripped)
        except ValueError:
            pass
        else:
            return first_instant(day, time(0), zone_)
        try:
            dt = datetime.fromisoformat(stripped)
        except ValueError as exc:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time nor 'now', 'now-7d', 'now-12h'"
            ) from exc
    return dt if dt.tzinfo else local_time(dt, zone_)


Instant = Annotated[str, Field(description="ISO 8601 time, or now / now-7d / now-12h")]


class Window(Model):
    """A time window [start, end)."""

    start: Instant
    end: Instant = "now"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parseable(cls, v: object) -> str:
        if isinstance(v, datetime):
            v = v.isoformat()
        if not isinstance(v, str):
            raise ValueError("must be a string time")
        parse_instant(v)
        return v

    def resolve(self, now: datetime | None = None, tz: tzinfo | None = None
                ) -> tuple[datetime, datetime]:
        """Both ends against ``now``; times without an offset in ``tz`` (the calendar's)."""
        now = now or datetime.now(UTC)
        start, end = parse_instant(self.start, now, tz), parse_instant(self.end, now, tz)
        if end <= start:
            raise ValueError(f"window end {end.isoformat()} is not after start {start.isoformat()}")
        return start, end


# --------------------------------------------------------------------------- calendar

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_ONE_DIGIT_HOUR = re.compile(r"^\d:\d\d(?::\d\d)?$")


class DailyRange(Model):
    """A daily time range in the calendar's time zone; end <= start crosses midnight."""

    name: str = ""
    start: time
    end: time
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _not_a_number(cls, v: object) -> object:
        # pydantic reads a number as seconds since midnight: 1200 (what a YAML 1.1 parser makes
        # of an unquoted 20:00) would silently become 00:20
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError(f"{v!r} is a number, not a local time: write it as 'HH:MM'")
        if isinstance(v, str) and _ONE_DIGIT_HOUR.match(v):
            return "0" + v  # 6:00 as 06:00
        return v


class Calendar(Model):
    """Shift calendar: planned busy time = shifts minus planned stops minus holidays."""

    timezone: str = "UTC"
    shifts: list[DailyRange] = Field(
        default_factory=lambda: [DailyRange(name="all day", start=time(0), end=time(0))]
    )
    planned_stops: list[DailyRange] = Field(default_factory=list)
    holidays: list[str] = Field(default_factory=list, description="ISO dates, whole day off")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("shifts")
    @classmethod
    def _unique_names(cls, v: list[DailyRange]) -> list[DailyRange]:
        # a shift is addressed by its name (the API's shift=early&date=...): one shift per name
        seen: dict[str, int] = {}
        for i, r in enumerate(v):
            name = r.name.strip()
            if name and name in seen:
                raise ValueError(f"shifts[{i}].name {name!r} is already the name of "
                                 f"shifts[{seen[name]}]: shift names must be unique")
            seen.setdefault(name, i)
        return v

    @property
    def zone(self) -> ZoneInfo:
        """The plant's time zone: bare dates and times of the API and of ``kpi`` windows are
        wall-clock times in it."""
        return ZoneInfo(self.timezone)

    def shift(self, name: str) -> DailyRange:
        """The shift named ``name``; KeyError when the calendar has none such."""
        for r in self.shifts:
            if r.name == name:
                return r
        raise KeyError(name)
