"""Tier assessment: the store's per-day figures of two windows, judged against the tier criteria.

Only reads and bookkeeping live here; every formula is in ``kpi/`` (``ratio_estimate``,
``ratio_delta``, ``judge``/``tier_readiness``, and ``kpi.rates`` for reporting, asset-day rates,
labour apportioning and units). The assessment:

1. resolves the current window (``from``/``to``, default ``kpi.current``) and the baseline
   window (``baseline_from``/``baseline_to``, default ``kpi.baseline``) against **one** ``now``;
2. splits each window into the plant's local calendar days (``calendar.timezone``), the first
   and last clipped to the window, and asks the KpiService for each day's per-asset elements
   and evidence (``KpiService.results``, the computation behind ``/api/v1/kpis``);
3. turns the days into per-day numerator and denominator arrays of the ratio figures below,
   and estimates each with a day-block bootstrap (``ratio_estimate`` for ``measure: value``,
   ``ratio_delta``, relative, for ``measure: delta``);
4. judges every tier with ``tier_readiness``.

The figures (``UNITS`` gives each one's unit) and exactly what they are computed from (sums
over the days, then divided):

- ``automation_rate`` = Σ ``apt_auto_s`` / Σ ``apt_mode_known_s`` of the plant total (as
  ``/api/v1/kpis``); its coverage is the lower of known PBT / PBT and ``apt_mode_known_s`` /
  ``apt_s`` (APT whose channel mode is unknown lowers it).
- ``defect_rate`` = Σ ``sq_plan`` / Σ ``pq_plan`` of the plant total (scrap and produced
  quantities attributed to known planned busy time; ``scrap_ratio`` of ``/api/v1/kpis``).
  Missing when some unit's produced or good quantity is not measured (``pq_known`` or
  ``gq_known`` < ``units``).
- ``production_efficiency`` = Σ PRU × ``gq_plan`` / Σ (``apt_s`` + ``asut_s`` + ``adet_s``),
  both in hours, over the assets that have a PRU (``ideal_cycle_time_s``) and a measured
  good quantity (the day roll-up's ``std_gq_s`` / ``std_busy_s``): standard hours of good
  output per worked hour (worked = production, setup and unit delays inside known PBT), a
  fraction. Assets without PRU are left out of
  numerator and denominator alike. The ``efficiency-gain`` criteria judge its delta.
- ``production_efficiency_labour`` = the same standard hours / the labour hours of the window
  (``declared.labour_hours``, unit h, one figure per calendar month): each month's hours are
  apportioned by the share of that month's planned busy time (the calendar's, plant time
  zone) inside the window (``kpi.rates.labour_hours_in_window``); a month with such a share
  and no figure is named as missing. A point value and a point delta (both windows need
  their months), **no interval**: labour hours are known per month, not per day, so days
  cannot be resampled with their own labour (the entry's ``note`` says so).
- ``energy_per_standard_hour_kwh`` = Σ ``energy_kwh`` / Σ PRU × ``gq`` (in hours) over the
  assets that have both an ``energy_kwh`` tag and a PRU (the roll-up's ``energy_std_kwh`` /
  ``energy_std_gq_s``): kWh per standard hour of good output,
  so that parts of different products are weighted by their standard time instead of being
  added. The ``energy`` criterion judges it; its reference (``industry_energy_per_unit_kwh``
  or ``declared.energy_benchmark``) must be declared in kWh/standard h (``kpi.rates.same_unit``
  decides what spells the same unit): a reference in another unit makes the criterion
  ``insufficient_data`` with both units named, never a comparison across units. The same
  check applies to every criterion with a reference whose figure is not a fraction.
- ``energy_per_unit_kwh`` = Σ ``energy_kwh`` / Σ ``gq`` over the assets with an ``energy_kwh``
  tag: the raw figure, parts of every product added together, kept for continuity and
  labelled so (``note``); no shipped criterion judges it.
- ``carbon_per_standard_hour_kg`` and ``carbon_per_unit_kg`` = the energy figure's numerator
  × ``declared.emission_factor`` (kg CO2/kWh; its supplier and source are carried in the
  entry's ``emission_factor`` and in the verdicts' ``supplied``) over the same denominator, so
  their intervals are the energy figures' scaled. Missing without a factor in kg CO2/kWh.
- ``cnc_rate_key_equipment`` (telemetry-verified) = Σ key-equipment asset-days of digital
  control (``control`` cnc, plc or dcs) on which the asset *reports* / Σ key-equipment
  asset-days over the planned days; ``networking_rate`` = Σ reporting asset-days / Σ asset-days
  of every asset in the register. An asset reports on a planned day when its data cover at
  least ``kpi.coverage_min`` of the day's PBT: with state and mode tags, its known PBT
  (``known_s``, its KPIs' coverage); otherwise PBT outside its recorded gaps, with at least
  one good sample of a KPI tag that day; an asset without stored tags never reports
  (``kpi/rates.py``). Missing data lower these figures rather than their coverage, so their
  coverage is 1 whenever the window has a planned day. The entry's ``declared`` holds the
  register's figure (key digital / key, with the config fingerprint), shown beside the
  verified one; criteria on ``cnc_rate_key_equipment_declared`` (a plant's own file) judge it.

Days whose denominator is 0 (Sundays, for the energy figures: idle energy without output)
keep their numerator in the window's value and are left out of the bootstrap; each figure
reports what they hold as ``numerator_on_zero_days``.

Coverage of every other figure is Σ ``known_s`` / Σ ``pbt_s`` of the window (of a delta: the
lower of its two windows). ``history_years`` is the time from the store's first sample (any
tag) to the current window's end, in years of 365.25 days, without an interval; its coverage
is known PBT / PBT over that same span (one KpiService call).

The answer (``assess``; ``GET /api/v1/tiers/assessment``; ``tierproof assess --format json``):
``window`` and ``baseline_window`` (``from``, ``to``); ``assets``, ``lines`` and ``total``, the
current window's KPIs under the names of ``GET /api/v1/kpis`` (each with its ``elements``;
the per-tag ``evidence`` is left to ``/api/v1/kpis`` of the same window); ``deltas``, per
figure the baseline→current delta with its interval, ``baseline_value``, ``current_value`` and
what is ``missing``; ``figures`` (per figure ``unit``, ``value`` with interval, ``delta``,
``coverage``, ``missing``, ``note``); ``tiers``; and the record: ``criteria_version``,
``algorithm_version``, ``config_fingerprint``, ``days``, ``periods``, ``bootstrap``,
``history``, ``declared_versions`` (per declared item -- labour hours, calendar, asset
register, ... -- the version used, who supplied it and when: ``api.declared``; 0 is the
configuration's), ``not_computed`` (measured figures of ``config.tiers`` this version does not
compute: missing, ``insufficient_data``), ``coverage_min``. Callers (the route,
``tierproof assess``) wrap ``assess`` in ``KpiService.snapshot()``, so all of one
assessment's reads in this process see one state of the store.

The per-asset work (``_assets_part``: every asset's per-day elements of both windows, its
current-window and history elements) runs over contiguous runs of the register in worker
processes and this one (``api.assetsplit``, ``kpi.assess_workers``); the runs come back in
register order and are summed here as one process sums them, so the answer is the same JSON
bit for bit. Each run is read in its process's own snapshot: every number of one asset comes
from one snapshot; a worker's is opened a few milliseconds after this process's
(docs/architecture.md, "An assessment on every core").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np

from config.declared import Declared
from config.errors import KpiError, NotFoundError
from config.gcpause import collector_paused
from config.settings import Asset, Settings
from config.signals import Role
from config.tiers import MEASURED_FIGURES, TierCriteria
from config.times import iso, to_ns
from kpi import (
    ALGORITHM_VERSION,
    AssetDay,
    Kpis,
    Observation,
    RegisteredAsset,
    Supplied,
    TagEvidence,
    TimeElements,
    asset_day_rates,
    cnc_rate_declared,
    declared_reference,
    gap_intervals,
    labour_hours_in_window,
    pbt_inside,
    planned_intervals,
    ratio_delta,
    ratio_estimate,
    roll_up,
    same_unit,
    tier_readiness,
)
from kpi.deltas import DEFAULT_MIN_DAYS, DEFAULT_N_RESAMPLES

from .assetsplit import map_assets
from .rollups import ELEMENT_FIELDS, local_day_edges
from .service import AssetResult, KpiService

__all__ = ["ASSESSMENT_SEED", "COMPUTED", "UNITS", "assess", "local_days"]

#: the bootstrap's seed: the same data give the same intervals
ASSESSMENT_SEED: Final = 0
#: the ratio figures this version computes per day from the elements (each with a day-block
#: bootstrap interval); the carbon figures are the energy figures times the emission factor
COMPUTED: Final = (
    "automation_rate", "defect_rate", "production_efficiency", "energy_per_standard_hour_kwh",
    "energy_per_unit_kwh", "cnc_rate_key_equipment", "networking_rate",
)
#: carbon figure -> the energy figure it is computed from
CARBON: Final = {"carbon_per_standard_hour_kg": "energy_per_standard_hour_kwh",
                 "carbon_per_unit_kg": "energy_per_unit_kwh"}
#: production efficiency per labour hour: a point value, no interval (see the docstring)
LABOUR: Final = "production_efficiency_labour"
#: the unit of every figure; a reference value compared with a figure must be in its unit
UNITS: Final = {
    "automation_rate": "fraction", "defect_rate": "fraction",
    "production_efficiency": "standard h / worked h", LABOUR: "standard h / labour h",
    "energy_per_standard_hour_kwh": "kWh/standard h", "energy_per_unit_kwh": "kWh/unit",
    "carbon_per_standard_hour_kg": "kg CO2/standard h", "carbon_per_unit_kg": "kg CO2/unit",
    "cnc_rate_key_equipment": "fraction", "networking_rate": "fraction",
}
EMISSION_UNIT: Final = "kg CO2/kWh"
#: figures whose missing data count against them (an asset that does not report lowers the
#: rate): every planned asset-day is decided, so their coverage is 1
_DECIDED: Final = frozenset({"cnc_rate_key_equipment", "networking_rate"})
_NOTES: Final = {
    "energy_per_unit_kwh": "raw good units of every product added together, not weighted by "
                           "standard time: not comparable across product mixes; the energy "
                           "criterion judges energy_per_standard_hour_kwh",
    "carbon_per_unit_kg": "raw good units of every product added together (see energy_per_unit_kwh)",
    LABOUR: "no interval: labour hours are declared per month, not per day, so days cannot be "
            "resampled with their own labour hours",
}
NOT_COMPUTED: Final = "not computed by this version"
_NO_BASELINE: Final = "needs kpi.baseline (or baseline_from and baseline_to)"
_YEAR_S: Final = 365.25 * 86400
_NS: Final = 1_000_000_000
_PBT: Final = ELEMENT_FIELDS.index("pbt_s")
_KNOWN: Final = ELEMENT_FIELDS.index("known_s")


@dataclass(slots=True)
class _Days:
    """One window's per-day arrays (one entry per local day)."""

    days: list[str] = field(default_factory=list)
    num: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in COMPUTED})
    den: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in COMPUTED})
    known_s: float = 0.0
    pbt_s: float = 0.0
    apt_s: float = 0.0
    apt_mode_known_s: float = 0.0
    uncounted_days: int = 0  # days on which some unit's produced quantity is not measured
    asset_days: list[dict[str, AssetDay]] = field(default_factory=list)

    def left_out(self, figure: str) -> float:
        """Σ numerator of the days whose denominator is 0 (the bootstrap leaves them out)."""
        return sum(n for n, d in zip(self.num[figure], self.den[figure], strict=True) if d <= 0)

    def coverage(self, figure: str) -> float | None:
        if figure in _DECIDED:
            return 1.0 if any(d > 0 for d in self.den[figure]) else None
        cov = self.known_s / self.pbt_s if self.pbt_s > 0 else None
        if figure == "automation_rate" and cov is not None and self.apt_s > 0:
            cov = min(cov, self.apt_mode_known_s / self.apt_s)
        return cov


def local_days(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[str, datetime, datetime]]:
    """(local date, day start, day end) of every local calendar day that [start, end) touches,
    clipped to the window."""
    out: list[tuple[str, datetime, datetime]] = []
    d: date = start.astimezone(tz).date()
    while True:
        lo = datetime.combine(d, time(0), tzinfo=tz)
        hi = datetime.combine(d + timedelta(days=1), time(0), tzinfo=tz)
        if lo >= end:
            break
        a, b = max(lo, start), min(hi, end)
        if b > a:
            out.append((d.isoformat(), a, b))
        d += timedelta(days=1)
    return out


def _months(start: datetime, end: datetime, tz: ZoneInfo) -> list[str]:
    """The local calendar months ``YYYY-MM`` that [start, end) touches."""
    first = start.astimezone(tz).date().replace(day=1)
    last = (end - timedelta(microseconds=1)).astimezone(tz).date().replace(day=1)
    out: list[str] = []
    while first <= last:
        out.append(f"{first.year:04d}-{first.month:02d}")
        first = (first + timedelta(days=32)).replace(day=1)
    return out


def _asset_day(r: AssetResult, planned: Any, end_ns: int) -> AssetDay:
    """What one asset's results of one day show for the reporting rule (``kpi.rates``)."""
    return _day_of(r.elements, r.evidence.tags,
                   pbt_inside(planned, gap_intervals(r.evidence.gaps, end_ns)))


def _day_of(e: TimeElements, tags: Sequence[TagEvidence], gap_s: float) -> AssetDay:
    roles = {t.role for t in tags}
    return AssetDay(
        pbt_s=e.pbt_s, known_s=e.known_s,
        state_and_mode=Role.STATE in roles and Role.MODE in roles, tags=len(tags),
        good_samples=sum(t.samples - t.bad_samples for t in tags), gap_s=gap_s,
    )


def _add_day(w: _Days, day: list[tuple[str, TimeElements, AssetDay]]) -> None:
    """One day's numerators and denominators (sums over its assets, in register order) onto
    ``w``: per asset its elements and what they show for the reporting rule."""
    _add_sums(w, roll_up(e for _, e, _ in day), {p: a for p, _, a in day})


def _add_sums(w: _Days, t: TimeElements | _Summed, asset_days: dict[str, AssetDay]) -> None:
    """A day's summed elements ``t`` (of its assets, in register order) onto ``w``."""
    w.known_s += t.known_s
    w.pbt_s += t.pbt_s
    w.apt_s += t.apt_s
    w.apt_mode_known_s += t.apt_mode_known_s
    # a unit's defect rate needs its produced and its good (or reject) quantity measured
    w.uncounted_days += int(t.pq_known != t.units or t.gq_known != t.units)
    # the standard-time figures are the roll-up's own elements (kpi.oee): PRU x good parts
    # over the units with a PRU and a measured good quantity, energy over those with a meter
    for f, n, d in (("automation_rate", t.apt_auto_s, t.apt_mode_known_s),
                    ("defect_rate", t.sq_plan, t.pq_plan),
                    ("production_efficiency", t.std_gq_s / 3600.0, t.std_busy_s / 3600.0),
                    ("energy_per_standard_hour_kwh", t.energy_std_kwh, t.energy_std_gq_s / 3600.0),
                    ("energy_per_unit_kwh", t.metered_kwh, t.metered_gq)):
        w.num[f].append(n)
        w.den[f].append(d)
    w.asset_days.append(asset_days)


class _Summed:
    """A day's elements summed over its assets as one numpy pass over their vectors (rows in
    register order: numpy adds the rows of an axis-0 sum one after the other, as ``roll_up``
    does, so the floats are the same); the fields ``_add_sums`` reads, as Python numbers."""

    known_s: float
    pbt_s: float
    apt_s: float
    apt_mode_known_s: float
    pq_known: int
    gq_known: int
    units: int
    apt_auto_s: float
    sq_plan: float
    pq_plan: float
    std_gq_s: float
    std_busy_s: float
    energy_std_kwh: float
    energy_std_gq_s: float
    metered_kwh: float
    metered_gq: float

    def __init__(self, matrix: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        total = matrix.sum(axis=0).tolist() if len(matrix) > 1 else matrix[0].tolist()
        for f in _SUM_FIELDS:
            v = total[_FIELD_AT[f]]
            setattr(self, f, int(v) if f in _INT_SUMS else v)


#: the summed elements ``_add_sums`` reads, and where each is in a row's vector
_SUM_FIELDS: Final = ("known_s", "pbt_s", "apt_s", "apt_mode_known_s", "pq_known", "gq_known",
                      "units", "apt_auto_s", "sq_plan", "pq_plan", "std_gq_s", "std_busy_s",
                      "energy_std_kwh", "energy_std_gq_s", "metered_kwh", "metered_gq")
_INT_SUMS: Final = frozenset({"pq_known", "gq_known", "units"})
_FIELD_AT: Final = {f: i for i, f in enumerate(ELEMENT_FIELDS)}


def _vector(e: TimeElements) -> list[float]:
    """An asset-day computed from raw samples as a row vector (``ELEMENT_FIELDS``, None NaN)."""
    return [float("nan") if v is None else v for v in (getattr(e, f) for f in ELEMENT_FIELDS)]


def _register(settings: Settings) -> list[RegisteredAsset]:
    return [RegisteredAsset(a.path, a.key_equipment, a.control) for a in settings.assets]


#: an asset-day's reporting facts as a row (``AssetDay``'s fields, in this order)
_DAY_FIELDS: Final = ("pbt_s", "known_s", "state_and_mode", "tags", "good_samples", "gap_s")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What an assessment computes per asset: its windows (current, then baseline or None),
    and the history span ``(first sample rounded down to the us, current end)`` or None."""

    windows: tuple[tuple[datetime, datetime], ...]
    history: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class _Part:
    """The per-asset answers of a run of the register's assets (computed in one process,
    from one snapshot: ``api.assetsplit``), in register order. ``days``: per window, per local
    day, the assets' elements (rows of ``ELEMENT_FIELDS``, None as NaN) and their asset-day
    rows (``_DAY_FIELDS``); ``kpis``: the current window's elements and whole hours of each
    asset; ``history``: each asset's elements over the history span."""

    days: list[list[tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]]]
    kpis: list[tuple[TimeElements, tuple[int, int] | None]]
    history: list[TimeElements]


def _assets_part(service: KpiService, assets: list[Asset], plan: _Plan) -> _Part:
    """Everything an assessment computes asset by asset, for ``assets`` (a run of the
    register): the reads and computations of ``KpiService`` (its caches shared between the
    windows within the caller's snapshot), no sum over assets."""
    tz = ZoneInfo(service.settings.calendar.timezone)
    days = [_window_rows(service, assets, start, end, tz) for start, end in plan.windows]
    history = ([r.elements for r in service.results(*plan.history, assets)]
               if plan.history is not None else [])
    start, end = plan.windows[0]
    kpis = [(r.elements, r.hours) for r in service.results(to_ns(start), to_ns(end), assets)]
    return _Part(days, kpis, history)


def _window_rows(service: KpiService, assets: list[Asset], start: datetime, end: datetime,
                 tz: ZoneInfo) -> list[tuple[Any, Any]]:
    """Per local day of the window, the elements and asset-day rows of ``assets``. A whole
    local day reads each asset's day row where the store holds a current one
    (``KpiService.day_vectors``: the day computed on its own, the same numbers as from raw
    samples); the rest (the window's clipped first and last days, assets without a row) from
    ``KpiService.results``."""
    settings = service.settings
    spans = [(to_ns(a), to_ns(b)) for _, a, b in local_days(start, end, tz)]
    whole = set(local_day_edges(settings.calendar.timezone, to_ns(start), to_ns(end)))
    held = service.day_vectors(assets, sorted(whole))
    by_asset = service._tags_by_asset()
    both = {x.path: Role.STATE in t and Role.MODE in t
            for x in assets if (t := by_asset.get(x.path)) is not None}
    out: list[tuple[Any, Any]] = []
    for a_ns, b_ns in spans:
        planned = planned_intervals(settings.calendar, a_ns, b_ns)
        rows = held.get(a_ns, {}) if (a_ns, b_ns) in whole else {}
        rest = [x for x in assets if x.path not in rows]
        computed = {r.asset.path: r for r in service.results(a_ns, b_ns, rest)} if rest else {}
        vectors: list[Any] = []
        facts: list[tuple[float, float, bool, int, int, float]] = []
        for x in assets:
            got = rows.get(x.path)
            if got is not None:
                vec, ntags, good, gap_s = got
                vectors.append(vec)
                facts.append((vec[_PBT], vec[_KNOWN], both.get(x.path, False), ntags, good, gap_s))
            else:
                r = computed[x.path]
                vectors.append(_vector(r.elements))
                d = _asset_day(r, planned, b_ns)
                facts.append((d.pbt_s, d.known_s, d.state_and_mode, d.tags, d.good_samples, d.gap_s))
        out.append((np.array(vectors, np.float64).reshape(len(assets), len(ELEMENT_FIELDS)),
                    np.array(facts, np.float64).reshape(len(assets), len(_DAY_FIELDS))))
    return out


def _window_days(settings: Settings, labels: list[str], parts: list[list[tuple[Any, Any]]]) -> _Days:
    """The window's per-day arrays from the runs' per-asset rows (``_window_rows``), summed
    over all assets in register order: the rows of the runs one after the other are the
    register's, so the sums are one process's, float for float."""
    w = _Days()
    for i, label in enumerate(labels):
        w.days.append(label)
        if not settings.assets:
            _add_day(w, [])
            continue
        vectors = np.concatenate([p[i][0] for p in parts])
        facts = np.concatenate([p[i][1] for p in parts]).tolist()
        asset_days = {
            x.path: AssetDay(pbt_s=pbt, known_s=known, state_and_mode=bool(sm), tags=int(ntags),
                             good_samples=int(good), gap_s=gap_s)
            for x, (pbt, known, sm, ntags, good, gap_s) in zip(settings.assets, facts, strict=True)}
        _add_sums(w, _Summed(vectors), asset_days)
    rates = asset_day_rates(_register(settings), w.asset_days, settings.kpi.coverage_min)
    for f, (n, d) in rates.items():
        w.num[f], w.den[f] = n, d
    return w


def _instant(value: str | None, default: str | None, name: str, now: datetime,
             tz: tzinfo, plant: tzinfo) -> datetime | None:
    """A parameter (bare times in ``tz``) or else the configured end (in the plant's zone)."""
    text = value if value is not None else default
    if text is None:
        return None
    # one parser of query instants (api.deps, imported here: it imports the app's gateway
    # and with it the collectors, which an assessment worker, api.assetsplit, does not need)
    from .deps import instant

    return instant(text, text, name, now, tz if value is not None else plant)


def _window(start: datetime, end: datetime, what: str) -> dict[str, str | None]:
    if end <= start:
        raise KpiError(f"the {what} window is empty: to ({end.isoformat()}) is not after "
                       f"from ({start.isoformat()})")
    return {"from": iso(to_ns(start)), "to": iso(to_ns(end))}


def _emission(declared: Declared) -> tuple[float | None, str | None]:
    """The emission factor in kg CO2 per kWh, or why there is none."""
    ef = declared.emission_factor
    if ef is None:
        return None, (f"needs declared.emission_factor: value ({EMISSION_UNIT}), unit, supplied_by, "
                      "supplied_at, source")
    if not same_unit(ef.unit, EMISSION_UNIT):
        return None, (f"declared.emission_factor is in {ef.unit!r}, not {EMISSION_UNIT!r}: "
                      "supply it in kg CO2 per kWh")
    return ef.value, None


def _series(w: _Days, f: str, factor: float | None) -> tuple[list[float], list[float]]:
    """A figure's per-day numerators and denominators (a carbon figure: its energy's × factor)."""
    if f in CARBON:
        src = CARBON[f]
        return [n * (factor or 0.0) for n in w.num[src]], w.den[src]
    return w.num[f], w.den[f]


def _left_out(num: list[float], den: list[float]) -> float:
    return sum(n for n, d in zip(num, den, strict=True) if d <= 0)


def _value_missing(f: str, w: _Days, carbon_missing: str | None) -> str | None:
    if f in CARBON:
        return carbon_missing
    if f == "defect_rate" and w.uncounted_days:
        return "not every unit's produced quantity is measured (a total_count or reject_count tag is missing)"
    return None


def _delta_json(d: dict[str, Any] | None, current: float | None, missing: str | None) -> dict[str, Any]:
    """One entry of the assessment's ``deltas``: the delta with its interval and both windows'
    values, or what is missing."""
    if d is None:
        return {"kind": "relative", "point": None, "low": None, "high": None, "baseline_value": None,
                "current_value": current, "missing": missing}
    b, c = d["baseline"], d["current"]
    return {**d, "baseline_value": b.get("value", b.get("point")),
            "current_value": c.get("value", c.get("point")), "missing": missing}


def _figures(
    current: _Days, baseline: _Days | None, kw: dict[str, Any], declared: Declared,
) -> tuple[dict[str, Any], dict[str, Observation], dict[str, Observation]]:
    """Each computed figure's value and baseline delta, with their intervals: the JSON entry,
    and the observations the verdicts judge."""
    figures: dict[str, Any] = {}
    values: dict[str, Observation] = {}
    deltas: dict[str, Observation] = {}
    factor, carbon_missing = _emission(declared)
    for f in (*COMPUTED, *CARBON):
        num, den = _series(current, f, factor)
        entry: dict[str, Any] = {
            "unit": UNITS[f], "coverage": current.coverage(f), "value": None, "delta": None,
            # the numerator of days without a denominator (e.g. the idle energy of a day
            # without good output): counted in the value, shown so an auditor sees it
            "numerator_on_zero_days": _left_out(num, den), "missing": None,
        }
        if f in _NOTES:
            entry["note"] = _NOTES[f]
        ef = declared.emission_factor if f in CARBON else None
        if ef is not None:
            entry["emission_factor"] = ef.model_dump(mode="json")
        supplied = (Supplied.of("emission_factor", ef),) if ef is not None else ()
        missing = _value_missing(f, current, carbon_missing)
        if missing is not None:
            values[f] = Observation(None, missing=missing, supplied=supplied)
            entry["missing"] = missing
        else:
            est = ratio_estimate(num, den, **kw)
            values[f] = replace(Observation.of_estimate(est, current.coverage(f)), supplied=supplied)
            entry["value"] = est.as_dict()
        if baseline is None:
            deltas[f] = Observation(None, missing=_NO_BASELINE)
        elif f == "defect_rate" and (current.uncounted_days or baseline.uncounted_days):
            deltas[f] = Observation(None, missing="not every unit's produced quantity is measured "
                                                  "in both windows")
        elif f in CARBON and carbon_missing is not None:
            deltas[f] = Observation(None, missing=carbon_missing)
        else:
            b_num, b_den = _series(baseline, f, factor)
            d = ratio_delta(b_num, b_den, num, den, **kw)
            bc, cc = baseline.coverage(f), current.coverage(f)
            cov = min(bc, cc) if bc is not None and cc is not None else None
            deltas[f] = Observation.of_delta(d, cov)
            entry["delta"] = d.as_dict()
            entry["baseline_coverage"] = bc
            entry["baseline_numerator_on_zero_days"] = _left_out(b_num, b_den)
        figures[f] = entry
    return figures, values, deltas


def _labour_window(settings: Settings, w: _Days, start: datetime, end: datetime, tz: ZoneInfo
                   ) -> tuple[dict[str, Any], tuple[Supplied, ...], str | None]:
    """Standard output hours of one window per labour hour apportioned to it: the JSON, who
    supplied the labour hours, and what is missing."""
    by = {p.period: p for p in settings.declared.labour_hours}
    wrong = [p.period for p in by.values() if not same_unit(p.unit, "h")]
    hours = {m: p.amount for m, p in by.items() if m not in wrong}
    lh = labour_hours_in_window(settings.calendar, to_ns(start), to_ns(end), _months(start, end, tz), hours)
    std_h = sum(w.num["production_efficiency"])
    value = std_h / lh.hours if lh.hours else None
    out = {"point": value, "standard_hours": std_h, "labour_hours": lh.hours,
           "month_shares": lh.shares, "missing_months": list(lh.missing)}
    supplied = tuple(Supplied.of(f"labour_hours[{m}]", by[m]) for m in lh.shares if m in hours)
    missing = None
    if not_h := [m for m in lh.shares if m in wrong]:
        missing = f"declared.labour_hours of {', '.join(not_h)} are not in hours (unit h)"
    elif lh.missing:
        missing = (f"needs declared.labour_hours for {', '.join(lh.missing)}: period, amount, unit, "
                   "supplied_by, supplied_at, source")
    elif not lh.shares:
        missing = "the window holds no planned busy time to apportion labour hours to"
    elif value is None:
        missing = "the labour hours apportioned to the window are 0"
    return out, supplied, missing


def _labour(settings: Settings, current: _Days, baseline: _Days | None,
            windows: tuple[datetime, datetime, datetime | None, datetime | None], tz: ZoneInfo,
            ) -> tuple[dict[str, Any], Observation, Observation]:
    """Production efficiency per labour hour (point values, no interval: ``_NOTES``)."""
    start, end, b_start, b_end = windows
    cur, sup, missing = _labour_window(settings, current, start, end, tz)
    note = _NOTES[LABOUR]
    entry: dict[str, Any] = {"unit": UNITS[LABOUR], "coverage": current.coverage(LABOUR), "value": cur,
                             "delta": None, "missing": missing, "note": note}
    value = Observation(cur["point"] if missing is None else None, current.coverage(LABOUR),
                        missing=missing, note=note, supplied=sup)
    if baseline is None or b_start is None or b_end is None:
        return entry, value, Observation(None, missing=_NO_BASELINE)
    base, b_sup, b_missing = _labour_window(settings, baseline, b_start, b_end, tz)
    d_missing = missing or b_missing
    point = (cur["point"] / base["point"] - 1.0
             if d_missing is None and cur["point"] is not None and base["point"] else None)
    if d_missing is None and point is None:
        d_missing = "the baseline's figure is 0: a relative delta is undefined"
    entry["delta"] = {"kind": "relative", "point": point, "low": None, "high": None,
                      "baseline": base, "current": cur, "reason": note}
    bc, cc = baseline.coverage(LABOUR), current.coverage(LABOUR)
    return entry, value, Observation(point, min(bc, cc) if bc is not None and cc is not None else None,
                                     missing=d_missing, note=note, supplied=b_sup + sup)


def _unit_checked(values: dict[str, Observation], criteria: TierCriteria, declared: Declared) -> None:
    """A figure compared with a reference declared in another unit is missing, never compared."""
    for t in criteria.tiers:
        for c in t.criteria:
            unit = UNITS.get(c.figure)
            if (c.kind != "measured" or c.measure != "value" or c.reference is None
                    or unit is None or unit == "fraction"):
                continue
            ref = declared_reference(declared, c.reference)
            if ref is None or same_unit(ref.unit, unit):
                continue
            values[c.figure] = Observation(None, missing=(
                f"the reference {c.reference} is declared in {ref.unit!r} but {c.figure} is in "
                f"{unit!r}: figures in different units are not compared; supply the reference in {unit}"))


def _history_span(service: KpiService, end_ns: int) -> tuple[int | None, tuple[int, int] | None]:
    """The store's first sample before the current window's end, and the span whose coverage
    the history reports (None: no sample before the end)."""
    first = service.first_sample_ns(end_ns)
    if first is None or first >= end_ns:
        return first, None
    return first, (first // 1000 * 1000, end_ns)


def _history(first: int | None, end_ns: int, span: TimeElements | None) -> tuple[dict[str, Any], Observation]:
    """How long the history held reaches back from the current window's end (stable
    operation); ``span``: the elements of every asset over it, summed."""
    history: dict[str, Any] = {"first_sample": iso(first), "years": None, "coverage": None}
    if first is None or first >= end_ns or span is None:
        return history, Observation(None, missing="the store holds no sample before the current "
                                                  "window's end")
    # only the span's coverage is used: its summed elements, not the per-asset answer
    coverage = Kpis.of(span).coverage
    years = (end_ns - first) / _NS / _YEAR_S
    history.update(years=years, coverage=coverage)
    return history, Observation(years, coverage=coverage, note="the span of the history held, no interval")


def resolve_windows(
    settings: Settings,
    *,
    from_: str | None,
    to: str | None,
    baseline_from: str | None,
    baseline_to: str | None,
    now: datetime,
    tz: tzinfo | None = None,
) -> tuple[datetime, datetime, datetime | None, datetime | None]:
    """The current and baseline windows of an assessment (parameters, else kpi.current and
    kpi.baseline), every relative instant against the one ``now``, dates and times without
    an offset in the plant's zone (a parameter's in ``tz`` when given); the baseline's ends
    are None when there is none. A bad instant, an empty window or half a baseline is a
    KpiError."""
    cur, base = settings.kpi.current, settings.kpi.baseline
    plant = settings.calendar.zone
    zone_ = tz if tz is not None else plant
    start = _instant(from_, cur.start, "from", now, zone_, plant)
    end = _instant(to, cur.end, "to", now, zone_, plant)
    assert start is not None and end is not None
    _window(start, end, "current")
    b_start = _instant(baseline_from, base.start if base else None, "baseline_from", now, zone_, plant)
    b_end = _instant(baseline_to, base.end if base else None, "baseline_to", now, zone_, plant)
    if (b_start is None) != (b_end is None):
        raise KpiError("give both baseline_from and baseline_to (no kpi.baseline is configured)")
    if b_start is not None and b_end is not None:
        _window(b_start, b_end, "baseline")
    return start, end, b_start, b_end


def assess(
    settings: Settings,
    service: KpiService,
    criteria: TierCriteria,
    *,
    tier: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    baseline_from: str | None = None,
    baseline_to: str | None = None,
    now: datetime | None = None,
    seed: int = ASSESSMENT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> dict[str, Any]:
    """The tier assessment as JSON-ready data (fractions). ``tier`` None: every tier of the
    criteria; an unknown tier is a NotFoundError, a bad instant or empty window a KpiError.
    Its windows read the same roll-up rows more than once: inside a snapshot they are read
    once (``KpiService.sharing_rows``). The cyclic garbage collector is paused meanwhile
    (``config.gcpause``): an assessment allocates a few hundred thousand small objects that
    live until it ends, and on the 500 x 30 bench the collections they set off took ~0.3-0.4
    s of ~2.3 s."""
    with service.sharing_rows(), collector_paused():
        return _assess(settings, service, criteria, tier=tier, from_=from_, to=to,
                       baseline_from=baseline_from, baseline_to=baseline_to, now=now, seed=seed,
                       n_resamples=n_resamples)


def _assess(
    settings: Settings,
    service: KpiService,
    criteria: TierCriteria,
    *,
    tier: str | None,
    from_: str | None,
    to: str | None,
    baseline_from: str | None,
    baseline_to: str | None,
    now: datetime | None,
    seed: int,
    n_resamples: int,
) -> dict[str, Any]:
    names = [t.name for t in criteria.tiers]
    if tier is not None and tier not in names:
        raise NotFoundError(f"no tier {tier!r} in criteria {criteria.version}; tiers: {', '.join(names)}")
    start, end, b_start, b_end = resolve_windows(
        settings, from_=from_, to=to, baseline_from=baseline_from, baseline_to=baseline_to,
        now=now or datetime.now(UTC))
    window = _window(start, end, "current")
    baseline_window = _window(b_start, b_end, "baseline") if b_start and b_end else None

    tz = ZoneInfo(settings.calendar.timezone)
    end_ns = to_ns(end)
    first, span = _history_span(service, end_ns)
    windows = ((start, end), (b_start, b_end)) if b_start and b_end else ((start, end),)
    # the per-asset work, over runs of the register in worker processes and this one
    parts: list[_Part] = map_assets(service, _assets_part, _Plan(windows, span))
    labels = [[label for label, _, _ in local_days(a, b, tz)] for a, b in windows]
    current = _window_days(settings, labels[0], [p.days[0] for p in parts])
    baseline = (_window_days(settings, labels[1], [p.days[1] for p in parts])
                if len(windows) > 1 else None)
    kw: dict[str, Any] = {"seed": seed, "n_resamples": n_resamples, "min_days": DEFAULT_MIN_DAYS}

    figures, values, deltas = _figures(current, baseline, kw, settings.declared)
    figures[LABOUR], values[LABOUR], deltas[LABOUR] = _labour(
        settings, current, baseline, (start, end, b_start, b_end), tz)
    cnc = cnc_rate_declared(_register(settings))
    figures["cnc_rate_key_equipment"]["declared"] = {
        **cnc.as_dict(), "kind": "declared", "config_fingerprint": service.fingerprint,
        "source": "the asset register of the configuration: assets[].key_equipment and "
                  "assets[].control (cnc, plc, dcs count as digital)"}
    values["cnc_rate_key_equipment_declared"] = Observation(
        cnc.value, missing=None if cnc.value is not None else "no asset has key_equipment: true",
        supplied=(Supplied("assets", "configuration", "", f"asset register, config {service.fingerprint}"),))
    _unit_checked(values, criteria, settings.declared)
    done = {*COMPUTED, *CARBON, LABOUR, "history_years"}
    not_computed = sorted(MEASURED_FIGURES - done)
    for f in not_computed:
        values[f] = Observation(None, missing=NOT_COMPUTED)
        deltas[f] = Observation(None, missing=NOT_COMPUTED)

    history, values["history_years"] = _history(
        first, end_ns, roll_up(e for p in parts for e in p.history) if span is not None else None)

    periods = {"current_periods": _months(start, end, tz),
               "baseline_periods": _months(b_start, b_end, tz) if b_start and b_end else []}
    tiers = {
        name: tier_readiness(criteria, name, values=values, deltas=deltas, declared=settings.declared,
                             coverage_min=settings.kpi.coverage_min, **periods).as_dict()
        for name in names
        if tier is None or name == tier
    }
    # the per-tag evidence is bulky: GET /api/v1/kpis of the same window serves it
    kpis = KpiService.entries([(x.path, e, None, hours) for x, (e, hours) in
                               zip(settings.assets, (k for p in parts for k in p.kpis), strict=True)])
    return {
        "criteria_version": criteria.version,
        "algorithm_version": ALGORITHM_VERSION,
        "config_fingerprint": service.fingerprint,
        # the version of each declared item the assessment used (0: the configuration's)
        "declared_versions": service.declared_versions,
        "window": window,
        "baseline_window": baseline_window,
        "assets": kpis["assets"],
        "lines": kpis["lines"],
        "total": kpis["total"],
        "deltas": {f: _delta_json(e["delta"], (e["value"] or {}).get("point"),
                                  deltas[f].missing)
                   for f, e in figures.items()},
        "days": {"current": current.days, "baseline": baseline.days if baseline else []},
        "periods": periods,
        "bootstrap": {"seed": seed, "n_resamples": n_resamples, "min_days": DEFAULT_MIN_DAYS,
                      "method": "day-block bootstrap (BCa)", "confidence": 0.95},
        "figures": figures,
        "history": history,
        "not_computed": not_computed,
        "coverage_min": settings.kpi.coverage_min,
        "tiers": tiers,
    }
