"""Rates outside ISO 22400: CNC rate of key equipment, networking rate, labour hours of a window,
and the units an energy or carbon figure is compared in.

Pure: plain records in, plain records out; the caller reads the store.

**Reporting.** An asset *reports* on a planned day (a local calendar day, clipped to the
window, with planned busy time PBT > 0) when its data cover at least ``coverage_min`` of that
day's PBT:

- an asset with a state and a mode tag (its KPIs are measured): the PBT during which its state
  and mode are known (``known_s``, the same coverage as its KPIs) ≥ ``coverage_min`` × PBT;
- any other asset: it has a tag the KPIs read (channel mode, a counter, an energy meter), at
  least one good-quality sample of those tags lies in the day, and the PBT outside its
  recorded collector gaps ≥ ``coverage_min`` × PBT.

An asset with no stored tag never reports. A day without PBT is no planned day: it counts
neither for nor against any asset.

**Rates over asset-days.** Per planned day d, with R(d) the assets reporting on d:

- CNC rate of key equipment, telemetry-verified: numerator |key ∩ digital ∩ R(d)|,
  denominator |key| (digital: ``control`` cnc, plc or dcs);
- networking rate: numerator |R(d)|, denominator |register| (every asset should report).

The window's rate is Σ numerators / Σ denominators over its days (asset-days), so the day-block
bootstrap of ``kpi.deltas`` gives it an interval. The *declared* CNC rate is |key ∩ digital| /
|key| from the register alone.

**Labour hours of a window.** Labour hours are declared per calendar month (``YYYY-MM``). A
month's hours are apportioned to the window by the share of that month's planned busy time
(the calendar's, in the plant's time zone) that falls inside the window; a month whose share
is 0 is not needed. A needed month without a declared figure is named as missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from config.times import Calendar
from config.times import epoch_ns as _ns

from .calendar import I64, merge, overlap_seconds, planned_intervals

__all__ = [
    "DIGITAL_CONTROLS",
    "AssetDay",
    "LabourHours",
    "RegisterRate",
    "RegisteredAsset",
    "asset_day_rates",
    "cnc_rate_declared",
    "labour_hours_in_window",
    "pbt_inside",
    "reports",
    "same_unit",
]

#: the controls that count as digital for the CNC rate
DIGITAL_CONTROLS: Final = frozenset({"cnc", "plc", "dcs"})


@dataclass(frozen=True, slots=True)
class RegisteredAsset:
    """One asset of the register, as the rates see it."""

    path: str
    key_equipment: bool
    control: str  # cnc, plc, dcs, manual, none

    @property
    def digital(self) -> bool:
        return self.control in DIGITAL_CONTROLS


@dataclass(frozen=True, slots=True)
class RegisterRate:
    """A rate counted from the register: numerator / denominator (None when the denominator is 0)."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}


def cnc_rate_declared(register: Sequence[RegisteredAsset]) -> RegisterRate:
    """Key equipment with digital control / all key equipment, from the register alone."""
    key = [a for a in register if a.key_equipment]
    return RegisterRate(sum(a.digital for a in key), len(key))


@dataclass(frozen=True, slots=True)
class AssetDay:
    """What one asset's data show on one day (seconds inside the day's planned busy time)."""

    pbt_s: float  # planned busy time of the day
    known_s: float = 0.0  # PBT whose state and mode are known
    state_and_mode: bool = False  # the asset has a state and a mode tag
    tags: int = 0  # stored tags of roles the KPIs read
    good_samples: int = 0  # good-quality samples of those tags inside the day
    gap_s: float = 0.0  # PBT inside the asset's recorded collector gaps


def reports(d: AssetDay, coverage_min: float) -> bool:
    """Whether the asset reports on this day (definition in the module's docstring)."""
    if d.pbt_s <= 0 or d.tags == 0:
        return False
    need = coverage_min * d.pbt_s
    if d.state_and_mode:
        return d.known_s >= need
    return d.good_samples > 0 and d.pbt_s - d.gap_s >= need


def asset_day_rates(
    register: Sequence[RegisteredAsset],
    days: Sequence[Mapping[str, AssetDay]],
    coverage_min: float,
) -> dict[str, tuple[list[float], list[float]]]:
    """Per-day (numerators, denominators) of ``cnc_rate_key_equipment`` (telemetry-verified)
    and ``networking_rate``; ``days[i]`` maps asset path -> that asset's day (an asset absent
    from it has no data). A day is planned when its PBT (of any asset's entry, the plant's
    calendar) is > 0; other days get 0 / 0."""
    key = [a for a in register if a.key_equipment]
    out: dict[str, tuple[list[float], list[float]]] = {
        "cnc_rate_key_equipment": ([], []), "networking_rate": ([], [])}
    for day in days:
        planned = any(d.pbt_s > 0 for d in day.values())
        ok = {p for p, d in day.items() if reports(d, coverage_min)}
        cnc_n, cnc_d = out["cnc_rate_key_equipment"]
        net_n, net_d = out["networking_rate"]
        cnc_n.append(float(sum(a.digital and a.path in ok for a in key)))
        cnc_d.append(float(len(key)) if planned else 0.0)
        net_n.append(float(sum(a.path in ok for a in register)))
        net_d.append(float(len(register)) if planned else 0.0)
    return out


@dataclass(frozen=True, slots=True)
class LabourHours:
    """The labour hours apportioned to a window."""

    hours: float | None  # None when a needed month is missing or none is needed
    shares: dict[str, float]  # needed month -> share of its PBT inside the window
    missing: tuple[str, ...]  # needed months without a declared figure

    def as_dict(self) -> dict[str, Any]:
        return {"hours": self.hours, "month_shares": self.shares, "missing_months": list(self.missing)}


def _month_bounds(month: str, tz: ZoneInfo) -> tuple[int, int]:
    y, m = (int(x) for x in month.split("-"))
    first = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return _ns(datetime.combine(first, time(0), tz)), _ns(datetime.combine(nxt, time(0), tz))


def _pbt_s(cal: Calendar, start_ns: int, end_ns: int) -> float:
    s, e = planned_intervals(cal, start_ns, end_ns)
    return float(np.sum(e - s) / 1e9)


def labour_hours_in_window(
    cal: Calendar, start_ns: int, end_ns: int, months: Sequence[str], declared: Mapping[str, float],
) -> LabourHours:
    """Σ over ``months`` (the calendar months ``YYYY-MM`` the window touches) of the month's
    declared labour hours × (PBT of the month inside [start_ns, end_ns)) / (PBT of the month)."""
    tz = ZoneInfo(cal.timezone)
    shares: dict[str, float] = {}
    for month in months:
        lo, hi = _month_bounds(month, tz)
        whole = _pbt_s(cal, lo, hi)
        a, b = max(lo, start_ns), min(hi, end_ns)
        inside = _pbt_s(cal, a, b) if b > a else 0.0
        if whole > 0 and inside > 0:
            shares[month] = inside / whole
    missing = tuple(m for m in shares if m not in declared)
    hours = (sum(declared[m] * s for m, s in shares.items())
             if shares and not missing else None)
    return LabourHours(hours, shares, missing)


def _unit_key(unit: str) -> str:
    u = unit.lower().replace("₂", "2")
    u = re.sub(r"\bper\b", "/", u)
    u = re.sub(r"\b(hours?|hrs?)\b", "h", u)
    u = re.sub(r"\b(standard|std)\b\.?", "std", u)
    return re.sub(r"[\s_\-]", "", u)


def same_unit(a: str, b: str) -> bool:
    """Whether two unit spellings mean the same unit: case, spaces, ``per`` for ``/``, ``hour``
    for ``h`` and ``standard`` for ``std`` do not matter ("kWh per standard hour" is
    "kWh/std h")."""
    return _unit_key(a) == _unit_key(b)


def pbt_inside(planned: tuple[I64, I64], intervals: Sequence[tuple[int, int]]) -> float:
    """Seconds of the planned intervals that lie inside the union of ``intervals`` (e.g. the
    PBT an asset's collector gaps cover; overlapping gaps count once)."""
    if not intervals:
        return 0.0
    s, e = merge(list(intervals))
    return float(overlap_seconds(planned, s, e).sum())
