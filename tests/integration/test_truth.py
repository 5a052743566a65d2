"""KPIs computed from the store equal the simulator's ground truth (within 0.1 percentage point).

The simulated plant's history for a fast-forwarded week and a half is written to a real SQLite
store as report-by-exception samples; the KPI service reads it back like any stored data and
must agree with the truth the simulator computes straight from its own timeline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import load_settings, shipped_config
from config.times import to_ns
from simulators import Plant
from simulators.truth import truth
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
RATIOS = ("availability", "effectiveness", "quality_ratio", "oee", "automation_rate")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[KpiService, Plant]:
    settings = load_settings(shipped_config("demo.yaml"))
    db = Path(tmp_path_factory.mktemp("truth")) / "truth.db"
    store = SqliteStore(db)
    tag_ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    start = NOW - timedelta(days=10)
    for batch in plant.history_batches(tag_ids, to_ns(start), to_ns(NOW)):
        store.write(batch)
    return KpiService(settings, store), plant


@pytest.mark.parametrize(
    "window",
    [
        (timedelta(days=7), timedelta(0)),  # the current week, across the regime change
        (timedelta(days=9, hours=5), timedelta(days=2, hours=3, minutes=7)),  # odd edges
        (timedelta(hours=30), timedelta(hours=6)),  # a day and a bit
    ],
    ids=["week", "odd-edges", "30h"],
)
def test_kpis_from_store_equal_ground_truth(
    stored: tuple[KpiService, Plant], window: tuple[timedelta, timedelta]
) -> None:
    service, plant = stored
    start, end = NOW - window[0], NOW - window[1]
    got = service.kpis(start, end)
    want = truth(service.settings, start, end, plant=plant)
    assert set(got["assets"]) == set(want["assets"]) and len(got["assets"]) == 11
    for scope in ("assets", "lines"):
        for path, exp in want[scope].items():
            act = got[scope][path]
            assert act["elements"]["pq"] == exp["pq"], (path, "pq")
            assert act["elements"]["gq"] == exp["gq"], (path, "gq")
            # each increase attributed to the time it happened in: the demo's parts are all
            # made in planned busy time, with no unknown time
            for q in ("pq_plan", "gq_plan", "pq_outside_plan"):
                assert act["elements"][q] == pytest.approx(exp[q], abs=1e-6), (path, q)
            assert act["elements"]["pq_unattributed"] == pytest.approx(0, abs=1e-6)
            assert act["elements"]["pbt_s"] == pytest.approx(exp["pbt_s"], abs=1e-6)
            # ADET holds failures and minor stops, the minor stops reported apart as well
            for mine, theirs in (("apt_s", "apt_s"), ("asut_s", "asut_s"), ("adet_s", "adet_s"),
                                 ("idle_s", "minor_stop_s")):
                assert act["elements"][mine] == pytest.approx(exp[theirs], abs=1e-3), (path, mine)
            for k in RATIOS:
                assert exp[k] is not None and 0 < exp[k] <= 1.5, (path, k, exp[k])
                assert act[k] == pytest.approx(exp[k], abs=0.001), (path, k)
            assert act["coverage"] == pytest.approx(1.0)
            assert act["automation_coverage"] == pytest.approx(1.0)  # every channel known
    for k in RATIOS:
        assert got["total"][k] == pytest.approx(want["plant"][k], abs=0.001), k


def test_improved_regime_shows_in_kpis(stored: tuple[KpiService, Plant]) -> None:
    """The current week (improved regime) beats the baseline week by a clear margin."""
    service, _ = stored
    cur = service.kpis(NOW - timedelta(days=3), NOW)["total"]
    base = service.kpis(NOW - timedelta(days=10), NOW - timedelta(days=8))["total"]
    assert cur["oee"] > base["oee"] + 0.03
    assert cur["scrap_ratio"] < base["scrap_ratio"]


def test_asset_without_pru_is_left_out_of_effectiveness(stored: tuple[KpiService, Plant]) -> None:
    """An asset without ideal_cycle_time_s has no effectiveness or OEE; its line's effectiveness
    is that of the others, pipeline and truth alike, and the line counts the one left out."""
    service, plant = stored
    settings = service.settings
    first = settings.assets[0]
    assets = [first.model_copy(update={"ideal_cycle_time_s": None}), *settings.assets[1:]]
    s = settings.model_copy(update={"assets": assets})
    start, end = NOW - timedelta(hours=30), NOW - timedelta(hours=6)
    got = KpiService(s, service.store).kpis(start, end)
    want = truth(s, start, end, plant=plant)
    assert got["assets"][first.path]["effectiveness"] is None
    assert got["assets"][first.path]["oee"] is None
    assert want["assets"][first.path]["effectiveness"] is None
    line = got["lines"][first.line]
    assert line["elements"]["units_without_pru"] == want["lines"][first.line]["units_without_pru"] == 1
    assert got["total"]["elements"]["units_without_pru"] == 1
    others = [got["assets"][a.path]["elements"] for a in assets[1:] if a.line == first.line]
    assert line["effectiveness"] == pytest.approx(
        sum(e["ideal_s"] for e in others) / sum(e["apt_s"] for e in others)
    )
    for scope, path in (("lines", first.line), ("total", None)):
        act = got[scope][path] if path else got["total"]
        exp = want[scope][path] if path else want["plant"]
        for k in ("availability", "effectiveness", "oee"):
            assert act[k] == pytest.approx(exp[k], abs=0.001), (scope, k)


def test_standard_weighted_roll_ups_equal_ground_truth(stored: tuple[KpiService, Plant]) -> None:
    """Lines and the plant mix products of different PRU: their standard output rate and energy
    per standard hour equal what the truth's per-asset elements give, weighted by PRU; their raw
    throughput and energy per unit are not reported. (The truth has no standard-time fields
    yet, so the weighting is done here from its per-asset quantities.)"""
    service, plant = stored
    start, end = NOW - timedelta(days=7), NOW
    got = service.kpis(start, end)
    want = truth(service.settings, start, end, plant=plant)
    pru = {a.path: a.ideal_cycle_time_s for a in service.settings.assets}
    assert len(set(pru.values())) > 2  # the demo's machines make different products

    def expected(paths: list[str]) -> tuple[float, float]:
        e = [want["assets"][p] for p in paths]
        std_plan = sum(pru[p] * x["gq_plan"] for p, x in zip(paths, e, strict=True))
        busy = sum(x["apt_s"] + x["asut_s"] + x["adet_s"] for x in e)
        std_all = sum(pru[p] * x["gq"] for p, x in zip(paths, e, strict=True))
        return std_plan / busy, sum(x["energy_kwh"] for x in e) / (std_all / 3600)

    lines: dict[str, list[str]] = {}
    for a in service.settings.assets:
        lines.setdefault(a.line, []).append(a.path)
    scopes = [(got["lines"][line], paths) for line, paths in lines.items()]
    scopes.append((got["total"], list(pru)))
    scopes += [(got["assets"][p], [p]) for p in pru]
    for act, paths in scopes:
        rate, energy = expected(paths)
        assert act["standard_output_rate"] == pytest.approx(rate, rel=1e-3), paths
        assert act["energy_per_standard_hour_kwh"] == pytest.approx(energy, rel=1e-3), paths
        if len(paths) > 1:  # every line of the demo mixes PRUs
            assert act["throughput_per_h"] is None and act["energy_per_unit_kwh"] is None
        else:
            x = want["assets"][paths[0]]
            assert act["energy_per_unit_kwh"] == pytest.approx(x["energy_per_unit"], rel=1e-3)
