"""The tier criteria file: the shipped one loads with the numbers its sources state, and a bad
file names the file, the field path and the reason of every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from config import ConfigError, load_tiers, shipped_config


def test_shipped_criteria_state_the_sources_numbers() -> None:
    c = load_tiers()
    assert c.version
    tiers = {t.name: t for t in c.tiers}
    assert list(tiers) == ["basic", "advanced", "excellence", "leading"]
    ex = {cr.id: cr for cr in tiers["excellence"].criteria}
    # 003 (the practitioner's guide quoting the 2025 Elements and Conditions)
    assert (ex["cnc-rate"].direction, ex["cnc-rate"].threshold) == (">=", 0.90)
    assert (ex["automation"].direction, ex["automation"].threshold) == (">=", 0.80)
    assert (ex["ai-scenarios"].kind, ex["ai-scenarios"].threshold) == ("declared", 0.20)
    assert (ex["efficiency-gain"].measure, ex["efficiency-gain"].threshold) == ("delta", 0.20)
    assert (ex["cost-reduction"].direction, ex["cost-reduction"].threshold) == ("<=", -0.15)
    assert (ex["defect-reduction"].direction, ex["defect-reduction"].threshold) == ("<=", -0.30)
    assert ex["energy"].reference == "industry_energy_per_unit_kwh"
    assert (ex["maturity"].kind, ex["maturity"].threshold) == ("declared", 3)
    assert (ex["stable-operation"].measure, ex["stable-operation"].threshold) == ("years", 1)
    assert {cr.id: cr.threshold for cr in tiers["leading"].criteria} == {"ai-scenarios": 0.60}
    # basic and advanced are relative to provincial values the user supplies
    assert all(cr.reference and cr.threshold is None
               for t in ("basic", "advanced") for cr in tiers[t].criteria)
    assert tiers["excellence"].includes == ["basic", "advanced"]


def broken(tmp_path: Path, change: Any) -> list[tuple[str, str]]:
    data = yaml.safe_load(shipped_config("tiers.yaml").read_text())
    change(data)
    p = tmp_path / "tiers.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_tiers(p)
    return [(loc.removeprefix(f"{p}: "), why) for loc, why in info.value.problems]


def crit(data: dict[str, Any], tier: int, i: int) -> dict[str, Any]:
    c: dict[str, Any] = data["tiers"][tier]["criteria"][i]
    return c


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: crit(d, 2, 0).update(figure="cnc_rate"),
     ("tiers[2].criteria[0]", "measured figure 'cnc_rate' is not one of")),
    (lambda d: crit(d, 2, 0).update(reference="x"),
     ("tiers[2].criteria[0]", "give exactly one of threshold and reference")),
    (lambda d: crit(d, 2, 1).update(direction=">"),
     ("tiers[2].criteria[1].direction", "Input should be '>=' or '<='")),
    (lambda d: crit(d, 2, 2).update(source="nowhere"),
     ("tiers[2].criteria[2].source", "no source 'nowhere' in sources")),
    (lambda d: crit(d, 2, 3).update(id="cnc-rate"),
     ("tiers[2].criteria[3].id", "duplicate of criteria[0]")),
    (lambda d: d["tiers"][0].update(includes=["leading"]),
     ("tiers[0].includes", "'leading' must be a tier listed before 'basic'")),
    (lambda d: crit(d, 2, 0).update(treshold=0.9),
     ("tiers[2].criteria[0].treshold", "unknown field (check its spelling)")),
])
def test_a_bad_file_names_field_and_reason(tmp_path: Path, change: Any, expected: tuple[str, str]) -> None:
    problems = broken(tmp_path, change)
    assert any(loc == expected[0] and why.startswith(expected[1]) for loc, why in problems), problems
