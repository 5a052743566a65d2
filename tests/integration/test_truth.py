"""KPIs computed from the store equal the simulator's ground truth (within 0.1 percentage point).

The simulated plant's history for a fast-forwarded week and a half is written to a real SQLite
store as report-by-exception samples; the KPI service reads it back like any stored data and
must agree with the truth the simulator computes straight from its own timeline.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import settings_from_dict
from config.times import to_ns
from kpi import Kpis, TimeElements
from simulators import Plant
from simulators.truth import NOT_GIVEN, truth
from store.sqlite import SqliteStore
from tests.helpers import one_week_demo

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
RATIOS = ("availability", "effectiveness", "quality_ratio", "oee", "automation_rate")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[KpiService, Plant]:
    # the demo plant as it was with one-week windows, improved a week before NOW: the week and
    # a half stored holds both regimes and the change between them (the shipped demo improves
    # two weeks before its now); the windows below are this test's own
    data = one_week_demo()
    settings = settings_from_dict(data, "demo.yaml, improved a week ago")
    db = Path(tmp_path_factory.mktemp("truth")) / "truth.db"
    store = SqliteStore(db)
    tag_ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    start = NOW - timedelta(days=10)
    for batch in plant.history_batches(tag_ids, to_ns(start), to_ns(NOW)):
        store.write(batch)
    return KpiService(settings, store), plant


def meter_slack(plant: Plant, prefix: str) -> float:
    """kWh of 60 s at the highest power at both window edges, summed over the assets under
    ``prefix`` (an asset, a line, or "" for all)."""
    return sum(2 * 60 / 3600 * max(m.baseline.power_run_kw, m.improved.power_run_kw)
               for path, m in plant.models.items() if path.startswith(prefix))


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
    assert got["window"] == want["window"]
    assert set(got["assets"]) == set(want["assets"]) and len(got["assets"]) == 11
    entries = [(path, exp, got[scope][path])
               for scope in ("assets", "lines") for path, exp in want[scope].items()]
    entries.append(("", want["total"], got["total"]))
    for path, exp, act in entries:
        e, a = exp["elements"], act["elements"]
        for q in ("pq", "gq", "sq", "units", "pq_known", "units_without_pru"):
            assert a[q] == e[q], (path, q)
        # each increase attributed to the time it happened in: the demo's parts are all
        # made in planned busy time, with no unknown time
        for q in ("pq_plan", "gq_plan", "sq_plan", "pq_outside_plan", "pq_unattributed"):
            assert a[q] == pytest.approx(e[q], abs=1e-6), (path, q)
        for t in ("window_s", "pbt_s"):
            assert a[t] == pytest.approx(e[t], abs=1e-6), (path, t)
        # ADET holds failures and minor stops, the minor stops reported apart as well
        for t in ("known_s", "apt_s", "asut_s", "adet_s", "idle_s", "maintenance_s",
                  "not_available_s", "other_s", "apt_auto_s", "apt_mode_known_s",
                  "apt_outside_plan_s", "ideal_s", "apt_pru_s"):
            assert a[t] == pytest.approx(e[t], abs=1e-3), (path, t)
        # the meter is stored at least every 60 s and the service counts what the samples
        # show: at each window edge up to 60 s of the highest power may fall on either side
        assert a["energy_kwh"] == pytest.approx(e["energy_kwh"], abs=meter_slack(plant, path)), path
        for k in RATIOS:
            assert exp[k] is not None and 0 < exp[k] <= 1.5, (path, k, exp[k])
        # fractions within 0.1 percentage point; energy figures within 0.1 % (the meter's
        # sampling at the window edges, as above); a roll-up of mixed products has no raw
        # throughput or energy per unit, in both
        for k, v in exp.items():
            if k == "elements":
                continue
            if v is None:
                assert act[k] is None, (path, k)
            elif k.endswith("_kwh") or k == "throughput_per_h":
                assert act[k] == pytest.approx(v, rel=1e-3), (path, k)
            else:
                assert act[k] == pytest.approx(v, abs=0.001), (path, k)
        # equal up to rounding: the truth's sum of its intervals may land one ulp above 1
        assert act["coverage"] == pytest.approx(exp["coverage"], abs=1e-12) == pytest.approx(1.0)
        assert act["automation_coverage"] == pytest.approx(1.0)  # every channel known


def test_truth_has_the_names_and_shape_of_the_kpis(stored: tuple[KpiService, Plant]) -> None:
    """A user can diff ``simulate --truth`` with ``GET /api/v1/kpis``: the truth gives every
    name the API gives, under the same keys, but those it deliberately does not give
    (``simulators.truth.NOT_GIVEN``); the API's names are read from ``kpi`` at run time, so
    a name added there fails here until the truth gives it or lists it as not given."""
    service, plant = stored
    start, end = NOW - timedelta(hours=30), NOW - timedelta(hours=6)
    got = service.kpis(start, end)
    want = truth(service.settings, start, end, plant=plant)
    kpis = {f.name for f in fields(Kpis)}
    elements = {f.name for f in fields(TimeElements)}
    assert set(got) - NOT_GIVEN == set(want)
    assert got["window"] == want["window"]
    for scope in ("assets", "lines"):
        assert list(got[scope]) == list(want[scope]), scope
    nodes = [(got[s][p], want[s][p]) for s in ("assets", "lines") for p in want[s]]
    for api, mine in [*nodes, (got["total"], want["total"])]:
        assert set(api) - NOT_GIVEN == set(mine) == (kpis | {"elements"}) - NOT_GIVEN
        assert set(api["elements"]) - NOT_GIVEN == set(mine["elements"]) == elements - NOT_GIVEN
        for k, v in mine.items():  # and of the same types (None where the API has None)
            if k != "elements":
                assert (v is None) == (api[k] is None), k


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
    assert (line["elements"]["units_without_pru"]
            == want["lines"][first.line]["elements"]["units_without_pru"] == 1)
    assert got["total"]["elements"]["units_without_pru"] == 1
    others = [got["assets"][a.path]["elements"] for a in assets[1:] if a.line == first.line]
    assert line["effectiveness"] == pytest.approx(
        sum(e["ideal_s"] for e in others) / sum(e["apt_s"] for e in others)
    )
    for scope, path in (("lines", first.line), ("total", None)):
        act = got[scope][path] if path else got["total"]
        exp = want[scope][path] if path else want["total"]
        for k in ("availability", "effectiveness", "oee"):
            assert act[k] == pytest.approx(exp[k], abs=0.001), (scope, k)


def test_mixed_products_are_weighted_by_standard_time(stored: tuple[KpiService, Plant]) -> None:
    """Every line of the demo mixes PRUs: its raw throughput and energy per unit are null in
    the API and the truth alike, and its standard-time figures are given by both."""
    service, plant = stored
    start, end = NOW - timedelta(days=7), NOW
    got = service.kpis(start, end)
    want = truth(service.settings, start, end, plant=plant)
    assert len({a.ideal_cycle_time_s for a in service.settings.assets}) > 2
    for scope in [*got["lines"].values(), got["total"]]:
        assert scope["throughput_per_h"] is None and scope["energy_per_unit_kwh"] is None
    for scope in [*want["lines"].values(), want["total"]]:
        assert scope["throughput_per_h"] is None and scope["energy_per_unit_kwh"] is None
    assert got["total"]["energy_per_standard_hour_kwh"] == pytest.approx(
        want["total"]["energy_per_standard_hour_kwh"], rel=1e-3)
    assert got["total"]["standard_output_rate"] == pytest.approx(
        want["total"]["standard_output_rate"], abs=0.001)
