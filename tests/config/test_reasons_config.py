"""The reason tree (reasons:) and stop_reason tags: defaults, plant additions, and every bad
field named with its path and why."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError, settings_from_dict
from config.reasons import DEFAULT_REASONS, LOSS_TYPES

REASON_ENUM = {11: "mechanical_failure", 31: "jam", 50: "robot_gripper"}


def plant(reasons: dict[str, Any] | None = None, enum: Any = REASON_ENUM) -> dict[str, Any]:
    tag: dict[str, Any] = {"name": "reason", "asset": "s/a/l/m1", "role": "stop_reason",
                           "address": 4}
    if enum is not None:
        tag["enum"] = enum
    return {
        "assets": [{"path": "s/a/l/m1", "ideal_cycle_time_s": 30}],
        "devices": [{"protocol": "modbus", "name": "plc1", "host": "127.0.0.1", "port": 502,
                     "tags": [tag]}],
        "reasons": reasons if reasons is not None else {
            "small_stop_s": 120,
            "categories": [{"id": "robot", "label": "Robot cell", "loss_type": "breakdown"}],
            "reasons": [{"id": "robot_gripper", "label": "Gripper fault", "category": "robot"}],
        },
    }


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, "plant.yaml")
    # each problem is located as "<file>: <field path>"
    assert all(loc.startswith("plant.yaml: ") for loc, _ in info.value.problems)
    return {loc.removeprefix("plant.yaml: "): why for loc, why in info.value.problems}


def test_defaults_and_plant_additions() -> None:
    s = settings_from_dict(plant())
    tree = s.reasons.tree()
    assert tree.ids[:len(DEFAULT_REASONS)] == tuple(r.id for r in DEFAULT_REASONS)
    assert tree.loss_type("robot_gripper") == "breakdown"
    assert tree.loss_type("jam") == "small_stop" and tree.loss_type("changeover") == "changeover_setup"
    assert s.reasons.small_stop_s == 120
    assert {c.loss_type for c in tree.categories.values()} <= set(LOSS_TYPES)
    # without the tags' reasons nothing else is needed: the shipped tree is the default
    assert settings_from_dict({"assets": [{"path": "s/a/l/m1"}]}).reasons.tree().ids == tuple(
        r.id for r in DEFAULT_REASONS)


@pytest.mark.parametrize(("reasons", "enum", "path", "why"), [
    ({"reasons": [{"id": "x", "category": "nowhere"}]}, {1: "x"},
     "reasons.reasons[0].category", "no category 'nowhere'"),
    ({"reasons": [{"id": "jam", "category": "minor"}]}, {1: "jam"},
     "reasons.reasons[0].id", "'jam' is already a reason"),
    ({"reasons": [{"id": "unassigned", "category": "minor"}]}, {1: "jam"},
     "reasons.reasons[0].id", "reserved"),
    ({"categories": [{"id": "minor", "loss_type": "small_stop"}]}, {1: "jam"},
     "reasons.categories[0].id", "'minor' is already a category"),
    ({}, {1: "gremlins"}, "devices[0].tags[0].enum.1", "no reason 'gremlins'"),
    ({"defaults": False}, {1: "jam"}, "devices[0].tags[0].enum.1", "no reason 'jam'"),
    ({}, None, "devices[0].tags[0].enum", "a stop_reason tag needs enum"),
])
def test_bad_trees_are_named_by_field_path(reasons: dict[str, Any], enum: Any, path: str,
                                           why: str) -> None:
    got = problems(plant(reasons, enum))
    assert path in got, got
    assert why in got[path]


@pytest.mark.parametrize(("field", "value", "where"), [
    ("categories", [{"id": "c", "loss_type": "coffee_break"}], "reasons.categories[0].loss_type"),
    ("small_stop_s", 0, "reasons.small_stop_s"),
    ("reasons", [{"id": "bad id!", "category": "minor"}], "reasons.reasons[0].id"),
])
def test_bad_fields_are_named(field: str, value: Any, where: str) -> None:
    got = problems(plant({field: value}))
    assert where in got, got


def test_a_canonical_role_keeps_its_names() -> None:
    data = plant({})
    data["devices"][0]["tags"][0].update(role="state", enum={0: "jam"})
    got = problems(data)
    assert any("jam" in why and "state" in why for why in got.values()), got
