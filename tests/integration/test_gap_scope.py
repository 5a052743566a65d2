"""A gap counts against the assets it covers: a device-wide gap (the connection to the broker
lost) against every asset of the device, an asset-scoped gap (one Sparkplug edge node
offline) against that asset only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.gateway import tag_records
from api.service import KpiService
from config.times import to_ns
from simulators import Plant
from store.sqlite import SqliteStore
from tests.helpers import shift_demo_settings

NOW = datetime(2026, 11, 18, 9, 17, 23, tzinfo=UTC)  # a Wednesday, mid-shift in Shanghai
DEVICE = "line4-mqtt"
LINE4 = [f"demo/assembly/line4/{m}" for m in ("packer-01", "labeler-01", "palletizer-01")]


@pytest.fixture
def service(tmp_path: Path) -> KpiService:
    settings = shift_demo_settings()
    assert {t.asset for d in settings.devices if d.name == DEVICE for t in d.tags} == set(LINE4)
    store = SqliteStore(tmp_path / "gaps.db")
    tag_ids = store.register_tags(tag_records(settings))
    plant = Plant(settings, now=NOW)
    for batch in plant.history_batches(tag_ids, to_ns(NOW - timedelta(days=2)), to_ns(NOW)):
        store.write(batch)
    return KpiService(settings, store)


def coverage(service: KpiService) -> dict[str, float]:
    got = service.kpis(NOW - timedelta(days=1), NOW, line="demo/assembly/line4")
    return {a: got["assets"][a]["coverage"] for a in LINE4}


def test_asset_scoped_and_device_wide_gaps(service: KpiService) -> None:
    store = service.store
    assert coverage(service) == {a: pytest.approx(1.0) for a in LINE4}
    # one hour inside the morning shift (Shanghai 08:00-09:00 = 00:00-01:00 UTC)
    start = to_ns(NOW.replace(hour=0, minute=0, second=0))
    g = store.open_gap(DEVICE, start, "sparkplug node offline (NDEATH)", asset=LINE4[2])
    store.close_gap(g, start + 3600 * 10**9)
    cov = coverage(service)
    assert cov[LINE4[2]] < 0.99
    assert cov[LINE4[0]] == pytest.approx(1.0) and cov[LINE4[1]] == pytest.approx(1.0)
    # the same hour for the whole device: every machine of line 4 loses it
    g = store.open_gap(DEVICE, start, "broker unreachable")
    store.close_gap(g, start + 3600 * 10**9)
    cov2 = coverage(service)
    # the same hour is gone for the palletizer (the gaps merge); every machine of line 4 loses
    # at least that hour of its day (PBT <= 24 h), and the time after it until its state and
    # mode are sampled again: the value from before the gap is not carried across it
    assert cov2[LINE4[2]] == pytest.approx(cov[LINE4[2]])
    assert all(cov2[a] <= 1 - 1 / 24 + 1e-9 for a in LINE4)
    got = service.kpis(NOW - timedelta(days=1), NOW, asset=LINE4[2])
    gaps = {(g["reason"], g["asset"]) for g in got["assets"][LINE4[2]]["evidence"]["gaps"]}
    assert gaps == {("sparkplug node offline (NDEATH)", LINE4[2]), ("broker unreachable", None)}
