"""Verdicts on tier criteria, and a tier's readiness: which criteria the plant meets, with what
confidence, and what is missing.

A criterion (``config.tiers.Criterion``) compares a figure with a threshold in a direction.
The verdict on a **measured** figure is one of:

- ``met`` -- the interval clears the threshold: for ``>=`` its low bound is >= the threshold,
  for ``<=`` its high bound is <= the threshold (a bound exactly on the threshold clears it).
  The interval is the two-sided 95 % (equal-tailed) interval, so each bound is a one-sided
  97.5 % bound: "low bound >= threshold" is the one-sided test that rejects "the true value is
  below the threshold" at the 2.5 % level (and likewise for the high bound and ``<=``). A
  one-sided test at 5 % would use the 90 % interval's bound; we keep the stricter 2.5 %.
- ``point_estimate_only`` -- the point estimate clears the threshold but the interval does not,
  or there is no interval;
- ``not_met`` -- the point estimate does not clear the threshold;
- ``insufficient_data`` -- the value is missing, its coverage (the fraction of the window whose
  data is known) is unknown or below ``coverage_min``, the window has too few days, or the
  threshold's reference value has not been supplied.

A **declared** figure (an inventory, an assessment, ERP figures) has no interval: ``met`` or
``not_met`` from its value, ``insufficient_data`` -- with what is missing and how to supply it --
when it has not been declared.

A threshold given as a ``reference`` comes from the declared section: ``references[NAME]``,
or, for the industry's energy per unit (``industry_energy_per_unit_kwh``), the dedicated field
``energy_benchmark``. When both are given, ``references[NAME]`` wins -- it is named exactly
as the criteria file asks, the dedicated field is the shorthand -- and the criterion reports
which one it used (``reference_source``) and that the other was ignored (``reference_note``).

A declared per-month figure's change (operating cost, labour hours) compares the baseline
window's months with the current window's: when the windows share a month, that month's
figure would be on both sides, so the change is refused as missing, naming the month.

A tier's readiness lists every criterion of the tier and of the tiers it includes; its overall
verdict is ``met`` when all are met, ``not_met`` when any is not met, else the weakest of the
rest (``insufficient_data`` is weaker than ``point_estimate_only``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from config.declared import Declared, DeclaredItem, DeclaredValue, PeriodAmount
from config.tiers import Criterion, Tier, TierCriteria

from .deltas import Delta, RatioEstimate

__all__ = [
    "VERDICTS",
    "CriterionResult",
    "Interval",
    "Observation",
    "Reference",
    "Supplied",
    "TierReadiness",
    "Verdict",
    "declared_observation",
    "declared_reference",
    "judge",
    "overall_verdict",
    "reference_of",
    "threshold_of",
    "tier_readiness",
]

Verdict = Literal["met", "point_estimate_only", "not_met", "insufficient_data"]
#: strongest first
VERDICTS: Final[tuple[Verdict, ...]] = ("met", "point_estimate_only", "insufficient_data", "not_met")

#: reference names that a dedicated field of the declared section also supplies
_REFERENCE_FIELDS: Final = {"industry_energy_per_unit_kwh": "energy_benchmark"}
_DECLARED_VALUE_FIELDS = "value, unit, supplied_by, supplied_at, source"


@dataclass(frozen=True, slots=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float
    confidence: float = 0.95
    method: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "confidence": self.confidence, "method": self.method}


@dataclass(frozen=True, slots=True)
class Supplied:
    """Who supplied a declared figure, when and from what."""

    item: str  # where in the declared section, e.g. "maturity", "operating_cost[2026-11]"
    supplied_by: str
    supplied_at: str  # ISO date
    source: str

    @classmethod
    def of(cls, item: str, d: DeclaredItem) -> Supplied:
        return cls(item, d.supplied_by, d.supplied_at.isoformat(), d.source)

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "supplied_by": self.supplied_by, "supplied_at": self.supplied_at,
                "source": self.source}


@dataclass(frozen=True, slots=True)
class Observation:
    """A figure as a verdict sees it.

    ``coverage`` is the fraction of the window whose data is known (None: unknown; not used for
    declared figures). ``shortfall`` is a reason the data are insufficient although there is a
    value (too few days). ``missing`` says what is missing and how to supply it when ``value``
    is None. ``note`` says why there is no interval when that is not a shortfall.
    """

    value: float | None
    coverage: float | None = None
    interval: Interval | None = None
    shortfall: str | None = None
    missing: str | None = None
    note: str | None = None
    supplied: tuple[Supplied, ...] = ()

    @classmethod
    def of_delta(cls, d: Delta, coverage: float | None) -> Observation:
        """A measured delta; ``coverage`` is the lower of its two windows' coverages."""
        return cls._of(d.point, d.low, d.high, d.bootstrap.confidence, d.bootstrap.method, d.enough_days,
                       d.reason, coverage)

    @classmethod
    def of_estimate(cls, e: RatioEstimate, coverage: float | None) -> Observation:
        """A measured value of one window with its interval."""
        return cls._of(e.point, e.low, e.high, e.bootstrap.confidence, e.bootstrap.method, e.enough_days,
                       e.reason, coverage)

    @classmethod
    def _of(cls, point: float | None, low: float | None, high: float | None, confidence: float,
            method: str, enough: bool, reason: str | None, coverage: float | None) -> Observation:
        iv = (Interval(low, high, confidence, f"day-block bootstrap ({method})")
              if low is not None and high is not None else None)
        return cls(
            value=point,
            coverage=coverage,
            interval=iv,
            shortfall=None if enough else reason,
            missing=reason if point is None else None,
            note=reason if enough and point is not None else None,
        )


def _clears(x: float, direction: str, threshold: float) -> bool:
    return x >= threshold if direction == ">=" else x <= threshold


def threshold_of(c: Criterion, reference: float | None) -> float | None:
    """The criterion's threshold: its number, or the reference value × factor (None when the
    reference is needed and not given)."""
    if c.threshold is not None:
        return c.threshold
    return reference * c.factor if reference is not None else None


@dataclass(frozen=True, slots=True)
class Reference:
    """A declared reference value, where in the declared section it came from, and a note when
    another field supplied the same reference and was not used."""

    value: DeclaredValue
    item: str  # e.g. "references.industry_energy_per_unit_kwh" or "energy_benchmark"
    note: str | None = None

    @property
    def source(self) -> str:
        return f"declared.{self.item}"


def reference_of(declared: Declared, name: str) -> Reference | None:
    """The reference value ``name``: ``references[name]`` first, else the dedicated field that
    also supplies it (``energy_benchmark`` for ``industry_energy_per_unit_kwh``); None when
    neither is declared (precedence and why: the module's docstring)."""
    fld = _REFERENCE_FIELDS.get(name)
    alt: DeclaredValue | None = getattr(declared, fld) if fld is not None else None
    named = declared.references.get(name)
    if named is not None:
        note = None
        if alt is not None:
            note = (f"declared.{fld} ({_fmt(alt.value)} {alt.unit}) is also given and not used: "
                    f"declared.references.{name} ({_fmt(named.value)} {named.unit}) takes precedence")
        return Reference(named, f"references.{name}", note)
    if alt is not None:
        return Reference(alt, str(fld))
    return None


def declared_reference(declared: Declared, name: str) -> DeclaredValue | None:
    """A named reference value from the declared section (precedence as :func:`reference_of`)."""
    ref = reference_of(declared, name)
    return ref.value if ref is not None else None


def _reference_missing(name: str) -> str:
    also = f" (or declared.{_REFERENCE_FIELDS[name]})" if name in _REFERENCE_FIELDS else ""
    return f"needs declared.references.{name}{also}: {_DECLARED_VALUE_FIELDS}"


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One criterion's verdict with everything it rests on."""

    tier: str  # the tier whose criteria list holds it
    id: str
    title: str
    figure: str
    kind: str
    measure: str
    direction: str
    value: float | None
    interval: Interval | None
    threshold: float | None
    reference: str | None
    reference_value: float | None
    factor: float
    verdict: Verdict
    reason: str
    coverage: float | None
    missing: str | None
    source: str
    supplied: tuple[Supplied, ...] = field(default=())
    #: where the reference value came from, e.g. "declared.energy_benchmark" (None: no reference)
    reference_source: str | None = None
    #: e.g. that another declared field gave the same reference and was not used
    reference_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "id": self.id,
            "title": self.title,
            "figure": self.figure,
            "kind": self.kind,
            "measure": self.measure,
            "direction": self.direction,
            "value": self.value,
            "interval": self.interval.as_dict() if self.interval is not None else None,
            "threshold": self.threshold,
            "reference": self.reference,
            "reference_value": self.reference_value,
            "reference_source": self.reference_source,
            "reference_note": self.reference_note,
            "factor": self.factor,
            "verdict": self.verdict,
            "reason": self.reason,
            "coverage": self.coverage,
            "missing": self.missing,
            "source": self.source,
            "supplied": [s.as_dict() for s in self.supplied],
        }


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def judge(
    c: Criterion,
    obs: Observation,
    *,
    coverage_min: float,
    reference: float | None = None,
    tier: str = "",
    reference_source: str | None = None,
    reference_note: str | None = None,
) -> CriterionResult:
    """The verdict on one criterion (rules in the module's docstring). ``reference`` is the
    declared reference value for a criterion with ``reference:`` (None: not supplied), taken
    from ``reference_source`` (reported with ``reference_note``)."""
    threshold = threshold_of(c, reference)
    value = obs.value if obs.value is not None and math.isfinite(obs.value) else None
    measured = c.kind == "measured"
    interval = obs.interval if measured else None
    coverage = obs.coverage if measured else None
    missing: list[str] = []
    if value is None:
        missing.append(obs.missing or f"no value for {c.figure}")
    if threshold is None and c.reference is not None:
        missing.append(_reference_missing(c.reference))

    def result(verdict: Verdict, reason: str) -> CriterionResult:
        return CriterionResult(
            tier=tier, id=c.id, title=c.title, figure=c.figure, kind=c.kind, measure=c.measure,
            direction=c.direction, value=value, interval=interval, threshold=threshold,
            reference=c.reference, reference_value=reference if c.reference is not None else None,
            factor=c.factor, verdict=verdict, reason=reason, coverage=coverage,
            missing="; ".join(missing) or None, source=c.source, supplied=obs.supplied,
            reference_source=reference_source if c.reference is not None else None,
            reference_note=reference_note if c.reference is not None else None,
        )

    if missing:
        return result("insufficient_data", "missing: " + "; ".join(missing))
    assert value is not None and threshold is not None
    if measured:
        if coverage is None:
            return result("insufficient_data", "the figure's coverage is unknown")
        if coverage < coverage_min:
            return result("insufficient_data",
                          f"coverage {_fmt(coverage)} is below coverage_min {_fmt(coverage_min)}")
        if obs.shortfall is not None:
            return result("insufficient_data", obs.shortfall)
    cmp = f"{c.direction} {_fmt(threshold)}"
    if not _clears(value, c.direction, threshold):
        return result("not_met", f"{_fmt(value)} is not {cmp}")
    if not measured:
        return result("met", f"declared {_fmt(value)} {cmp}")
    if interval is None:
        why = f": {obs.note}" if obs.note else ""
        return result("point_estimate_only", f"point {_fmt(value)} {cmp}, no interval{why}")
    bound, name = (interval.low, "low") if c.direction == ">=" else (interval.high, "high")
    pct = f"{interval.confidence:.0%}"
    if _clears(bound, c.direction, threshold):
        return result("met", f"the {pct} interval's {name} bound {_fmt(bound)} {cmp}")
    return result("point_estimate_only",
                  f"point {_fmt(value)} {cmp}, but the {pct} interval's {name} bound {_fmt(bound)} is not")


def overall_verdict(verdicts: Iterable[Verdict]) -> Verdict:
    """All met → met; any not_met → not_met; else the weakest (insufficient_data <
    point_estimate_only)."""
    vs = list(verdicts)
    if not vs:
        return "insufficient_data"
    return max(vs, key=VERDICTS.index)


def _periods(
    items: Sequence[PeriodAmount], periods: Sequence[str]
) -> tuple[float, list[str], list[Supplied]]:
    by = {p.period: p for p in items}
    missing = [p for p in periods if p not in by]
    have = [by[p] for p in periods if p in by]
    return sum(p.amount for p in have), missing, [Supplied.of(f"[{p.period}]", p) for p in have]


def declared_observation(
    c: Criterion,
    declared: Declared,
    *,
    baseline_periods: Sequence[str] = (),
    current_periods: Sequence[str] = (),
) -> Observation | None:
    """A declared figure from the declared section (None when the section does not hold such a
    figure, e.g. the asset register's CNC rate, which the caller supplies).

    Per-period items (operating cost, labour hours) are summed over the calendar months
    ``YYYY-MM`` of the current window (``measure: value``), or compared with the baseline
    window's months (``measure: delta``, Σ current / Σ baseline - 1); every month the
    windows need and the section lacks is named.
    """
    fig = c.figure
    if fig == "ai_scenario_share":
        ai = declared.ai_scenarios
        if ai is None:
            return Observation(None, missing="needs declared.ai_scenarios: scenarios (name, applies_ai), "
                                             "supplied_by, supplied_at, source")
        return Observation(ai.share, supplied=(Supplied.of("ai_scenarios", ai),))
    if fig == "maturity_level":
        m = declared.maturity
        if m is None:
            return Observation(None, missing="needs declared.maturity: level, assessor, assessed_on, "
                                             "supplied_by, supplied_at, source")
        return Observation(float(m.level), supplied=(Supplied.of("maturity", m),))
    if fig in ("operating_cost", "labour_hours"):
        items: list[PeriodAmount] = getattr(declared, fig)
        cur, cur_missing, cur_sup = _periods(items, current_periods)
        need = list(current_periods)
        lacking = list(cur_missing)
        base = 0.0
        sup = cur_sup
        if c.measure == "delta":
            base, base_missing, base_sup = _periods(items, baseline_periods)
            need = list(baseline_periods) + need
            lacking = base_missing + lacking
            sup = base_sup + cur_sup
        supplied = tuple(Supplied(fig + s.item, s.supplied_by, s.supplied_at, s.source) for s in sup)
        if not need or (c.measure == "delta" and not (baseline_periods and current_periods)):
            return Observation(None, missing=f"needs the baseline and current windows to know which "
                                             f"months of declared.{fig} are needed")
        problems: list[str] = []
        if lacking:
            problems.append(f"needs declared.{fig} for {', '.join(dict.fromkeys(lacking))}: "
                            "period, amount, unit, supplied_by, supplied_at, source")
        shared = [p for p in baseline_periods if p in current_periods] if c.measure == "delta" else []
        if shared:
            problems.append(
                f"the baseline and current windows share the month{'s' if len(shared) > 1 else ''} "
                f"{', '.join(shared)}: {fig.replace('_', ' ')} is declared per month, so its change "
                "needs windows in different months")
        if problems:
            return Observation(None, supplied=supplied, missing="; ".join(problems))
        if c.measure == "delta":
            if base == 0:
                return Observation(None, supplied=supplied,
                                   missing=f"declared.{fig} of the baseline months is 0: "
                                           "a relative delta is undefined")
            return Observation(cur / base - 1.0, supplied=supplied)
        return Observation(cur, supplied=supplied)
    return None


def _included(criteria: TierCriteria, tier: str) -> list[str]:
    """The tier and every tier it includes (transitively), in the file's order."""
    by: dict[str, Tier] = {t.name: t for t in criteria.tiers}
    if tier not in by:
        raise ValueError(f"no tier {tier!r} in criteria {criteria.version} (have {sorted(by)})")
    seen: set[str] = set()
    stack = [tier]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(by[name].includes)
    return [t.name for t in criteria.tiers if t.name in seen]


@dataclass(frozen=True, slots=True)
class TierReadiness:
    """How far the plant is from one tier: every criterion's verdict and the tier's."""

    tier: str
    criteria_version: str
    verdict: Verdict
    criteria: tuple[CriterionResult, ...]
    coverage_min: float

    def as_dict(self) -> dict[str, Any]:
        counts = {v: sum(r.verdict == v for r in self.criteria) for v in VERDICTS}
        return {
            "tier": self.tier,
            "criteria_version": self.criteria_version,
            "verdict": self.verdict,
            "coverage_min": self.coverage_min,
            "counts": counts,
            "criteria": [r.as_dict() for r in self.criteria],
        }


def tier_readiness(
    criteria: TierCriteria,
    tier: str,
    *,
    values: Mapping[str, Observation],
    deltas: Mapping[str, Observation],
    declared: Declared,
    coverage_min: float,
    baseline_periods: Sequence[str] = (),
    current_periods: Sequence[str] = (),
) -> TierReadiness:
    """The readiness of ``tier``: its criteria and those of the tiers it includes, judged.

    ``values`` maps a figure to its current-window observation (``measure: value``, and
    ``history_years`` for ``measure: years``); ``deltas`` maps a figure to its baseline→current
    delta. Declared criteria are read from ``declared`` (months from ``*_periods``); a
    declared figure the section does not hold (the asset register's CNC rate) comes from
    ``values``. Reference thresholds come from the declared section.
    """
    results: list[CriterionResult] = []
    by: dict[str, Tier] = {t.name: t for t in criteria.tiers}
    for name in _included(criteria, tier):
        for c in by[name].criteria:
            obs: Observation | None = None
            if c.kind == "declared":
                obs = declared_observation(c, declared, baseline_periods=baseline_periods,
                                           current_periods=current_periods)
            if obs is None:
                obs = (deltas if c.measure == "delta" else values).get(c.figure)
            if obs is None:
                obs = Observation(None, missing=_figure_missing(c))
            ref = reference_of(declared, c.reference) if c.reference is not None else None
            sup = obs.supplied + ((Supplied.of(ref.item, ref.value),) if ref else ())
            obs = Observation(obs.value, obs.coverage, obs.interval, obs.shortfall, obs.missing,
                              obs.note, sup)
            results.append(judge(c, obs, coverage_min=coverage_min,
                                 reference=ref.value.value if ref is not None else None, tier=name,
                                 reference_source=ref.source if ref is not None else None,
                                 reference_note=ref.note if ref is not None else None))
    return TierReadiness(tier=tier, criteria_version=criteria.version,
                         verdict=overall_verdict(r.verdict for r in results),
                         criteria=tuple(results), coverage_min=coverage_min)


def _figure_missing(c: Criterion) -> str:
    if c.figure == "cnc_rate_key_equipment_declared":
        return "needs the asset register: assets[].key_equipment and assets[].control in the configuration"
    what = "baseline→current delta of " if c.measure == "delta" else ""
    return f"no {what}{c.figure} was computed for the window"
