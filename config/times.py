"""Time: instants, windows and the plant calendar -- the one home of every time conversion.

Instants are int64 nanoseconds since the Unix epoch.

An instant a store can hold lies in ``[0, NS_MAX]`` (1970-01-01 to 2262-04-11). A protocol
timestamp outside that range -- OPC UA's null date (1601-01-01), anything before 1970, or
after 2262 -- is *unknown*, never an error: the caller keeps the next timestamp of its
documented fallback order. Column-wise callers use :func:`valid_ns` as a mask.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from .base import Model

__all__ = [
    "EPOCH", "NS_MAX", "Calendar", "DailyRange", "Instant", "Weekday", "Window", "datetime_ns",
    "epoch_ns", "iso", "parse_instant", "to_ns", "valid_ns",
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


def iso(ns: int | None, timespec: str = "auto") -> str | None:
    """An instant as ISO 8601 UTC with a ``Z`` (None for None), exact to the microsecond
    (truncated, never rounded into the next second); ``timespec`` as for ``isoformat``."""
    if ns is None:
        return None
    dt = EPOCH + timedelta(microseconds=ns // 1000)
    return dt.isoformat(timespec=timespec).replace("+00:00", "Z")


def valid_ns(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Mask of the instants that are known (not negative; int64 cannot exceed NS_MAX)."""
    return ns >= 0


# --------------------------------------------------------------------------- windows and calendar

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhdw]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_instant(text: str | datetime, now: datetime | None = None) -> datetime:
    """Parse ``now``, ``now-7d``, ``now+2h`` or an ISO 8601 timestamp (naive = UTC)."""
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
        try:
            dt = datetime.fromisoformat(text.strip())
        except ValueError as exc:
            raise ValueError(
                f"{text!r} is neither an ISO 8601 time nor 'now', 'now-7d', 'now-12h'"
            ) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


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

    def resolve(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        now = now or datetime.now(UTC)
        start, end = parse_instant(self.start, now), parse_instant(self.end, now)
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
