"""A part counter that glitches to 0 and back, stored like any sample, is caught by the KPI
service: the phantom rise is excluded from the quantities (which still equal the simulator's
truth) and listed in the asset's evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from api.gateway import tag_records
from api.service import KpiService
from config.times import to_ns
from simulators import Plant
from simulators.truth import truth
from store.batch import Batch
from store.sqlite import SqliteStore
from tests.helpers import shift_demo_settings

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
ASSET = "demo/machining/line1/lathe-01"


def test_counter_glitch_excluded_and_listed(tmp_path: Path) -> None:
    settings = shift_demo_settings()
    store = SqliteStore(tmp_path / "glitch.db")
    tag_ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    start, end = NOW - timedelta(days=1), NOW
    for batch in plant.history_batches(tag_ids, to_ns(start - timedelta(hours=1)), to_ns(end)):
        store.write(batch)
    service = KpiService(settings, store)
    before = service.kpis(start, end, asset=ASSET)["assets"][ASSET]
    assert before["evidence"]["implausible_increases"] == []
    total = next(t for t in store.tags() if t.asset == ASSET and t.role == "total_count")
    # mid-window the counter reads 0 for a millisecond, then its true value again
    t = to_ns(NOW - timedelta(hours=5)) + 1_000_000
    value = float(store.read(total.tag_id, t, t, prior=True).value[-1])
    assert value > 0
    store.write(Batch(np.array([total.tag_id] * 2, np.int32), np.array([t, t + 1_000_000]),
                      np.array([0.0, value]), np.zeros(2, np.uint8)))
    got = service.kpis(start, end, asset=ASSET)["assets"][ASSET]
    want = truth(settings, start, end, plant=plant)["assets"][ASSET]
    (flag,) = got["evidence"]["implausible_increases"]
    assert flag["role"] == "total_count" and flag["increase"] == value
    # 1 ms allows (0.001 s + 2 s of stamping tolerance) x 1.5 / PRU + 1 part of slack
    pru = settings.asset(ASSET).ideal_cycle_time_s
    assert pru is not None and settings.kpi.counter_stamp_tolerance_s == 2.0
    assert flag["allowed"] == pytest.approx((0.001 + 2.0) * 1.5 / pru + 1)
    assert got["elements"]["implausible_increases"] == 1
    assert got["elements"]["pq"] == want["elements"]["pq"] == before["elements"]["pq"]
    assert got["effectiveness"] == pytest.approx(before["effectiveness"])
