"""100 machines x 30 days: the KPIs from the store equal the simulator's truth within 0.1
percentage point for every KPI, per asset, per line and in total, and the quantities exactly.

The plant is the demo's eleven machine kinds (every Modbus, OPC UA and MQTT tag layout it
has) replicated over ten copies of its four lines, each copy with its own PRUs, cut at 100
machines; all are stored in one SQLite store. Thirty days of their history go into the store
as the collectors would have stored it (report by exception), then the KPI service computes
the 30-day window from it like any stored data. The time the backfill and the KPI
computation take is printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config import Settings
from config.times import to_ns
from simulators import Plant
from simulators.scale import replicate
from simulators.truth import truth
from store.sqlite import SqliteStore

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
DAYS = 30
MACHINES = 100
#: element counts that must be equal, not close: parts are whole and every one is stored
EXACT = ("pq", "gq", "sq", "units", "pq_known", "units_without_pru")
#: part counts split by where they were made: floats in the service (it attributes each
#: increase to the time between two samples), whole numbers here
PARTS_SPLIT = ("pq_plan", "gq_plan", "sq_plan", "pq_outside_plan", "pq_unattributed")


#: KPIs in physical units, compared relative to their value; every other KPI is a fraction
UNIT_RATES = frozenset({"throughput_per_h", "energy_per_unit_kwh", "energy_per_standard_hour_kwh"})


def tolerance(kpi: str) -> dict[str, float]:
    return {"rel": 1e-3} if kpi in UNIT_RATES else {"abs": 0.001}


def scaled(settings: Settings) -> Settings:
    """The demo replicated to 100 machines (``simulators.scale.replicate``), 30 days of history,
    improving 7 days ago."""
    return Settings.model_validate(replicate(settings, MACHINES, DAYS, improved_days_ago=7))


@pytest.fixture(scope="module")
def big(settings: Settings, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[KpiService, Plant]]:
    s = scaled(settings)
    assert len(s.assets) == MACHINES
    assert {t.asset for d in s.devices for t in d.tags} == {a.path for a in s.assets}
    store = SqliteStore(Path(tmp_path_factory.mktemp("scale")) / "scale.db")
    try:
        tag_ids = store.register_tags(tag_records(s))
        plant = Plant(s, now=NOW)
        t0 = time.perf_counter()
        points = 0
        for batch in plant.history_batches(tag_ids, to_ns(NOW - timedelta(days=DAYS)), to_ns(NOW)):
            store.write(batch)
            points += len(batch)
        print(f"\nbackfill of {MACHINES} machines x {DAYS} days: {points:,} samples in "
              f"{time.perf_counter() - t0:.1f} s")
        yield KpiService(s, store), plant
    finally:
        store.close()


def test_100_machines_30_days_equal_the_truth(big: tuple[KpiService, Plant]) -> None:
    service, plant = big
    start, end = NOW - timedelta(days=DAYS), NOW
    t0 = time.perf_counter()
    got = service.kpis(start, end)
    t1 = time.perf_counter()
    want = truth(service.settings, start, end, plant=plant)
    t2 = time.perf_counter()
    print(f"KPIs of {MACHINES} machines over {DAYS} days: {t1 - t0:.1f} s "
          f"(the truth from the model: {t2 - t1:.1f} s)")
    assert got["window"] == want["window"]
    assert list(got["assets"]) == list(want["assets"]) and len(want["assets"]) == MACHINES
    assert list(got["lines"]) == list(want["lines"]) == sorted({a.line for a in service.settings.assets})
    entries: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (path, exp, got[scope][path]) for scope in ("assets", "lines")
        for path, exp in want[scope].items()
    ]
    entries.append(("total", want["total"], got["total"]))
    compared = 0
    worst: dict[str, float] = {}
    for path, exp, act in entries:
        e, a = exp["elements"], act["elements"]
        for q in EXACT:
            assert a[q] == e[q], (path, q)
        for q in PARTS_SPLIT:
            assert a[q] == pytest.approx(e[q], abs=1e-6), (path, q)
        # every KPI both give: fractions within 0.001 absolute (0.1 percentage point), rates
        # in units (parts/h, kWh per part or standard hour) within 0.1 % of their value; a
        # roll-up that mixes products has no raw throughput or energy per unit, in both
        for k, v in exp.items():
            if k == "elements":
                continue
            if v is None:
                assert (act[k] is None and path in want["lines"]) or path == "total", (path, k)
                assert k in ("throughput_per_h", "energy_per_unit_kwh"), (path, k)
                continue
            assert act[k] == pytest.approx(v, **tolerance(k)), (path, k, act[k], v)
            worst[k] = max(worst.get(k, 0.0), abs(act[k] - v))
            compared += 1
    assert compared >= len(want["assets"]) * (len(want["total"]) - 1)
    print("largest |service - truth| per KPI: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
