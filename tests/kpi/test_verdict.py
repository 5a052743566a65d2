"""Verdicts on hand-worked cases: every rule (met, point estimate only, not met, insufficient
data), thresholds exactly on a bound, reference × factor, missing references and declared
items (with what is missing and how to supply it), coverage just below the minimum, and a
tier's readiness over the shipped criteria file."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from config import load_tiers
from config.declared import Declared
from config.tiers import Criterion
from kpi.deltas import ratio_delta
from kpi.verdict import (
    Interval,
    Observation,
    Verdict,
    declared_observation,
    judge,
    overall_verdict,
    threshold_of,
    tier_readiness,
)

WHO = {"supplied_by": "li.wei@plant.example", "supplied_at": "2026-12-01", "source": "ERP report FI-12"}


def crit(**kw: Any) -> Criterion:
    base: dict[str, Any] = {"id": "c", "title": "t", "source": "s", "kind": "measured"}
    return Criterion.model_validate(base | kw)


AUTOMATION = crit(figure="automation_rate", direction=">=", threshold=0.80)
DEFECTS = crit(figure="defect_rate", measure="delta", direction="<=", threshold=-0.30)


def obs(value: float | None, low: float | None = None, high: float | None = None,
        coverage: float | None = 1.0, **kw: Any) -> Observation:
    iv = Interval(low, high) if low is not None and high is not None else None
    return Observation(value, coverage, iv, **kw)


@pytest.mark.parametrize(
    ("criterion", "o", "verdict"),
    [
        # >= 0.80: the low bound decides
        (AUTOMATION, obs(0.85, 0.81, 0.89), "met"),
        (AUTOMATION, obs(0.85, 0.80, 0.89), "met"),  # low bound exactly on the threshold
        (AUTOMATION, obs(0.85, 0.7999, 0.89), "point_estimate_only"),
        (AUTOMATION, obs(0.85), "point_estimate_only"),  # no interval
        (AUTOMATION, obs(0.80), "point_estimate_only"),  # point exactly on the threshold
        (AUTOMATION, obs(0.7999, 0.75, 0.83), "not_met"),
        (AUTOMATION, obs(0.50, 0.45, 0.55), "not_met"),
        # <= -0.30 (at least 30 % fewer defects): the high bound decides
        (DEFECTS, obs(-0.40, -0.50, -0.31), "met"),
        (DEFECTS, obs(-0.40, -0.50, -0.30), "met"),  # high bound exactly on the threshold
        (DEFECTS, obs(-0.40, -0.50, -0.29), "point_estimate_only"),
        (DEFECTS, obs(-0.30), "point_estimate_only"),
        (DEFECTS, obs(-0.25, -0.35, -0.15), "not_met"),  # the interval reaches it, the point does not
        # insufficient data
        (AUTOMATION, obs(0.85, 0.81, 0.89, coverage=0.7999), "insufficient_data"),  # just below
        (AUTOMATION, obs(0.85, 0.81, 0.89, coverage=0.80), "met"),  # exactly the minimum
        (AUTOMATION, obs(0.50, coverage=0.5), "insufficient_data"),  # low coverage hides a miss too
        (AUTOMATION, obs(0.85, 0.81, 0.89, coverage=None), "insufficient_data"),
        (AUTOMATION, obs(None), "insufficient_data"),
        (AUTOMATION, obs(float("nan")), "insufficient_data"),
        (DEFECTS, obs(-0.40, shortfall="too few days"), "insufficient_data"),
    ],
)
def test_measured_verdicts(criterion: Criterion, o: Observation, verdict: Verdict) -> None:
    r = judge(criterion, o, coverage_min=0.80)
    assert r.verdict == verdict, r.reason
    assert r.threshold == criterion.threshold and r.kind == "measured"


def test_reasons_name_the_bound_and_the_coverage() -> None:
    assert judge(AUTOMATION, obs(0.85, 0.81, 0.89), coverage_min=0.8).reason == (
        "the 95% interval's low bound 0.81 >= 0.8")
    assert judge(AUTOMATION, obs(0.85, 0.81, 0.89, coverage=0.7999), coverage_min=0.8).reason == (
        "coverage 0.7999 is below coverage_min 0.8")
    r = judge(AUTOMATION, obs(None, missing="no mode tags"), coverage_min=0.8)
    assert r.missing == "no mode tags" and r.value is None


REF = crit(figure="automation_rate", direction=">=", reference="provincial_automation_rate", factor=1.2)


@pytest.mark.parametrize(
    ("reference", "o", "threshold", "verdict"),
    [
        (0.5, obs(0.70, 0.61, 0.75), 0.6, "met"),  # 0.5 x 1.2 = 0.6
        (0.5, obs(0.70, 0.60, 0.75), 0.6, "met"),  # on the bound
        (0.5, obs(0.70, 0.55, 0.75), 0.6, "point_estimate_only"),
        (0.5, obs(0.59, 0.55, 0.65), 0.6, "not_met"),
        (None, obs(0.70, 0.61, 0.75), None, "insufficient_data"),  # reference not supplied
    ],
)
def test_reference_times_factor(reference: float | None, o: Observation, threshold: float | None,
                                verdict: Verdict) -> None:
    assert threshold_of(REF, reference) == threshold
    r = judge(REF, o, coverage_min=0.8, reference=reference)
    assert (r.threshold, r.verdict) == (threshold, verdict)
    if reference is None:
        assert r.missing == ("needs declared.references.provincial_automation_rate: "
                             "value, unit, supplied_by, supplied_at, source")
    else:
        assert r.reference_value == reference and r.missing is None


def test_missing_value_and_missing_reference_are_both_named() -> None:
    r = judge(REF, obs(None, missing="no automation rate"), coverage_min=0.8)
    assert r.verdict == "insufficient_data"
    assert r.missing == ("no automation rate; needs declared.references.provincial_automation_rate: "
                         "value, unit, supplied_by, supplied_at, source")


def test_a_delta_becomes_an_observation() -> None:
    rng = np.random.default_rng(4)
    produced = rng.poisson(2000, 60).astype(float)
    scrap = rng.binomial(produced.astype(int), np.r_[np.full(30, 0.03), np.full(30, 0.015)]).astype(float)
    d = ratio_delta(scrap[:30], produced[:30], scrap[30:], produced[30:], seed=1, n_resamples=999)
    assert d.high is not None and d.high < -0.30
    assert judge(DEFECTS, Observation.of_delta(d, 0.95), coverage_min=0.8).verdict == "met"
    few = ratio_delta(scrap[:5], produced[:5], scrap[30:35], produced[30:35])
    r = judge(DEFECTS, Observation.of_delta(few, 0.95), coverage_min=0.8)
    assert r.verdict == "insufficient_data" and "too few days" in r.reason
    zero = ratio_delta(np.zeros(10), produced[:10], scrap[30:40], produced[30:40])
    r = judge(DEFECTS, Observation.of_delta(zero, 0.95), coverage_min=0.8)
    assert r.verdict == "insufficient_data" and "baseline value is 0" in (r.missing or "")


# declared evidence

AI = crit(figure="ai_scenario_share", kind="declared", direction=">=", threshold=0.20)
AI_LEADING = crit(figure="ai_scenario_share", kind="declared", direction=">=", threshold=0.60)
MATURITY = crit(figure="maturity_level", kind="declared", direction=">=", threshold=3)
COST = crit(figure="operating_cost", kind="declared", measure="delta", direction="<=", threshold=-0.15)
LABOUR = crit(figure="labour_hours", kind="declared", direction="<=", threshold=30_000)


def declared(**items: Any) -> Declared:
    return Declared.model_validate(items)


SCENARIOS = {**WHO, "scenarios": [{"name": n, "applies_ai": ai} for n, ai in
                                  [("inspection", True), ("maintenance", True), ("scheduling", False),
                                   ("energy", False), ("warehouse", False)]]}
MAT = {**WHO, "level": 3, "assessor": "CESI", "assessed_on": "2026-05-20"}


def month(period: str, amount: float, unit: str = "CNY") -> dict[str, Any]:
    return {**WHO, "period": period, "amount": amount, "unit": unit}


BASE_MONTHS, CUR_MONTHS = ("2026-05", "2026-06"), ("2026-11", "2026-12")
COSTS = [month("2026-05", 1.0e6), month("2026-06", 1.0e6), month("2026-11", 0.8e6), month("2026-12", 0.9e6)]


@pytest.mark.parametrize(
    ("criterion", "d", "value", "verdict", "missing"),
    [
        (AI, declared(ai_scenarios=SCENARIOS), 0.4, "met", None),
        (AI_LEADING, declared(ai_scenarios=SCENARIOS), 0.4, "not_met", None),
        (AI, declared(), None, "insufficient_data",
         "needs declared.ai_scenarios: scenarios (name, applies_ai), supplied_by, supplied_at, source"),
        (MATURITY, declared(maturity=MAT), 3.0, "met", None),  # level 3 is exactly the threshold
        (MATURITY, declared(maturity=MAT | {"level": 2}), 2.0, "not_met", None),
        (MATURITY, declared(), None, "insufficient_data",
         "needs declared.maturity: level, assessor, assessed_on, supplied_by, supplied_at, source"),
        # (0.8 + 0.9) / (1.0 + 1.0) - 1 = -0.15: exactly on the threshold
        (COST, declared(operating_cost=COSTS), 1.7 / 2.0 - 1, "met", None),
        (COST, declared(operating_cost=[*COSTS[:3], month("2026-12", 1.0e6)]), -0.1, "not_met", None),
        (COST, declared(operating_cost=[COSTS[0], COSTS[2]]), None, "insufficient_data",
         "needs declared.operating_cost for 2026-06, 2026-12: "
         "period, amount, unit, supplied_by, supplied_at, source"),
        (LABOUR, declared(labour_hours=[month("2026-11", 12_400, "h"), month("2026-12", 12_000, "h")]),
         24_400.0, "met", None),
        (LABOUR, declared(labour_hours=[month("2026-12", 12_000, "h")]), None, "insufficient_data",
         "needs declared.labour_hours for 2026-11: period, amount, unit, supplied_by, supplied_at, source"),
    ],
)
def test_declared_verdicts(criterion: Criterion, d: Declared, value: float | None, verdict: Verdict,
                           missing: str | None) -> None:
    o = declared_observation(criterion, d, baseline_periods=BASE_MONTHS, current_periods=CUR_MONTHS)
    assert o is not None
    r = judge(criterion, o, coverage_min=0.8)
    assert r.value == (pytest.approx(value) if value is not None else None)
    assert (r.verdict, r.missing, r.kind) == (verdict, missing, "declared")
    assert r.coverage is None and r.interval is None
    if value is not None:
        assert r.supplied and r.supplied[0].supplied_by == WHO["supplied_by"]


@pytest.mark.parametrize(("base", "cur", "months"), [
    (("2026-11",), ("2026-11",), "month 2026-11"),  # both windows inside November
    (("2026-10", "2026-11"), ("2026-11", "2026-12"), "month 2026-11"),  # they overlap in one
    (("2026-10", "2026-11"), ("2026-10", "2026-11"), "months 2026-10, 2026-11"),
])
def test_a_cost_delta_needs_windows_in_different_months(
    base: tuple[str, ...], cur: tuple[str, ...], months: str,
) -> None:
    # every month is declared: without the check the shared month would be on both sides and
    # the change of two windows in November would come out 0
    d = declared(operating_cost=[*COSTS, month("2026-10", 1.0e6)])
    o = declared_observation(COST, d, baseline_periods=base, current_periods=cur)
    assert o is not None and o.value is None
    assert o.missing == (f"the baseline and current windows share the {months}: operating cost is "
                         "declared per month, so its change needs windows in different months")
    r = judge(COST, o, coverage_min=0.8)
    assert r.verdict == "insufficient_data" and r.missing == o.missing
    # with the months undeclared too, both are named (each month once)
    o = declared_observation(COST, declared(), baseline_periods=base, current_periods=cur)
    assert o is not None and o.missing is not None and o.missing.endswith(
        f"; the baseline and current windows share the {months}: operating cost is "
        "declared per month, so its change needs windows in different months")
    assert o.missing.startswith("needs declared.operating_cost for ")
    assert o.missing.count("2026-11") == 2  # once as lacking, once as shared
    # a value (not a change) of one window is fine
    cost_value = crit(figure="operating_cost", kind="declared", direction="<=", threshold=2e6)
    v = declared_observation(cost_value, d, baseline_periods=base, current_periods=cur)
    assert v is not None and v.value is not None


ENERGY_REF = "industry_energy_per_unit_kwh"


def energy_value(value: float) -> dict[str, Any]:
    return {**WHO, "value": value, "unit": "kWh/standard h"}


@pytest.mark.parametrize(
    ("d", "threshold", "item", "note"),
    [
        (declared(energy_benchmark=energy_value(3.2)), 3.2, "energy_benchmark", None),
        (declared(references={ENERGY_REF: energy_value(3.5)}), 3.5, f"references.{ENERGY_REF}", None),
        # both: references[...] wins, and the criterion says the other was not used
        (declared(energy_benchmark=energy_value(3.2), references={ENERGY_REF: energy_value(3.5)}),
         3.5, f"references.{ENERGY_REF}",
         f"declared.energy_benchmark (3.2 kWh/standard h) is also given and not used: "
         f"declared.references.{ENERGY_REF} (3.5 kWh/standard h) takes precedence"),
        (declared(), None, None, None),
    ],
    ids=["benchmark", "reference", "both", "neither"],
)
def test_energy_reference_precedence(d: Declared, threshold: float | None, item: str | None,
                                     note: str | None) -> None:
    # energy per standard hour 3.3 kWh: below 3.5, above 3.2 -- the reference used decides the verdict
    r = tier_readiness(load_tiers(), "excellence",
                       values={"energy_per_standard_hour_kwh": obs(3.3, 3.25, 3.34)},
                       deltas={}, declared=d, coverage_min=0.8)
    energy = next(c for c in r.criteria if c.id == "energy")
    assert energy.threshold == threshold and energy.reference_value == threshold
    assert energy.reference_source == (f"declared.{item}" if item else None)
    assert energy.reference_note == note
    out = energy.as_dict()
    assert (out["reference_source"], out["reference_note"]) == (energy.reference_source, note)
    if item is None:
        assert energy.verdict == "insufficient_data" and energy.supplied == ()
        assert "(or declared.energy_benchmark)" in (energy.missing or "")
    else:
        assert energy.verdict == ("met" if threshold == 3.5 else "not_met")
        assert [s.item for s in energy.supplied] == [item]


def test_a_cost_delta_needs_both_windows() -> None:
    o = declared_observation(COST, declared(operating_cost=COSTS), current_periods=CUR_MONTHS)
    assert o is not None and o.value is None and "baseline and current windows" in (o.missing or "")


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["met", "met"], "met"),
        (["met", "point_estimate_only"], "point_estimate_only"),
        (["met", "point_estimate_only", "insufficient_data"], "insufficient_data"),
        (["met", "insufficient_data", "not_met", "point_estimate_only"], "not_met"),
        ([], "insufficient_data"),
    ],
)
def test_overall_verdict(verdicts: list[Verdict], overall: Verdict) -> None:
    assert overall_verdict(verdicts) == overall


# readiness over the shipped criteria file

FULL = declared(
    ai_scenarios=SCENARIOS,
    maturity=MAT,
    operating_cost=COSTS,
    energy_benchmark={**WHO, "value": 3.2, "unit": "kWh/standard h"},
    references={n: {**WHO, "value": v, "unit": "fraction"} for n, v in [
        ("provincial_networking_rate", 0.7), ("provincial_cnc_rate", 0.6),
        ("provincial_automation_rate", 0.5), ("provincial_efficiency_gain", 0.1)]},
)
VALUES = {
    "networking_rate": obs(0.95, 0.93, 0.97),
    "cnc_rate_key_equipment": obs(0.92, 0.91, 0.93),
    "automation_rate": obs(0.83, 0.78, 0.88),  # excellence: point estimate only
    "energy_per_standard_hour_kwh": obs(3.0, 2.9, 3.1),  # the energy criterion's figure since 2026-12-06.2
    "history_years": obs(1.2),
}
DELTAS = {
    "production_efficiency": obs(0.25, 0.21, 0.29),
    "defect_rate": obs(-0.45, -0.55, -0.35),
}


def test_excellence_readiness() -> None:
    tiers = load_tiers()
    r = tier_readiness(tiers, "excellence", values=VALUES, deltas=DELTAS, declared=FULL, coverage_min=0.8,
                       baseline_periods=BASE_MONTHS, current_periods=CUR_MONTHS)
    got = {(c.tier, c.id): c.verdict for c in r.criteria}
    assert got == {
        ("basic", "networking"): "met",
        ("basic", "cnc-rate"): "met",
        ("advanced", "automation"): "met",  # 0.78 >= the provincial 0.5
        ("advanced", "efficiency-gain"): "met",
        ("excellence", "cnc-rate"): "met",
        ("excellence", "automation"): "point_estimate_only",  # 0.78 < 0.80 <= 0.83
        ("excellence", "ai-scenarios"): "met",
        ("excellence", "efficiency-gain"): "met",
        ("excellence", "cost-reduction"): "met",
        ("excellence", "defect-reduction"): "met",
        ("excellence", "energy"): "met",  # high 3.1 <= the benchmark 3.2
        ("excellence", "maturity"): "met",
        # history_years is a point without an interval
        ("excellence", "stable-operation"): "point_estimate_only",
    }
    assert r.verdict == "point_estimate_only" and r.criteria_version == tiers.version
    energy = next(c for c in r.criteria if c.id == "energy")
    assert (energy.threshold, energy.reference_value) == (3.2, 3.2)
    assert energy.reference == "industry_energy_per_unit_kwh"
    # FULL declares only energy_benchmark: the criterion says so
    assert energy.supplied[0].item == "energy_benchmark"
    assert (energy.reference_source, energy.reference_note) == ("declared.energy_benchmark", None)
    out = json.loads(json.dumps(r.as_dict()))
    assert out["tier"] == "excellence" and out["verdict"] == "point_estimate_only"
    assert out["counts"] == {"met": 11, "point_estimate_only": 2, "insufficient_data": 0, "not_met": 0}
    assert out["criteria"][0]["interval"] == {"low": 0.93, "high": 0.97, "confidence": 0.95, "method": ""}


def test_readiness_names_what_is_missing() -> None:
    r = tier_readiness(load_tiers(), "excellence", values={"automation_rate": obs(0.5, 0.45, 0.55)},
                       deltas={}, declared=declared(), coverage_min=0.8)
    by = {(c.tier, c.id): c for c in r.criteria}
    assert r.verdict == "not_met"  # the automation rate misses 0.80 whatever else is missing
    assert by["excellence", "maturity"].missing == (
        "needs declared.maturity: level, assessor, assessed_on, supplied_by, supplied_at, source")
    assert by["basic", "networking"].missing == (
        "no networking_rate was computed for the window; needs declared.references."
        "provincial_networking_rate: value, unit, supplied_by, supplied_at, source")
    assert by["excellence", "energy"].missing is not None
    assert "(or declared.energy_benchmark)" in by["excellence", "energy"].missing
    assert by["excellence", "defect-reduction"].missing == (
        "no baseline→current delta of defect_rate was computed for the window")
    assert "baseline and current windows" in (by["excellence", "cost-reduction"].missing or "")
    r2 = tier_readiness(load_tiers(), "basic", values={}, deltas={}, declared=declared(), coverage_min=0.8)
    assert [c.id for c in r2.criteria] == ["networking", "cnc-rate"] and r2.verdict == "insufficient_data"


def test_leading_includes_every_earlier_tier() -> None:
    r = tier_readiness(load_tiers(), "leading", values=VALUES, deltas=DELTAS, declared=FULL, coverage_min=0.8,
                       baseline_periods=BASE_MONTHS, current_periods=CUR_MONTHS)
    tiers = list(dict.fromkeys(c.tier for c in r.criteria))
    assert tiers == ["basic", "advanced", "excellence", "leading"]
    assert r.criteria[-1].verdict == "not_met" and r.verdict == "not_met"  # 40 % of scenarios < 60 %
    with pytest.raises(ValueError, match="no tier"):
        tier_readiness(load_tiers(), "platinum", values={}, deltas={}, declared=FULL, coverage_min=0.8)
