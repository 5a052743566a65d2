"""Declared evidence: what telemetry cannot show, supplied by a person or another system.

An auditor weighs a declared figure by who supplied it, when, and from what, so every item
carries ``supplied_by``, ``supplied_at`` and ``source`` (a document, an ERP report, an
assessment's reference). tierproof never computes these; it shows them beside the measured
figures, labelled ``declared``:

- ``ai_scenarios``: the inventory of the factory's scenarios and which apply AI (their share
  is a tier criterion);
- ``maturity``: the GB/T 39116 capability maturity level (1-5) with its assessor and date;
- ``operating_cost`` and ``labour_hours``: one figure per period (a calendar month
  ``YYYY-MM``), for the cost delta and the output per labour hour;
- ``energy_benchmark``: the industry's energy per unit of output, to compare against, in kWh
  per standard hour of good output (``kWh/standard h``: the assessment refuses another unit);
- ``emission_factor``: kg CO2 per kWh, for carbon per unit;
- ``references``: named reference values (the province's industry averages that the basic and
  advanced tiers are relative to; names as ``config/tiers.yaml`` refers to them).
"""

from __future__ import annotations

import re
from datetime import date

from pydantic import Field, field_validator, model_validator

from .base import Model, Name

__all__ = [
    "AiScenario",
    "Declared",
    "DeclaredItem",
    "DeclaredValue",
    "Maturity",
    "PeriodAmount",
]

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class DeclaredItem(Model):
    """Who supplied a declared figure, when, and from what."""

    supplied_by: str = Field(min_length=1, description="person or system that supplied it")
    supplied_at: date = Field(description="when it was supplied")
    source: str = Field(min_length=1, description="the document, report or system it comes from")


class AiScenario(Model):
    name: str = Field(min_length=1)
    applies_ai: bool
    description: str = ""


class AiScenarios(DeclaredItem):
    scenarios: list[AiScenario] = Field(min_length=1)

    @property
    def share(self) -> float:
        return sum(s.applies_ai for s in self.scenarios) / len(self.scenarios)

    @model_validator(mode="after")
    def _unique(self) -> AiScenarios:
        names = [s.name for s in self.scenarios]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"scenario names must be unique: {dup}")
        return self


class Maturity(DeclaredItem):
    level: int = Field(ge=1, le=5, description="GB/T 39116 level: 1 planning ... 5 leading")
    assessor: str = Field(min_length=1)
    assessed_on: date
    report: str = Field(default="", description="the assessment report's reference")


class PeriodAmount(DeclaredItem):
    period: str = Field(description="calendar month YYYY-MM")
    amount: float = Field(ge=0)
    unit: str = Field(min_length=1, description="e.g. CNY, h")

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if not _PERIOD.match(v):
            raise ValueError(f"{v!r} is not a calendar month YYYY-MM")
        return v


class DeclaredValue(DeclaredItem):
    value: float
    unit: str = Field(min_length=1)


class Declared(Model):
    """The ``declared:`` section of a configuration."""

    ai_scenarios: AiScenarios | None = None
    maturity: Maturity | None = None
    operating_cost: list[PeriodAmount] = Field(default_factory=list)
    labour_hours: list[PeriodAmount] = Field(default_factory=list)
    energy_benchmark: DeclaredValue | None = None
    emission_factor: DeclaredValue | None = None
    references: dict[Name, DeclaredValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_per_period(self) -> Declared:
        for field in ("operating_cost", "labour_hours"):
            periods = [p.period for p in getattr(self, field)]
            dup = sorted({p for p in periods if periods.count(p) > 1})
            if dup:
                raise ValueError(f"{field}: one figure per period, {dup} given twice")
        return self
