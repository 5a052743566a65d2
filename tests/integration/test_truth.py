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
            assert act["elements"]["pbt_s"] == pytest.approx(exp["pbt_s"], abs=1e-6)
            for k in RATIOS:
                assert exp[k] is not None and 0 < exp[k] <= 1.5, (path, k, exp[k])
                assert act[k] == pytest.approx(exp[k], abs=0.001), (path, k)
            assert act["coverage"] == pytest.approx(1.0)
    for k in RATIOS:
        assert got["total"][k] == pytest.approx(want["plant"][k], abs=0.001), k


def test_improved_regime_shows_in_kpis(stored: tuple[KpiService, Plant]) -> None:
    """The current week (improved regime) beats the baseline week by a clear margin."""
    service, _ = stored
    cur = service.kpis(NOW - timedelta(days=3), NOW)["total"]
    base = service.kpis(NOW - timedelta(days=10), NOW - timedelta(days=8))["total"]
    assert cur["oee"] > base["oee"] + 0.03
    assert cur["scrap_ratio"] < base["scrap_ratio"]
