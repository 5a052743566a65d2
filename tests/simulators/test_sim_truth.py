"""Ground truth: invariants, roll-ups as sums, and the regimes moving KPIs the right way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config import Settings
from config.settings import SimulationSettings
from simulators import Plant, truth, write_truth

NOW = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
ADDITIVE = ("pbt_s", "known_s", "apt_s", "asut_s", "adet_s", "idle_s", "apt_auto_s",
            "apt_mode_known_s", "pq", "gq", "sq", "pq_plan", "gq_plan", "sq_plan", "energy_kwh",
            "ideal_s", "apt_pru_s", "units")
RATIOS = ("availability", "effectiveness", "quality_ratio", "oee", "automation_rate",
          "scrap_ratio", "energy_per_unit_kwh")


# the demo's windows (kpi.current and kpi.baseline): two weeks after its improvement_at
# (now-14d), in the improved regime, and the two weeks before, in the baseline regime
@pytest.fixture(scope="module")
def current(settings: Settings, plant: Plant) -> dict[str, Any]:
    return truth(settings, "now-14d", "now", plant=plant)


@pytest.fixture(scope="module")
def baseline(settings: Settings, plant: Plant) -> dict[str, Any]:
    return truth(settings, "now-28d", "now-14d", plant=plant)


def flat(node: dict[str, Any]) -> dict[str, Any]:
    """One entry's KPIs and elements in one dict (their names never clash)."""
    out = {k: v for k, v in node.items() if k != "elements"}
    assert not set(out) & set(node["elements"])
    return {**out, **node["elements"]}


def every_node(t: dict[str, Any]) -> list[dict[str, Any]]:
    return [flat(n) for n in (*t["assets"].values(), *t["lines"].values(), t["total"])]


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_shape(settings: Settings, current: dict[str, Any]) -> None:
    assert set(current) == {"window", "assets", "lines", "total"}
    assert current["window"] == {"from": z(NOW - timedelta(days=14)), "to": z(NOW)}
    assert set(current["assets"]) == {a.path for a in settings.assets}
    assert set(current["lines"]) == {a.line for a in settings.assets}
    for node in every_node(current):
        assert set(ADDITIVE) | set(RATIOS) <= set(node)
        # the model knows every instant, channel and part
        assert node["coverage"] == pytest.approx(1.0) and node["automation_coverage"] == 1.0
        assert node["pq_unattributed"] == 0 and node["pq_known"] == node["units"]


def test_time_elements_partition_planned_busy_time(current: dict[str, Any]) -> None:
    for node in every_node(current):
        assert 0 < node["apt_s"] <= node["pbt_s"]
        assert node["apt_auto_s"] <= node["apt_s"]
        # inside PBT a machine is always producing, in setup, failed or in a minor stop; ADET
        # holds the failures and the minor stops (ISO 22400-2 unit delays)
        parts = node["apt_s"] + node["asut_s"] + node["adet_s"]
        assert parts == pytest.approx(node["pbt_s"], rel=1e-9)
        assert 0 < node["idle_s"] < node["adet_s"]  # idle_s: the minor stops
        assert node["known_s"] == pytest.approx(node["pbt_s"], rel=1e-9)
        assert node["pq"] == node["gq"] + node["sq"] > 0
        assert 0 < node["availability"] <= 1
        assert 0 < node["quality_ratio"] <= 1
        assert node["oee"] == pytest.approx(
            node["availability"] * node["effectiveness"] * node["quality_ratio"]
        )
        assert node["scrap_ratio"] == pytest.approx(1 - node["quality_ratio"])


def test_planned_busy_time_follows_the_calendar(settings: Settings, plant: Plant) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    monday = datetime(2026, 11, 16, tzinfo=tz)  # a Monday
    t = truth(settings, monday, monday + timedelta(days=1), plant=plant)
    # 06:00-22:00 minus breaks of 10, 30 and 15 minutes
    assert t["assets"]["demo/machining/line1/lathe-01"]["elements"]["pbt_s"] == 16 * 3600 - 55 * 60
    sunday = monday - timedelta(days=1)
    t = truth(settings, sunday, monday, plant=plant)
    node = flat(t["assets"]["demo/machining/line1/lathe-01"])
    assert node["pbt_s"] == 0 and node["pq"] == 0
    assert node["availability"] is None and node["energy_kwh"] > 0  # standby power
    assert node["coverage"] is None  # no planned time to cover


def test_roll_ups_sum_elements_then_divide(settings: Settings, current: dict[str, Any]) -> None:
    for line, entry in current["lines"].items():
        node = flat(entry)
        members = [flat(current["assets"][a.path]) for a in settings.assets if a.line == line]
        for key in ADDITIVE:
            assert node[key] == pytest.approx(sum(m[key] for m in members))
        assert node["window_s"] == members[0]["window_s"] == 14 * 86400  # kept, not summed
        assert node["effectiveness"] == pytest.approx(
            sum(m["ideal_s"] for m in members) / sum(m["apt_s"] for m in members)
        )
        assert node["availability"] == pytest.approx(node["apt_s"] / node["pbt_s"])
    total = flat(current["total"])
    lines = [flat(n) for n in current["lines"].values()]
    for key in ADDITIVE:
        assert total[key] == pytest.approx(sum(n[key] for n in lines))
    assert total["units"] == len(settings.assets)
    # a ratio of sums is not the mean of ratios (PQ differs a lot between machines)
    assets = [flat(n) for n in current["assets"].values()]
    mean = sum(n["quality_ratio"] for n in assets) / len(settings.assets)
    assert total["quality_ratio"] == pytest.approx(total["gq_plan"] / total["pq_plan"])
    assert total["quality_ratio"] != pytest.approx(mean, rel=1e-6)


def test_kpis_match_the_regime(plant: Plant, current: dict[str, Any]) -> None:
    for asset, node in current["assets"].items():
        b = plant.model(asset).improved
        # parts come every ideal/speed seconds of APT: effectiveness is the speed
        assert node["effectiveness"] == pytest.approx(b.speed, abs=0.01)
        assert node["scrap_ratio"] == pytest.approx(b.defect_rate, abs=0.01)


def test_improved_regime_is_better(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    for path in [*current["assets"], "total"]:
        before = baseline["total"] if path == "total" else baseline["assets"][path]
        after = current["total"] if path == "total" else current["assets"][path]
        for key in ("availability", "effectiveness", "quality_ratio", "oee", "automation_rate"):
            assert after[key] > before[key], (path, key)
        for key in ("scrap_ratio", "energy_per_standard_hour_kwh"):
            assert after[key] < before[key], (path, key)
    # the demo is built to clear the excellence thresholds
    assert current["total"]["scrap_ratio"] <= 0.7 * baseline["total"]["scrap_ratio"]
    assert current["total"]["elements"]["gq"] >= 1.2 * baseline["total"]["elements"]["gq"]
    assert current["total"]["automation_rate"] >= 0.8


def test_default_regimes_also_improve(settings: Settings) -> None:
    s = settings.model_copy(update={"simulation": SimulationSettings()})
    p = Plant(s, now=NOW)
    before = truth(s, "now-14d", "now-7d", plant=p)["total"]
    after = truth(s, "now-7d", "now", plant=p)["total"]
    assert after["oee"] > before["oee"]
    assert after["scrap_ratio"] < before["scrap_ratio"]


def test_unknown_pru_gives_no_effectiveness(settings: Settings) -> None:
    assets = [settings.assets[0].model_copy(update={"ideal_cycle_time_s": None}),
              *settings.assets[1:]]
    s = settings.model_copy(update={"assets": assets})
    t = truth(s, "now-1d", "now", plant=Plant(s, now=NOW))
    assert t["assets"][assets[0].path]["effectiveness"] is None
    assert t["assets"][assets[0].path]["oee"] is None
    assert t["assets"][assets[0].path]["nee"] is None
    assert t["assets"][assets[0].path]["elements"]["pq"] > 0  # still produces, at a default cycle
    # the line leaves it out of its effectiveness (and counts it), instead of dragging it down
    line1 = flat(t["lines"]["demo/machining/line1"])
    others = [flat(t["assets"][a.path]) for a in assets[1:] if a.line == "demo/machining/line1"]
    assert line1["units_without_pru"] == 1 and t["total"]["elements"]["units_without_pru"] == 1
    assert line1["effectiveness"] == pytest.approx(
        sum(m["ideal_s"] for m in others) / sum(m["apt_s"] for m in others)
    )
    assert t["lines"]["demo/machining/line2"]["elements"]["units_without_pru"] == 0


def test_write_truth_writes_the_current_window(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "truth.json"
    data = write_truth(settings, out, now=NOW)
    loaded = json.loads(out.read_text())
    assert loaded == json.loads(json.dumps(data))
    start, end = settings.kpi.current.resolve(NOW)
    assert loaded["window"] == {"from": z(start), "to": z(end)}
    assert loaded == json.loads(json.dumps(truth(settings, start, end, now=NOW)))
    base = write_truth(settings, tmp_path / "b.json", now=NOW, window="baseline")
    assert base["window"] == {"from": z(NOW - timedelta(days=28)), "to": z(NOW - timedelta(days=14))}
