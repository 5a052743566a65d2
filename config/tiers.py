"""Tier criteria: what each smart-factory tier asks for, as a versioned, sourced file.

The shipped criteria (``config/tiers.yaml``) come from the sources it names; the official
"Elements and Conditions" text was not available, so every threshold carries its source, and
every assessment records the file's ``version``. A plant may pass its own file.

A criterion compares one figure with a threshold in a ``direction``:

- ``measure: value`` -- the figure over the current window (e.g. automation rate >= 0.80);
- ``measure: delta`` -- its relative change from the baseline window,
  ``current / baseline - 1`` (e.g. defect rate <= -0.30: at least 30 % lower);
- ``measure: years`` -- how long the history held covers (stable operation >= 1 year).

The threshold is a number, or ``reference: NAME`` times ``factor``: a reference value the
user supplies as declared evidence (basic and advanced tiers are relative to the provincial
industry average; energy per unit to the industry's benchmark). ``kind`` says whether the
figure is measured from telemetry or declared by someone (a register, ERP, an assessor).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Model, Name

__all__ = [
    "DECLARED_ITEMS",
    "MEASURED_FIGURES",
    "TIER_NAMES",
    "Criterion",
    "Tier",
    "TierCriteria",
    "tiers_cross_check",
]

TIER_NAMES = ("basic", "advanced", "excellence", "leading")
TierName = Literal["basic", "advanced", "excellence", "leading"]

#: figures tierproof computes from telemetry (names as /api/v1/kpis gives them)
MEASURED_FIGURES = frozenset({
    "availability", "effectiveness", "quality_ratio", "oee", "automation_rate",
    "automation_rate_units", "cnc_rate_key_equipment", "networking_rate",
    "production_efficiency", "production_efficiency_labour", "defect_rate",
    "energy_per_standard_hour_kwh", "energy_per_unit_kwh", "carbon_per_standard_hour_kg",
    "carbon_per_unit_kg", "history_years",
})
#: figures only a person or another system can supply (declared evidence)
DECLARED_ITEMS = frozenset({
    "ai_scenario_share", "maturity_level", "operating_cost", "labour_hours",
    "cnc_rate_key_equipment_declared",
})


class Criterion(Model):
    """One requirement of a tier."""

    id: Name = Field(description="stable identifier, unique within its tier")
    title: str = Field(min_length=1)
    figure: str = Field(description="what is compared: a measured figure or a declared item")
    kind: Literal["measured", "declared"]
    measure: Literal["value", "delta", "years"] = "value"
    direction: Literal[">=", "<="]
    threshold: float | None = None
    reference: Name | None = Field(
        default=None, description="a user-supplied reference value; threshold = reference x factor")
    factor: float = Field(default=1.0, gt=0)
    source: str = Field(description="key into the file's sources")
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Criterion:
        if (self.threshold is None) == (self.reference is None):
            raise ValueError("give exactly one of threshold and reference")
        known = MEASURED_FIGURES if self.kind == "measured" else DECLARED_ITEMS
        if self.figure not in known:
            raise ValueError(f"{self.kind} figure {self.figure!r} is not one of {sorted(known)}")
        if self.measure == "years" and self.figure != "history_years":
            raise ValueError("measure years is for the figure history_years")
        return self


class Tier(Model):
    name: TierName
    includes: list[TierName] = Field(
        default_factory=list, description="tiers whose criteria this one also requires")
    criteria: list[Criterion] = Field(min_length=1)


class TierCriteria(Model):
    """The whole criteria file."""

    version: str = Field(min_length=1, description="recorded with every assessment")
    sources: dict[str, str] = Field(min_length=1, description="key -> where the numbers come from")
    tiers: list[Tier] = Field(min_length=1)


def tiers_cross_check(c: TierCriteria) -> list[tuple[str, str]]:
    """Checks across fields: sources exist, ids unique per tier, includes name earlier tiers."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for ti, tier in enumerate(c.tiers):
        if tier.name in seen:
            problems.append((f"tiers[{ti}].name", f"duplicate of tiers[{seen[tier.name]}]"))
        for inc in tier.includes:
            if inc not in seen:
                problems.append((f"tiers[{ti}].includes",
                                 f"{inc!r} must be a tier listed before {tier.name!r}"))
        seen.setdefault(tier.name, ti)
        ids: dict[str, int] = {}
        for ci, cr in enumerate(tier.criteria):
            loc = f"tiers[{ti}].criteria[{ci}]"
            if cr.id in ids:
                problems.append((f"{loc}.id", f"duplicate of criteria[{ids[cr.id]}]"))
            ids.setdefault(cr.id, ci)
            if cr.source not in c.sources:
                problems.append((f"{loc}.source", f"no source {cr.source!r} in sources"))
    return problems
