"""Tier assessment: the store's per-day figures of two windows, judged against the tier criteria.

Only reads and bookkeeping live here; every formula is in ``kpi/`` (``ratio_estimate``,
``ratio_delta``, ``judge``/``tier_readiness``). The assessment:

1. resolves the current window (``from``/``to``, default ``kpi.current``) and the baseline
   window (``baseline_from``/``baseline_to``, default ``kpi.baseline``) against **one** ``now``;
2. splits each window into the plant's local calendar days (``calendar.timezone``), the first
   and last clipped to the window, and asks the KpiService for each day's elements (one
   ``KpiService.kpis`` call per day, the same computation as ``/api/v1/kpis``);
3. turns the days into per-day numerator and denominator arrays of the ratio figures below,
   and estimates each with a day-block bootstrap (``ratio_estimate`` for ``measure: value``,
   ``ratio_delta``, relative, for ``measure: delta``);
4. judges every tier with ``tier_readiness``.

The figures and exactly what they are computed from (sums over the days, then divided):

- ``automation_rate`` = Σ ``apt_auto_s`` / Σ ``apt_mode_known_s`` of the plant total (as
  ``/api/v1/kpis``); its coverage is the lower of known PBT / PBT and ``apt_mode_known_s`` /
  ``apt_s`` (APT whose channel mode is unknown lowers it).
- ``defect_rate`` = Σ ``sq_plan`` / Σ ``pq_plan`` of the plant total (scrap and produced
  quantities attributed to known planned busy time; ``scrap_ratio`` of ``/api/v1/kpis``).
  Missing when some unit's produced quantity is not measured (``pq_known`` < ``units``).
- ``production_efficiency`` = Σ PRU × ``gq_plan`` / Σ (``apt_s`` + ``asut_s`` + ``adet_s``),
  both in hours, over the assets that have a PRU (``ideal_cycle_time_s``) and a measured
  produced quantity: standard hours of good output per worked hour (worked = production,
  setup and unit delays inside known PBT), a fraction. Assets without PRU are left out of
  numerator and denominator alike. Labour hours are not used by this version.
- ``energy_per_unit_kwh`` = Σ ``energy_kwh`` / Σ ``gq`` over the assets that have an
  ``energy_kwh`` tag (an asset without an energy meter would add good units at zero energy).
  Raw good units, not weighted by standard time. Caveat: the day-block estimators leave out
  days whose denominator is 0, so the energy of a day without good output (idle power on a
  Sunday) is not counted, and the value is lower than ``/api/v1/kpis``'s whole-window
  ``energy_per_unit_kwh``; each figure reports what was left out as
  ``numerator_on_zero_days``.

Coverage of every figure but the automation rate is Σ ``known_s`` / Σ ``pbt_s`` of the window
(of a delta: the lower of its two windows). ``history_years`` is the time from the store's
first sample (any tag) to the current window's end, in years of 365.25 days, without an
interval; its coverage is known PBT / PBT over that same span (one KpiService call).

Not computed by this version, and so passed as missing (``insufficient_data``):
``cnc_rate_key_equipment``, ``networking_rate`` and any other measured figure not listed
above. The day-level reads are one store snapshot per day, not one per assessment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from config.errors import KpiError, NotFoundError
from config.settings import Settings
from config.tiers import MEASURED_FIGURES, TierCriteria
from config.times import iso, parse_instant, to_ns
from kpi import ALGORITHM_VERSION, Observation, ratio_delta, ratio_estimate, tier_readiness
from kpi.deltas import DEFAULT_MIN_DAYS, DEFAULT_N_RESAMPLES

from .service import KpiService

__all__ = ["ASSESSMENT_SEED", "COMPUTED", "assess", "first_sample_ns", "local_days"]

#: the bootstrap's seed: the same data give the same intervals
ASSESSMENT_SEED: Final = 0
#: the ratio figures this version computes from the elements
COMPUTED: Final = ("automation_rate", "defect_rate", "production_efficiency", "energy_per_unit_kwh")
NOT_COMPUTED: Final = "not computed by this version"
_YEAR_S: Final = 365.25 * 86400
_NS: Final = 1_000_000_000


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

    def left_out(self, figure: str) -> float:
        """Σ numerator of the days whose denominator is 0 (the bootstrap leaves them out)."""
        return sum(n for n, d in zip(self.num[figure], self.den[figure], strict=True) if d <= 0)

    def coverage(self, figure: str) -> float | None:
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


def _window_days(service: KpiService, start: datetime, end: datetime, tz: ZoneInfo) -> _Days:
    pru = {a.path: a.ideal_cycle_time_s for a in service.settings.assets}
    w = _Days()
    for label, a, b in local_days(start, end, tz):
        k = service.kpis(a, b)
        t = k["total"]["elements"]
        w.days.append(label)
        w.known_s += t["known_s"]
        w.pbt_s += t["pbt_s"]
        w.apt_s += t["apt_s"]
        w.apt_mode_known_s += t["apt_mode_known_s"]
        w.num["automation_rate"].append(t["apt_auto_s"])
        w.den["automation_rate"].append(t["apt_mode_known_s"])
        w.num["defect_rate"].append(t["sq_plan"])
        w.den["defect_rate"].append(t["pq_plan"])
        w.uncounted_days += int(t["pq_known"] != t["units"])
        std_h = worked_h = energy = good = 0.0
        for path, entry in k["assets"].items():
            e = entry["elements"]
            p = pru.get(path)
            if p is not None and e["pq_known"]:
                std_h += p * e["gq_plan"] / 3600.0
                worked_h += (e["apt_s"] + e["asut_s"] + e["adet_s"]) / 3600.0
            if any(tag["role"] == "energy_kwh" for tag in entry["evidence"]["tags"]):
                energy += e["energy_kwh"]
                good += e["gq"]
        w.num["production_efficiency"].append(std_h)
        w.den["production_efficiency"].append(worked_h)
        w.num["energy_per_unit_kwh"].append(energy)
        w.den["energy_per_unit_kwh"].append(good)
    return w


def first_sample_ns(service: KpiService, end_ns: int) -> int | None:
    """The time of the store's first sample (any tag) before ``end_ns``, or None.

    A bisection over whole seconds with ``read_many(..., prior=True)`` (does any tag hold a
    sample at or before p?), then one read of that second: about 32 reads whatever the length
    of the history, instead of reading it all.
    """
    store = service.store
    ids = [t.tag_id for t in store.tags()]
    if not ids:
        return None

    def held_by(p_ns: int) -> bool:
        return any(len(s.ts_ns) for s in store.read_many(ids, p_ns, p_ns + 1, prior=True).values())

    if end_ns <= 0 or not held_by(end_ns - 1):  # no sample before end_ns
        return None
    hi = (end_ns - 1) // _NS + 1  # held_by(hi s) holds, as held_by(end_ns - 1) does
    lo = -1  # held_by(lo) is False: nothing before the epoch
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if held_by(mid * _NS):
            hi = mid
        else:
            lo = mid
    got = store.read_many(ids, max(hi - 1, 0) * _NS, hi * _NS + 1, prior=False)
    firsts = [int(s.ts_ns[0]) for s in got.values() if len(s.ts_ns)]
    return min(firsts) if firsts else hi * _NS


def _instant(value: str | None, default: str | None, name: str, now: datetime) -> datetime | None:
    text = value if value is not None else default
    if text is None:
        return None
    try:
        at = parse_instant(text, now)
        to_ns(at)
        return at
    except ValueError as exc:
        raise KpiError(f"parameter {name!r}: {exc}") from exc


def _window(start: datetime, end: datetime, what: str) -> dict[str, str | None]:
    if end <= start:
        raise KpiError(f"the {what} window is empty: to ({end.isoformat()}) is not after "
                       f"from ({start.isoformat()})")
    return {"from": iso(to_ns(start)), "to": iso(to_ns(end))}


def _figures(
    current: _Days, baseline: _Days | None, kw: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Observation], dict[str, Observation]]:
    """Each computed figure's value and baseline delta, with their intervals: the JSON entry,
    and the observations the verdicts judge."""
    figures: dict[str, Any] = {}
    values: dict[str, Observation] = {}
    deltas: dict[str, Observation] = {}
    for f in COMPUTED:
        entry: dict[str, Any] = {
            "coverage": current.coverage(f), "value": None, "delta": None,
            # the numerator of days without a denominator (e.g. the idle energy of a day
            # without good output): counted in the value, shown so an auditor sees it
            "numerator_on_zero_days": current.left_out(f),
        }
        if f == "defect_rate" and current.uncounted_days:
            values[f] = Observation(None, missing="not every unit's produced quantity is measured "
                                                  "(a total_count or reject_count tag is missing)")
        else:
            est = ratio_estimate(current.num[f], current.den[f], **kw)
            values[f] = Observation.of_estimate(est, current.coverage(f))
            entry["value"] = est.as_dict()
        if baseline is None:
            deltas[f] = Observation(None, missing="needs kpi.baseline (or baseline_from and baseline_to)")
        elif f == "defect_rate" and (current.uncounted_days or baseline.uncounted_days):
            deltas[f] = Observation(None, missing="not every unit's produced quantity is measured "
                                                  "in both windows")
        else:
            d = ratio_delta(baseline.num[f], baseline.den[f], current.num[f], current.den[f], **kw)
            bc, cc = baseline.coverage(f), current.coverage(f)
            cov = min(bc, cc) if bc is not None and cc is not None else None
            deltas[f] = Observation.of_delta(d, cov)
            entry["delta"] = d.as_dict()
            entry["baseline_coverage"] = baseline.coverage(f)
            entry["baseline_numerator_on_zero_days"] = baseline.left_out(f)
        figures[f] = entry

    return figures, values, deltas


def _history(service: KpiService, end: datetime, end_ns: int) -> tuple[dict[str, Any], Observation]:
    """How long the history held reaches back from the current window's end (stable operation)."""
    first = first_sample_ns(service, end_ns)
    history: dict[str, Any] = {"first_sample": iso(first), "years": None, "coverage": None}
    if first is None or first >= end_ns:
        return history, Observation(None, missing="the store holds no sample before the current "
                                                  "window's end")
    since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first // 1000)
    span = service.kpis(since, end)["total"]["coverage"]
    years = (end_ns - first) / _NS / _YEAR_S
    history.update(years=years, coverage=span)
    return history, Observation(years, coverage=span, note="the span of the history held, no interval")


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
    criteria; an unknown tier is a NotFoundError, a bad instant or empty window a KpiError."""
    names = [t.name for t in criteria.tiers]
    if tier is not None and tier not in names:
        raise NotFoundError(f"no tier {tier!r} in criteria {criteria.version}; tiers: {', '.join(names)}")
    now = now or datetime.now(UTC)  # resolved once for both windows
    cur, base = settings.kpi.current, settings.kpi.baseline
    start = _instant(from_, cur.start, "from", now)
    end = _instant(to, cur.end, "to", now)
    assert start is not None and end is not None
    window = _window(start, end, "current")
    b_start = _instant(baseline_from, base.start if base else None, "baseline_from", now)
    b_end = _instant(baseline_to, base.end if base else None, "baseline_to", now)
    if (b_start is None) != (b_end is None):
        raise KpiError("give both baseline_from and baseline_to (no kpi.baseline is configured)")
    baseline_window = _window(b_start, b_end, "baseline") if b_start and b_end else None

    tz = ZoneInfo(settings.calendar.timezone)
    current = _window_days(service, start, end, tz)
    baseline = _window_days(service, b_start, b_end, tz) if b_start and b_end else None
    kw: dict[str, Any] = {"seed": seed, "n_resamples": n_resamples, "min_days": DEFAULT_MIN_DAYS}

    figures, values, deltas = _figures(current, baseline, kw)
    for f in sorted(MEASURED_FIGURES - set(COMPUTED) - {"history_years"}):
        values[f] = Observation(None, missing=NOT_COMPUTED)
        deltas[f] = Observation(None, missing=NOT_COMPUTED)

    end_ns = to_ns(end)
    history, values["history_years"] = _history(service, end, end_ns)

    periods = {"current_periods": _months(start, end, tz),
               "baseline_periods": _months(b_start, b_end, tz) if b_start and b_end else []}
    tiers = {
        name: tier_readiness(criteria, name, values=values, deltas=deltas, declared=settings.declared,
                             coverage_min=settings.kpi.coverage_min, **periods).as_dict()
        for name in names
        if tier is None or name == tier
    }
    return {
        "criteria_version": criteria.version,
        "algorithm_version": ALGORITHM_VERSION,
        "config_fingerprint": service.fingerprint,
        "window": window,
        "baseline_window": baseline_window,
        "days": {"current": current.days, "baseline": baseline.days if baseline else []},
        "periods": periods,
        "bootstrap": {"seed": seed, "n_resamples": n_resamples, "min_days": DEFAULT_MIN_DAYS,
                      "method": "day-block bootstrap (BCa)", "confidence": 0.95},
        "figures": figures,
        "history": history,
        "not_computed": sorted(MEASURED_FIGURES - set(COMPUTED) - {"history_years"}),
        "coverage_min": settings.kpi.coverage_min,
        "tiers": tiers,
    }
