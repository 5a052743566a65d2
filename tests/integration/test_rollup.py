"""A line's and the plant's KPIs are ratios of summed elements, never averages of ratios.

On the demo's store (its history backfilled into SQLite, as ``tierproof demo`` does), every
additive element of a roll-up equals the sum of its assets' elements, and every roll-up ratio
equals the ratio of those sums. The element names come from ``kpi.TimeElements`` at run time,
so an element added there is checked too (or must be listed as not additive).
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import Settings
from config.times import to_ns
from kpi import TimeElements
from simulators import Plant
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
#: roll-up elements that are not sums: the window is the window of each asset, kept once
NOT_ADDITIVE = frozenset({"window_s", "shared_pru_s"})  # the window; the PRU shared, if any


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


#: KPI -> how it follows from summed elements ``e`` (written out here, not taken from kpi/)
RATIO_OF_SUMS: dict[str, Any] = {
    "availability": lambda e: ratio(e["apt_s"], e["known_s"]),
    "effectiveness": lambda e: ratio(e["ideal_s"], e["apt_pru_s"]),
    "quality_ratio": lambda e: ratio(e["gq_plan"], e["pq_plan"]),
    "oee": lambda e: (e["apt_s"] / e["known_s"]) * (e["ideal_s"] / e["apt_pru_s"])
    * (e["gq_plan"] / e["pq_plan"]),
    "nee": lambda e: ((e["apt_s"] + e["asut_s"]) / e["known_s"])
    * (e["ideal_s"] / e["apt_pru_s"]) * (e["gq_plan"] / e["pq_plan"]),
    "technical_efficiency": lambda e: ratio(e["apt_s"], e["apt_s"] + e["adet_s"]),
    "setup_rate": lambda e: ratio(e["asut_s"], e["apt_s"] + e["asut_s"]),
    "scrap_ratio": lambda e: ratio(e["sq_plan"], e["pq_plan"]),
    # a roll-up of products with different PRUs has no raw throughput or energy per unit
    "throughput_per_h": lambda e: None,
    "automation_rate": lambda e: ratio(e["apt_auto_s"], e["apt_mode_known_s"]),
    "automation_coverage": lambda e: ratio(e["apt_mode_known_s"], e["apt_s"]),
    "energy_per_unit_kwh": lambda e: None,
    "coverage": lambda e: ratio(e["known_s"], e["pbt_s"]),
    "standard_output_rate": lambda e: ratio(e["std_gq_s"], e["std_busy_s"]),
    "energy_per_standard_hour_kwh": lambda e: ratio(e["energy_std_kwh"], e["energy_std_gq_s"] / 3600),
}


@pytest.fixture(scope="module")
def kpis(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Any]:
    """The service's KPIs of the demo's last week from a SQLite store holding its history."""
    store = SqliteStore(Path(tmp_path_factory.mktemp("rollup")) / "demo.db")
    try:
        tag_ids = store.register_tags(tag_records(settings))
        plant = Plant(settings, now=NOW)
        start = NOW - timedelta(days=7)
        for batch in plant.history_batches(tag_ids, to_ns(start - timedelta(hours=1)), to_ns(NOW)):
            store.write(batch)
        return KpiService(settings, store).kpis(start, NOW)
    finally:
        store.close()


def groups(settings: Settings) -> list[tuple[str, str | None, list[str]]]:
    """(scope, key, member assets) of every line and of the total."""
    lines = sorted({a.line for a in settings.assets})
    out: list[tuple[str, str | None, list[str]]] = [
        ("lines", line, [a.path for a in settings.assets if a.line == line]) for line in lines
    ]
    out.append(("total", None, [a.path for a in settings.assets]))
    return out


def test_roll_up_elements_are_sums(settings: Settings, kpis: dict[str, Any]) -> None:
    additive = [f.name for f in fields(TimeElements) if f.name not in NOT_ADDITIVE]
    assert len(groups(settings)) == 1 + len({a.line for a in settings.assets}) > 2
    for scope, key, members in groups(settings):
        node = kpis[scope][key] if key else kpis[scope]
        parts = [kpis["assets"][m]["elements"] for m in members]
        assert set(node["elements"]) == {f.name for f in fields(TimeElements)}
        for name in additive:
            assert node["elements"][name] == pytest.approx(sum(p[name] for p in parts),
                                                           rel=1e-12, abs=1e-9), (key, name)
        assert node["elements"]["units"] == len(members)
        assert node["elements"]["window_s"] == parts[0]["window_s"] == 7 * 86400


def test_roll_up_ratios_are_ratios_of_sums(settings: Settings, kpis: dict[str, Any]) -> None:
    for scope, key, members in groups(settings):
        node = kpis[scope][key] if key else kpis[scope]
        parts = [kpis["assets"][m]["elements"] for m in members]
        summed = {name: sum(p[name] for p in parts) for name in parts[0] if name not in NOT_ADDITIVE}
        # every KPI the service gives has its formula here
        assert set(RATIO_OF_SUMS) == {k for k in node if k != "elements"}
        for name, of in RATIO_OF_SUMS.items():
            want = of(summed)
            if want is None:  # every group of the demo mixes products with different PRUs
                assert node[name] is None and len({p["shared_pru_s"] for p in parts}) > 1, (key, name)
            else:
                assert node[name] == pytest.approx(want, rel=1e-12), (key, name)
        # and not the mean of the assets' ratios, a different number where the denominators
        # differ between assets (availability's and throughput's, the known PBT and the busy
        # time that fills it, are the same for every asset of one calendar: there the mean is
        # the ratio of sums)
        for name in ("effectiveness", "quality_ratio", "oee", "scrap_ratio",
                     "energy_per_standard_hour_kwh"):
            mean = sum(kpis["assets"][m][name] for m in members) / len(members)
            assert not math.isclose(node[name], mean, rel_tol=1e-9), (key, name)
