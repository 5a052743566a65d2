"""The declared-evidence section: every item says who supplied it, when and from what; a bad
item names its field path and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError, settings_from_dict

WHO = {"supplied_by": "li.wei@plant.example", "supplied_at": "2026-12-01", "source": "ERP report FI-12"}


def declared(**items: Any) -> dict[str, Any]:
    return {"declared": items}


def test_a_full_section_loads() -> None:
    s = settings_from_dict(declared(
        ai_scenarios={**WHO, "scenarios": [
            {"name": "visual inspection", "applies_ai": True},
            {"name": "predictive maintenance", "applies_ai": True},
            {"name": "scheduling", "applies_ai": False},
            {"name": "energy management", "applies_ai": False},
            {"name": "warehouse", "applies_ai": False},
        ]},
        maturity={**WHO, "level": 3, "assessor": "CESI", "assessed_on": "2026-05-20",
                  "report": "CMMM-2026-0412"},
        operating_cost=[{**WHO, "period": "2026-10", "amount": 1.25e6, "unit": "CNY"},
                        {**WHO, "period": "2026-11", "amount": 1.10e6, "unit": "CNY"}],
        labour_hours=[{**WHO, "period": "2026-11", "amount": 12_400, "unit": "h"}],
        energy_benchmark={**WHO, "value": 3.2, "unit": "kWh/unit"},
        emission_factor={**WHO, "value": 0.5366, "unit": "kg CO2/kWh"},
        references={"provincial_automation_rate": {**WHO, "value": 0.62, "unit": "fraction"}},
    ))
    d = s.declared
    assert d.ai_scenarios is not None and d.ai_scenarios.share == 2 / 5
    assert d.maturity is not None and d.maturity.level == 3
    assert [p.period for p in d.operating_cost] == ["2026-10", "2026-11"]
    assert d.references["provincial_automation_rate"].value == 0.62
    assert d.emission_factor is not None and d.emission_factor.source == "ERP report FI-12"


def test_nothing_declared_is_the_default() -> None:
    d = settings_from_dict({}).declared
    assert d.ai_scenarios is None and d.maturity is None and d.labour_hours == [] and d.references == {}


@pytest.mark.parametrize(("items", "loc", "reason"), [
    ({"maturity": {"level": 3, "assessor": "CESI", "assessed_on": "2026-05-20"}},
     "declared.maturity.supplied_by", "Field required"),
    ({"maturity": {**WHO, "level": 6, "assessor": "CESI", "assessed_on": "2026-05-20"}},
     "declared.maturity.level", "Input should be less than or equal to 5"),
    ({"labour_hours": [{**WHO, "period": "2026-13", "amount": 1, "unit": "h"}]},
     "declared.labour_hours[0].period", "'2026-13' is not a calendar month YYYY-MM"),
    ({"labour_hours": [{**WHO, "period": "2026-11", "amount": 1, "unit": "h"}] * 2},
     "declared", "labour_hours: one figure per period, ['2026-11'] given twice"),
    ({"ai_scenarios": {**WHO, "scenarios": []}},
     "declared.ai_scenarios.scenarios", "List should have at least 1 item after validation, not 0"),
    ({"emission_factor": {**WHO, "value": 0.5}},
     "declared.emission_factor.unit", "Field required"),
])
def test_a_bad_item_names_its_field(items: dict[str, Any], loc: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(declared(**items))
    assert (f"<config>: {loc}", reason) in info.value.problems, info.value.problems
